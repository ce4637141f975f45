import { type ArtifactHeader, type ArtifactWriter, RecordsWriter } from '../snapshot';
import type { Store, StoreView } from '../store';
import type { BuildRequest, PreparedBuild, SnapshotStrategy } from './strategy';

const BATCH = { maxRecords: 512, maxBytes: 256 << 10 };

/**
 * Walks a point-in-time view of the requested slots in batches, yielding to the event
 * loop between batches, and writes a records artifact. The view is the backend's own:
 * a copy-on-write view for the memory store, an iterator over a pinned RocksDB snapshot
 * bounded to the slot-prefix ranges for RocksDB.
 */
export function viewScanStrategy(name: string, backend: string): SnapshotStrategy {
  return {
    name,
    kind: 'records',
    unsupported(store: Store): string | undefined {
      return store.backend === backend
        ? undefined
        : `${name} needs the ${backend} backend, not ${store.backend}`;
    },
    async prepare(store: Store, request: BuildRequest): Promise<PreparedBuild> {
      const view = await store.openView(request.slots);
      return {
        seq: view.seq,
        keyCountHint: view.keyCountHint,
        write: (out, header, signal) => writeViewArtifact(view, out, header, signal),
        release() {
          view.close();
          return Promise.resolve();
        },
      };
    },
  };
}

/** Writes a records artifact of everything `view` holds (walks the view once). */
export async function writeViewArtifact(
  view: StoreView,
  out: ArtifactWriter,
  header: ArtifactHeader,
  signal?: AbortSignal,
): Promise<{ keyCount: number }> {
  const records = new RecordsWriter(out);
  await records.writeHeader(header);
  for await (const batch of view.batches({ ...BATCH, signal })) {
    await records.writeRecords(batch);
    // Let writes and RPCs run between batches even when the disk keeps up.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  await records.writeTrailer();
  return { keyCount: records.keyCount };
}

export const memoryScan = viewScanStrategy('memory-scan', 'memory');
export const rocksdbIterator = viewScanStrategy('rocksdb-iterator', 'rocksdb');
