export * from './store';
export * from './digest';
export * from './delta';
export * from './registry';
export { dropSlots, dropSlotsInSteps } from './drop-slots';
export { MemoryStore } from './memory/memory-store';
export { RocksDbStore, type RocksDbStoreOptions } from './rocksdb';
