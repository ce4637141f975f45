import { dataLoss } from '../../core';
import { describeKey, SLOT_PREFIX_BYTES } from './keys';
import { type Db, type SstWriter, openDb } from './native';

/**
 * The fallback of a staged install whose records do not come in ascending slot order:
 * a scratch RocksDB in the staging dir that sorts them on disk (memory stays bounded),
 * rejects duplicate keys, and is drained in key order into the install's SST file.
 */
export class InstallSorter {
  private constructor(private readonly db: Db) {}

  static async open(dir: string): Promise<InstallSorter> {
    const db = await openDb(dir, {
      createIfMissing: true,
      errorIfExists: true,
      writeBufferSize: 32 << 20,
      maxBackgroundJobs: 1,
      bloomBitsPerKey: 10,
      compression: 'none',
    });
    return new InstallSorter(db);
  }

  /** Adds an already sorted file of records (nothing else may be in the sorter yet). */
  async ingestSorted(file: string): Promise<void> {
    await this.db.ingest([file], { moveFiles: true });
  }

  /** Adds records; a key given twice (here or before) is a `data_loss` error. */
  async add(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void> {
    const seen = new Set<string>();
    for (const key of keys) {
      const k = key.toString('latin1');
      if (seen.has(k)) throw duplicate(key);
      seen.add(k);
    }
    const existing = await this.db.multiGet(keys);
    const index = existing.findIndex((value) => value !== undefined);
    if (index >= 0) throw duplicate(keys[index] as Buffer);
    await this.db.write(
      keys.map((key, i) => ({ type: 'put' as const, key, value: values[i] as Buffer })),
    );
  }

  /** Writes every record, in key order, to `writer`, in steps of about `stepBytes`. */
  async drainTo(writer: SstWriter, stepBytes: number): Promise<void> {
    const it = this.db.iterator({ fillCache: false });
    try {
      for (;;) {
        const batch = await it.next(1 << 16, stepBytes);
        // putBatch copies the bytes before it returns to the event loop.
        if (batch.keys.length > 0) await writer.putBatch(batch.keys, batch.values);
        if (batch.done) return;
      }
    } finally {
      await it.close();
    }
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

function duplicate(dkey: Buffer): Error {
  return dataLoss(`duplicate key ${describeKey(dkey.subarray(SLOT_PREFIX_BYTES))} in artifact`);
}
