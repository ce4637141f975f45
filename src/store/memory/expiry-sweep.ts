import type { Keyspace } from './keyspace';

export interface ExpirySweepOptions {
  /** Time between steps. */
  intervalMs: number;
  /** Record ids examined per step: bounds the step's time whatever the keyspace's size. */
  recordsPerStep: number;
}

export const DEFAULT_EXPIRY_SWEEP: ExpirySweepOptions = { intervalMs: 100, recordsPerStep: 65_536 };

/**
 * Active expiry. Like Redis's, it works in small bounded steps on a timer: each step
 * examines the next `recordsPerStep` record ids in a circular walk over the record table
 * and removes the keys whose expiry has passed (a key read after its expiry is already
 * absent; this gives back its memory and takes it out of counts, snapshots and digests).
 * The same step moves a bounded number of records out of sparse arena segments, unless
 * `mayCompact` says to wait.
 */
export class ExpirySweep {
  private cursor = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly keyspace: Keyspace,
    private readonly options: ExpirySweepOptions,
    private readonly now: () => number,
    private readonly removeExpired: (id: number) => void,
    /** Called after a step that removed keys (the store logs them as one record). */
    private readonly stepDone: () => void = () => undefined,
    /**
     * False while compaction should wait: copying live records only gives memory back,
     * and while a snapshot is read or an install staged it would compete with the
     * transfer for the event loop (and copy records the view or install is about to drop).
     */
    private readonly mayCompact: () => boolean = () => true,
  ) {
    this.timer = setInterval(() => this.step(), options.intervalMs);
    this.timer.unref();
  }

  /** One step; returns the keys removed. */
  step(): number {
    const records = this.keyspace.records;
    const limit = records.limit;
    if (this.cursor >= limit) this.cursor = 0;
    const end = Math.min(limit, this.cursor + this.options.recordsPerStep);
    const now = this.now();
    let removed = 0;
    for (let id = this.cursor; id < end; id++) {
      const at = records.expire(id);
      if (at > 0 && at <= now && this.keyspace.isIndexed(id)) {
        this.removeExpired(id);
        removed++;
      }
    }
    this.cursor = end;
    if (removed > 0) this.stepDone();
    if (this.mayCompact()) this.keyspace.compactStep(this.options.recordsPerStep * 4);
    return removed;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
