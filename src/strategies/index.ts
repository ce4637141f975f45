export * from './strategy';
export * from './registry';
export * from './view-scan';
export * from './rocksdb-checkpoint';
export * from './memory-delta';
