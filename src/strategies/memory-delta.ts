import {
  type Entry,
  ErrorCodes,
  ShardsnapError,
  type StoreRecord,
  failedPrecondition,
  unavailable,
} from '../core';
import type { ChangeLog } from '../changes';
import { RecordsWriter } from '../snapshot';
import type { Store } from '../store';
import type { BuildRequest, PreparedBuild, SnapshotStrategy } from './strategy';

/** A store that reads keys together with the one seq they are all at (the memory store). */
interface SeqReader extends Store {
  readWithSeq(keys: readonly Buffer[]): Promise<{ seq: number; entries: Array<Entry | undefined> }>;
}

const isSeqReader = (store: Store): store is SeqReader =>
  typeof (store as Partial<SeqReader>).readWithSeq === 'function';

/** Reads before giving up when writes keep landing between the window and the read. */
const ATTEMPTS = 5;
const BATCH = 512;

/** The name incremental snapshots are built under. */
export const MEMORY_DELTA = 'memory-delta';

/**
 * Why a store cannot answer `since_seq` (UNIMPLEMENTED), or undefined when it can. Only
 * memory nodes keep the change log and the seq-consistent reads a delta needs.
 */
export function deltaUnsupported(store: Store): ShardsnapError | undefined {
  if (isSeqReader(store)) return undefined;
  return new ShardsnapError(
    ErrorCodes.unimplemented,
    `incremental snapshots (since_seq) are not implemented for the ${store.backend} backend; take a full snapshot`,
  );
}

/**
 * An incremental snapshot: the keys of the requested slots written after `sinceSeq`
 * (from the node's change log), each with its value at the delta's seq, or a tombstone
 * when it is now absent or expired. The window and the values are taken at one seq: if
 * a write lands between them, the window is taken again.
 */
export function memoryDelta(changeLog: ChangeLog): SnapshotStrategy {
  return {
    name: MEMORY_DELTA,
    kind: 'records',
    unsupported(store: Store, request: BuildRequest): string | undefined {
      if (!isSeqReader(store))
        return `${MEMORY_DELTA} needs the memory backend, not ${store.backend}`;
      if (request.sinceSeq === undefined) return `${MEMORY_DELTA} needs since_seq`;
      return undefined;
    },
    async prepare(store: Store, request: BuildRequest): Promise<PreparedBuild> {
      const since = request.sinceSeq;
      if (!isSeqReader(store) || since === undefined) {
        throw failedPrecondition(`${MEMORY_DELTA} needs the memory backend and since_seq`);
      }
      let upserts: StoreRecord[] = [];
      let deletes: Buffer[] = [];
      let seq = -1;
      for (let attempt = 0; attempt < ATTEMPTS && seq < 0; attempt++) {
        const window = changeLog.changedKeys(request.slots, since);
        const read = await store.readWithSeq(window.keys);
        if (read.seq !== window.seq) continue;
        upserts = [];
        deletes = [];
        window.keys.forEach((key, i) => {
          const entry = read.entries[i];
          if (entry) upserts.push({ key, entry });
          else deletes.push(key);
        });
        seq = read.seq;
      }
      if (seq < 0) {
        throw unavailable(
          'writes kept moving the seq while the incremental snapshot was taken; retry',
        );
      }
      return {
        seq,
        keyCountHint: upserts.length + deletes.length,
        async write(out, header, signal) {
          const records = new RecordsWriter(out);
          await records.writeHeader(header);
          for (let at = 0; at < upserts.length; at += BATCH) {
            signal.throwIfAborted();
            await records.writeRecords(upserts.slice(at, at + BATCH));
          }
          for (let at = 0; at < deletes.length; at += BATCH) {
            signal.throwIfAborted();
            await records.writeTombstones(deletes.slice(at, at + BATCH));
          }
          await records.writeTrailer();
          return { keyCount: records.keyCount };
        },
        release() {
          upserts = [];
          deletes = [];
          return Promise.resolve();
        },
      };
    },
  };
}
