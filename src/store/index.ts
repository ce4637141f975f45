export * from './store';
export * from './digest';
export * from './registry';
export { MemoryStore } from './memory/memory-store';
export { RocksDbStore, type RocksDbStoreOptions } from './rocksdb';
