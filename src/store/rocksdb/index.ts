export { RocksDbStore, stagingRoot } from './rocksdb-store';
export type { RocksDbStoreOptions } from './options';
