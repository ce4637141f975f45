import { SLOT_COUNT, abortableSleep, normalizeSlotRanges } from '../core';
import type { ShardStats__Output } from '../generated/shardsnap/v1/ShardStats';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type Connection, call } from '../wire/connection';

/**
 * Where a fetch is: its snapshot still `building` (its size unknown), `resuming` (hashing
 * the bytes an earlier run left), `fetching` a snapshot of known size, `verifying` the
 * SHA-256 of the whole artifact once every byte arrived.
 */
export type FetchPhase = 'building' | 'resuming' | 'fetching' | 'verifying';

export interface FetchStatus {
  phase: FetchPhase;
  snapshotId: string;
  /** Bytes of the artifact received, those of an earlier run included. */
  received: number;
  /** Bytes an earlier run had received: not moved by this one. */
  resumedFrom: number;
  /** The artifact's size, once its snapshot is READY. */
  total?: number;
  /**
   * While building: the size expected (the node's data bytes times the share of slots
   * asked for, as the node's spool check reckons it), raised to what is known to exist.
   */
  estimate?: number;
}

export interface FetchStatusOptions {
  onStatus?: (status: FetchStatus) => void;
  onProgress?: (received: number, total: number, info: SnapshotInfo__Output) => void;
}

const POLL_MS = 500;

/**
 * Reports a fetch's progress. A stream carries its snapshot's info once, at its start, so
 * the size of a snapshot still being built is learnt by looking it up every half second
 * until it is READY; only done when someone listens.
 */
export class FetchReporter {
  phase: FetchPhase = 'building';
  received = 0;
  resumedFrom = 0;
  private info: SnapshotInfo__Output | undefined;
  private total: number | undefined;
  private estimate: number | undefined;
  private nodeWritten = 0;
  private progressed = 0;
  private polling: Promise<void> | undefined;
  private readonly stop = new AbortController();

  constructor(
    private readonly conn: Connection,
    private readonly snapshotId: string,
    private readonly options: FetchStatusOptions,
  ) {}

  private get listened(): boolean {
    return this.options.onStatus !== undefined || this.options.onProgress !== undefined;
  }

  /** The snapshot's info, from a call or the first chunk of a stream. */
  observe(info: SnapshotInfo__Output): void {
    this.info = info;
    if (info.state === 'READY') {
      this.total = Number(info.sizeBytes);
      if (this.phase === 'building') this.phase = 'fetching';
      return;
    }
    this.nodeWritten = Math.max(this.nodeWritten, Number(info.bytesWritten));
    if (this.listened && !this.polling && !this.stop.signal.aborted) {
      this.polling = this.poll(info);
      this.polling.catch(() => undefined);
    }
  }

  /** Moves to `phase` (and `received`) and reports it. */
  set(phase: FetchPhase, received = this.received): void {
    this.phase = phase === 'fetching' && this.total === undefined ? 'building' : phase;
    this.received = received;
    this.emit();
  }

  /** Stops looking the snapshot up. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.polling?.catch(() => undefined);
  }

  private emit(): void {
    const { onStatus, onProgress } = this.options;
    const estimate =
      this.total === undefined && this.estimate !== undefined
        ? Math.max(this.estimate, this.nodeWritten, this.received)
        : undefined;
    onStatus?.({
      phase: this.phase,
      snapshotId: this.snapshotId,
      received: this.received,
      resumedFrom: this.resumedFrom,
      ...(this.total !== undefined ? { total: this.total } : {}),
      ...(estimate !== undefined ? { estimate } : {}),
    });
    // As before phases existed: once per step forward of the bytes received.
    if (this.info && onProgress && this.received > this.progressed) {
      this.progressed = this.received;
      onProgress(this.received, this.total ?? Number(this.info.sizeBytes), this.info);
    }
  }

  private async poll(first: SnapshotInfo__Output): Promise<void> {
    const signal = this.stop.signal;
    if (this.options.onStatus) {
      this.estimate = await this.expectedBytes(first).catch(() => undefined);
      if (!signal.aborted) this.emit();
    }
    while (!signal.aborted && this.total === undefined) {
      await abortableSleep(POLL_MS, signal, 'polling the snapshot');
      const info = await call<SnapshotInfo__Output>(
        'GetSnapshot',
        (cb) => this.conn.snapshots.GetSnapshot({ snapshotId: this.snapshotId }, cb),
        signal,
      ).catch(() => undefined);
      if (!info || signal.aborted) continue;
      if (info.state === 'FAILED') return;
      this.info = info;
      this.nodeWritten = Number(info.bytesWritten);
      if (info.state === 'READY') {
        this.total = Number(info.sizeBytes);
        if (this.phase === 'building') this.phase = 'fetching';
      }
      this.emit();
    }
  }

  private async expectedBytes(info: SnapshotInfo__Output): Promise<number> {
    const stats = await call<ShardStats__Output>(
      'Stats',
      (cb) => this.conn.shard.Stats({}, cb),
      this.stop.signal,
    );
    const slots = normalizeSlotRanges(info.slots);
    const share = slots.reduce((n, r) => n + r.end - r.start + 1, 0) / SLOT_COUNT;
    return Math.ceil(Number(stats.dataBytes) * share);
  }
}
