import { performance } from 'node:perf_hooks';
import { invalidArgument } from '../core';
import { type Store, type StoreOpenOptions, openStore } from '../store';
import { MemoryStore } from '../store/memory/memory-store';
import { DEFAULT_EXPIRY_SWEEP } from '../store/memory/expiry-sweep';
import { type FsyncPolicy, Wal } from '../wal';
import {
  type DurabilityLog,
  DurableMemory,
  type LocalSnapshotPolicy,
  type RecoveryReport,
  snapshotsDir,
  walDir,
} from './durable-memory';
import { WalJournal } from './journal';
import { LocalSnapshots } from './local-snapshots';
import { replayJournal, walGap } from './replay';

export interface DurableMemoryOptions {
  dataDir: string;
  fsync: FsyncPolicy;
  localSnapshots: LocalSnapshotPolicy;
  log: DurabilityLog;
  nodeId?: string;
  /** WAL segment size (tests make it small). */
  segmentBytes?: number;
  signal?: AbortSignal;
}

const durabilityOfStore = new WeakMap<Store, DurableMemory>();

/** The durability of a store opened by `openDurableMemoryStore` (undefined for any other). */
export function durabilityOf(store: Store): DurableMemory | undefined {
  return durabilityOfStore.get(store);
}

/**
 * Opens a memory store from DIR: the newest local snapshot that verifies, then the log
 * after it. A torn last record is cut (with a warning); a snapshot that does not verify
 * is passed over for an older one (a longer replay); records missing between the
 * snapshot and the log, or inside the log, fail the start: never a partial state.
 * Once recovered, every change is logged and local snapshots are taken on schedule.
 */
export async function openDurableMemoryStore(options: DurableMemoryOptions): Promise<MemoryStore> {
  const started = performance.now();
  const { log, signal } = options;
  const { wal, report } = await Wal.open({
    dir: walDir(options.dataDir),
    fsync: options.fsync,
    ...(options.segmentBytes ? { segmentBytes: options.segmentBytes } : {}),
    onError: (err) => log.warn({ err }, 'write-ahead log write failed; writes are refused'),
  });
  if (report.truncatedBytes > 0) {
    log.warn(
      { truncatedBytes: report.truncatedBytes, reason: report.truncatedReason },
      'write-ahead log: cut a torn last record (a write interrupted by the crash, never acknowledged)',
    );
  }
  let durable: DurableMemory | undefined;
  const store: MemoryStore = new MemoryStore({
    beforeClose: () => durable?.close() ?? wal.close(),
  });
  try {
    const snapshots = new LocalSnapshots({
      dir: snapshotsDir(options.dataDir),
      keep: options.localSnapshots.keep,
      ...(options.nodeId ? { nodeId: options.nodeId } : {}),
      onError: (err) => log.warn({ err }, 'local snapshots: cleanup failed'),
    });
    const { loaded, skipped } = await snapshots.loadNewest(store, signal ? { signal } : {});
    for (const { path, reason } of skipped) {
      log.warn({ path, reason }, 'local snapshot does not verify; trying an older one');
    }
    const from = loaded?.lsn ?? 0;
    if (wal.firstSeq !== undefined && wal.firstSeq > from + 1) {
      throw walGap(
        from + 1,
        wal.firstSeq - 1,
        loaded
          ? `the newest local snapshot that verifies (${loaded.path}) covers up to ${from}, the log starts at ${wal.firstSeq}`
          : `there is no local snapshot that verifies and the log starts at ${wal.firstSeq}`,
      );
    }
    const { replayed, lastLsn } = await replayJournal(
      store,
      wal.read(from + 1, signal ? { signal } : {}),
      from,
      signal,
    );
    // The snapshot may cover records a crash cut from the log's tail: numbering goes on after both.
    const journal = new WalJournal(wal, Math.max(lastLsn, wal.lastSeq ?? 0));
    const recovery: RecoveryReport = {
      snapshotSeq: loaded?.seq ?? 0,
      snapshotPath: loaded?.path ?? '',
      snapshotLsn: from,
      recordsReplayed: replayed,
      truncatedBytes: report.truncatedBytes,
      durationMs: Math.round(performance.now() - started),
      skippedSnapshots: skipped,
    };
    durable = new DurableMemory(
      store,
      wal,
      journal,
      snapshots,
      options.fsync,
      recovery,
      (await snapshots.list()).length,
      options.localSnapshots,
      log,
    );
    store.setJournal(journal);
    store.startExpirySweep(DEFAULT_EXPIRY_SWEEP);
    durable.start();
    durabilityOfStore.set(store, durable);
    log.info(
      {
        snapshot: recovery.snapshotPath || undefined,
        snapshotSeq: recovery.snapshotSeq,
        recordsReplayed: replayed,
        seq: (await store.stats()).seq,
        durationMs: recovery.durationMs,
        walFsync: options.fsync,
      },
      'recovered from the local snapshot and the write-ahead log',
    );
    return store;
  } catch (error) {
    await store.close();
    throw error;
  }
}

/**
 * Opens a node's store: a memory store with `durability` recovers from DIR and logs its
 * changes (see openDurableMemoryStore); everything else opens as the registry says.
 * It sits here, not in the registry, because recovery needs the snapshot modules, which
 * themselves build on the store.
 */
export function openNodeStore(
  backend: string,
  options: StoreOpenOptions & {
    durability?: Omit<DurableMemoryOptions, 'dataDir'> | undefined;
  },
): Promise<Store> {
  const { durability, ...rest } = options;
  if (backend !== 'memory' || !durability) return openStore(backend, rest);
  if (rest.restoreDir) {
    return Promise.reject(
      invalidArgument('a memory node restores from an artifact file, not a checkpoint directory'),
    );
  }
  return openDurableMemoryStore({ dataDir: rest.dataDir, ...durability });
}
