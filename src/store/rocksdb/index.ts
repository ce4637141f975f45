export { RocksDbStore, stagingRoot } from './rocksdb-store';
export type { RocksDbStoreOptions } from './options';
export { restoreDatabaseDir } from './restore';
