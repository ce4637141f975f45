import type { Keyspace } from './keyspace';

/**
 * Retires the records an install or a slot drop took out of the live tables, in bounded
 * steps after the swap. The swap itself stays one synchronous step (readers see all or
 * nothing of it); freeing each old record is what costs (a slot drop of 250,000 keys held
 * the event loop ~200 ms, every other call of the node waiting), and nothing needs it
 * done at once: the records are in no table, so only the memory they hold waits.
 */
export class RetireQueue {
  private readonly pending: Int32Array[] = [];
  /** Position in `pending[0]` of the next id to retire. */
  private at = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private waiters: Array<() => void> = [];

  constructor(
    private readonly keyspace: Keyspace,
    /** Ids retired per turn of the event loop (and below which a batch is retired at once). */
    private readonly perStep = 16_384,
  ) {}

  /** True when no id waits to be retired. */
  get empty(): boolean {
    return this.pending.length === 0;
  }

  /** Retires `batches` now when they are few and nothing waits, otherwise in later steps. */
  add(batches: readonly Int32Array[]): void {
    let total = 0;
    for (const ids of batches) total += ids.length;
    if (total === 0) return;
    if (total <= this.perStep && this.pending.length === 0) {
      for (const ids of batches) for (const id of ids) this.keyspace.retire(id);
      return;
    }
    for (const ids of batches) if (ids.length > 0) this.pending.push(ids);
    this.schedule();
  }

  /** Resolves once every id added so far is retired (or the queue cleared). */
  idle(): Promise<void> {
    if (this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Forgets every pending id: the keyspace is being cleared with them. */
  clear(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    this.pending.length = 0;
    this.at = 0;
    this.wake();
  }

  private schedule(): void {
    this.scheduled ??= setImmediate(() => {
      this.scheduled = undefined;
      this.step();
    });
  }

  private step(): void {
    let budget = this.perStep;
    while (budget > 0) {
      const ids = this.pending[0];
      if (!ids) break;
      const end = Math.min(ids.length, this.at + budget);
      for (let i = this.at; i < end; i++) this.keyspace.retire(ids[i] as number);
      budget -= end - this.at;
      if (end === ids.length) {
        this.pending.shift();
        this.at = 0;
      } else {
        this.at = end;
      }
    }
    if (this.pending.length > 0) this.schedule();
    else this.wake();
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }
}
