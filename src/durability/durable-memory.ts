import { join } from 'node:path';
import { MAX_SLOT, abortableSleep } from '../core';
import type { MemoryStore } from '../store/memory/memory-store';
import type { StoreView } from '../store';
import type { FsyncPolicy, Wal } from '../wal';
import type { WalJournal } from './journal';
import { LocalSnapshotSchedule, type LocalSnapshots } from './local-snapshots';

/** How a memory node started from its disk (Stats' `recovery`). */
export interface RecoveryReport {
  /** Seq and file of the local snapshot loaded (seq 0, path '' when none). */
  snapshotSeq: number;
  snapshotPath: string;
  /** The lsn the snapshot covers: the replay started after it. */
  snapshotLsn: number;
  recordsReplayed: number;
  /** Bytes cut off a torn last record of the log. */
  truncatedBytes: number;
  durationMs: number;
  /** Local snapshots that failed verification and were passed over. */
  skippedSnapshots: Array<{ path: string; reason: string }>;
}

export interface LocalSnapshotPolicy {
  intervalMs: number;
  walBytes: number;
  keep: number;
}

export interface DurabilityLog {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

/** How often a local snapshot waiting for installs to settle looks again. */
const INSTALL_WAIT_MS = 50;

/**
 * A recovered memory store's durability: the log its journal writes to, the local
 * snapshots and their schedule. `close` (run by the store's own close) stops the
 * schedule, waiting for a snapshot in progress, and closes the log.
 */
export class DurableMemory {
  private readonly schedule: LocalSnapshotSchedule;
  private snapshotCount: number;
  private closing: Promise<void> | undefined;
  private readonly stopped = new AbortController();

  constructor(
    private readonly store: MemoryStore,
    readonly wal: Wal,
    private readonly journal: WalJournal,
    private readonly snapshots: LocalSnapshots,
    readonly fsync: FsyncPolicy,
    readonly recovery: RecoveryReport,
    snapshotCount: number,
    policy: LocalSnapshotPolicy,
    private readonly log: DurabilityLog,
  ) {
    this.snapshotCount = snapshotCount;
    this.schedule = new LocalSnapshotSchedule({
      intervalMs: policy.intervalMs,
      walBytesThreshold: policy.walBytes,
      walBytes: () => wal.bytesSinceCheckpoint,
      take: () => this.takeSnapshot(),
      onError: (err) => log.warn({ err }, 'local snapshot failed (the log keeps every change)'),
    });
  }

  start(): void {
    this.schedule.start();
  }

  /** Local snapshots on disk (as of the last take or the start). */
  get localSnapshots(): number {
    return this.snapshotCount;
  }

  /**
   * Takes a local snapshot now, then deletes the log segments the oldest kept snapshot
   * covers. Waits first for installs in progress: a snapshot never needs log records
   * older than itself (an install's parts come before its commit).
   */
  async takeSnapshot(): Promise<void> {
    const signal = this.stopped.signal;
    const info = await this.snapshots.take(
      async () => {
        while (this.store.installsInProgress > 0) {
          await abortableSleep(INSTALL_WAIT_MS, signal, 'local snapshot');
        }
        // The view and the lsn at the same instant: the view holds every change up to it.
        const opening: Promise<StoreView> = this.store.openView([{ start: 0, end: MAX_SLOT }]);
        const lsn = this.journal.position;
        this.wal.markCheckpoint();
        return { view: await opening, lsn };
      },
      { signal },
    );
    const kept = await this.snapshots.list();
    this.snapshotCount = kept.length;
    const oldest = kept.at(-1)?.lsn;
    if (oldest !== undefined) await this.wal.truncateBefore(oldest + 1);
    this.log.info(
      {
        path: info.path,
        seq: info.seq,
        lsn: info.lsn,
        bytes: info.bytes,
        walBytes: this.wal.bytes,
      },
      'local snapshot taken',
    );
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.store.setJournal(undefined);
    this.stopped.abort();
    try {
      await this.schedule.stop();
    } finally {
      await this.wal.close();
    }
  }
}

export const walDir = (dataDir: string): string => join(dataDir, 'wal');
/**
 * Not DIR/snapshots: that is the snapshot catalog's spool, which removes at start
 * whatever is not one of its own snapshot directories.
 */
export const snapshotsDir = (dataDir: string): string => join(dataDir, 'local-snapshots');

/** The `Recovery` of Stats: how the node started, and the log and snapshots now. */
export function recoveryStats(durable: DurableMemory): {
  snapshotSeq: number;
  snapshotPath: string;
  recordsReplayed: number;
  truncatedBytes: number;
  durationMs: number;
  walFsync: string;
  walBytes: number;
  localSnapshots: number;
} {
  const r = durable.recovery;
  return {
    snapshotSeq: r.snapshotSeq,
    snapshotPath: r.snapshotPath,
    recordsReplayed: r.recordsReplayed,
    truncatedBytes: r.truncatedBytes,
    durationMs: r.durationMs,
    walFsync: durable.fsync,
    walBytes: durable.wal.bytes,
    localSnapshots: durable.localSnapshots,
  };
}
