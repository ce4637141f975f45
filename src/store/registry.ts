import { invalidArgument } from '../core';
import { DEFAULT_EXPIRY_SWEEP } from './memory/expiry-sweep';
import { MemoryStore } from './memory/memory-store';
import type { Store } from './store';

export interface StoreOpenOptions {
  dataDir: string;
  /** A RocksDB checkpoint directory to start from (rocksdb backend only). */
  restoreDir?: string;
}

export type StoreFactory = (options: StoreOpenOptions) => Promise<Store>;

const factories = new Map<string, StoreFactory>([
  [
    'memory',
    (o) => {
      if (o.restoreDir) {
        throw invalidArgument(
          'a memory node restores from an artifact file, not a checkpoint directory',
        );
      }
      return Promise.resolve(new MemoryStore({ expirySweep: DEFAULT_EXPIRY_SWEEP }));
    },
  ],
  [
    'rocksdb',
    async (o) => {
      const { RocksDbStore, restoreDatabaseDir } = await import('./rocksdb');
      if (o.restoreDir) await restoreDatabaseDir(o.dataDir, o.restoreDir);
      return RocksDbStore.open(o.dataDir);
    },
  ],
]);

export function registerStoreBackend(name: string, factory: StoreFactory): void {
  factories.set(name, factory);
}

export function storeBackends(): string[] {
  return [...factories.keys()];
}

/** Opens a store by backend name; an unknown name fails at once with the known ones. */
export function openStore(backend: string, options: StoreOpenOptions): Promise<Store> {
  const factory = factories.get(backend);
  if (!factory) {
    throw invalidArgument(`unknown backend "${backend}" (known: ${storeBackends().join(', ')})`);
  }
  return factory(options);
}
