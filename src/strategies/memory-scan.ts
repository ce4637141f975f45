import { cloneEntry } from '../core';
import { RecordsWriter } from '../snapshot';
import type { Store } from '../store';
import type { BuildRequest, PreparedBuild, SnapshotStrategy } from './strategy';

const BATCH = { maxRecords: 2048, maxBytes: 1 << 20 };

/**
 * Walks a copy-on-write point-in-time view of the requested slots in batches, yielding
 * to the event loop between batches, and writes a records artifact. Works on any store
 * whose views are cheap; it is the memory backend's strategy.
 */
export const memoryScan: SnapshotStrategy = {
  name: 'memory-scan',
  kind: 'records',
  unsupported(store: Store): string | undefined {
    return store.backend === 'memory' ? undefined : `memory-scan needs the memory backend, not ${store.backend}`;
  },
  async prepare(store: Store, request: BuildRequest): Promise<PreparedBuild> {
    const view = await store.openView(request.slots);
    return {
      seq: view.seq,
      keyCountHint: view.keyCountHint,
      async write(out, header, signal) {
        const records = new RecordsWriter(out);
        await records.writeHeader(header);
        for await (const batch of view.batches({ ...BATCH, signal })) {
          // The batch holds live entries of slots the view has already passed, which a
          // write may change in place while writeRecords awaits the disk: copy them now,
          // before any await, so the artifact stays exactly the store at `seq`.
          await records.writeRecords(batch.map((r) => ({ key: r.key, entry: cloneEntry(r.entry) })));
          // Let writes and RPCs run between batches even when the disk keeps up.
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
        await records.writeTrailer();
        return { keyCount: records.keyCount };
      },
      release() {
        view.close();
        return Promise.resolve();
      },
    };
  },
};
