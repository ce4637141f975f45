import type { WalRecord } from './types';

/**
 * Past this many bytes a turn's appends start another batch: one buffer per write stays
 * bounded however much a single turn appends.
 */
export const MAX_BATCH_BYTES = 16 * 1024 * 1024;

/**
 * Records that go out in one write (and, with `always`, one fsync). Every append of the
 * batch shares its promise: one allocation per batch rather than per record.
 */
export class Batch {
  readonly records: WalRecord[] = [];
  /** Encoded size of the records. */
  bytes = 0;
  readonly done: Promise<void>;
  /** Settles with `done` but never rejects (for waiters that only need the order). */
  readonly settled: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (error: unknown) => void;

  constructor() {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.settled = this.done.then(
      () => undefined,
      () => undefined,
    );
  }

  add(record: WalRecord, encodedBytes: number): void {
    this.records.push(record);
    this.bytes += encodedBytes;
  }

  get firstSeq(): number {
    return this.records[0]?.seq ?? 0;
  }

  get lastSeq(): number {
    return this.records.at(-1)?.seq ?? 0;
  }

  resolve(): void {
    this.resolveDone();
  }

  reject(error: unknown): void {
    this.rejectDone(error);
  }
}

/**
 * Orders appends into batches: a batch is open until the turn's flush takes it; appends
 * made while a flush is in flight form the next one. At most one flush runs at a time.
 */
export class GroupCommit {
  private readonly queue: Batch[] = [];
  private inFlight: Batch | undefined;
  private scheduled = false;

  /** `writeBatch` throws when the batch did not make it; its appends then reject with that. */
  constructor(private readonly writeBatch: (batch: Batch) => Promise<void>) {}

  /** Queues a record; the promise settles when its batch is written (and synced). */
  add(record: WalRecord, encodedBytes: number): Promise<void> {
    let batch = this.queue.at(-1);
    if (!batch || batch.bytes >= MAX_BATCH_BYTES) {
      batch = new Batch();
      this.queue.push(batch);
    }
    batch.add(record, encodedBytes);
    this.schedule();
    return batch.done;
  }

  /** Resolves once everything queued before the call has been written or has failed. */
  async idle(): Promise<void> {
    const last = this.queue.at(-1) ?? this.inFlight;
    if (last) await last.settled;
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight) return;
    this.scheduled = true;
    // After the turn's other appends: they all join this batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.drain();
    });
  }

  private async drain(): Promise<void> {
    for (let batch = this.queue.shift(); batch; batch = this.queue.shift()) {
      this.inFlight = batch;
      try {
        await this.writeBatch(batch);
        batch.resolve();
      } catch (error) {
        batch.reject(error);
      } finally {
        this.inFlight = undefined;
      }
    }
  }
}
