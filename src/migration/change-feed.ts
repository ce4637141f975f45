import { type Mutation, asError, mutationPayloadBytes, unavailable } from '../core';

export interface FeedBatch {
  seq: number;
  mutations: Mutation[];
  headSeq: number;
  /** The source's clock reading when it applied the batch. */
  atMs: number;
}

/**
 * Reads a source's change stream into a bounded buffer while the snapshot installs, so
 * the source's log does not have to hold the changes of the whole install. When the
 * buffer is full it stops reading: the stream then waits in the source's log, and if the
 * log evicts what it waits for, the stream fails (OUT_OF_RANGE) instead of skipping.
 */
export class ChangeFeed {
  private readonly queue: FeedBatch[] = [];
  private queuedBytes = 0;
  private failure: unknown;
  private ended = false;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;
  private readonly pump: Promise<void>;
  private readonly controller = new AbortController();
  private readonly failures = new AbortController();
  /** The seq of the last batch received, and the source's seq when it was sent. */
  receivedSeq = -1;
  headSeq = 0;

  constructor(
    open: (signal: AbortSignal) => AsyncGenerator<FeedBatch>,
    private readonly maxBufferedBytes: number,
    private readonly onClosed: () => void = () => undefined,
  ) {
    this.pump = this.run(open(this.controller.signal));
  }

  get failed(): unknown {
    return this.failure;
  }

  /** Fires when the stream fails (not when it is closed). */
  get failureSignal(): AbortSignal {
    return this.failures.signal;
  }

  /** True once a first batch (or progress marker) has arrived. */
  get established(): boolean {
    return this.receivedSeq >= 0;
  }

  get buffered(): number {
    return this.queue.length;
  }

  private async run(stream: AsyncGenerator<FeedBatch>): Promise<void> {
    try {
      for await (const batch of stream) {
        this.receivedSeq = batch.seq;
        this.headSeq = Math.max(this.headSeq, batch.headSeq, batch.seq);
        const bytes = batch.mutations.reduce((n, m) => n + mutationPayloadBytes(m) + 32, 32);
        this.queue.push(batch);
        this.queuedBytes += bytes;
        this.wake();
        while (this.queuedBytes > this.maxBufferedBytes && !this.ended) {
          await new Promise<void>((resolve) => {
            this.wakeProducer = resolve;
          });
        }
        if (this.ended) break;
      }
      // The source ended the stream by itself: it is stopping.
      if (!this.ended) this.failure ??= unavailable('the change stream ended');
    } catch (error) {
      if (!this.ended) this.failure = error;
    } finally {
      if (this.failure !== undefined && !this.ended) {
        this.failures.abort(this.failure);
      }
      this.wake();
      await stream.return(undefined).catch(() => undefined);
    }
  }

  private wake(): void {
    const wake = this.wakeConsumer;
    this.wakeConsumer = undefined;
    wake?.();
  }

  /**
   * Every batch buffered so far; waits up to `waitMs` when there is none. Throws the
   * stream's failure once the buffer is empty.
   */
  async take(waitMs: number, signal?: AbortSignal): Promise<FeedBatch[]> {
    if (this.queue.length === 0 && this.failure === undefined) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          this.wakeConsumer = undefined;
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal?.addEventListener('abort', done, { once: true });
        this.wakeConsumer = done;
      });
    }
    signal?.throwIfAborted();
    if (this.queue.length === 0 && this.failure !== undefined) throw asError(this.failure);
    const batches = this.queue.splice(0, this.queue.length);
    this.queuedBytes = 0;
    const wake = this.wakeProducer;
    this.wakeProducer = undefined;
    wake?.();
    return batches;
  }

  /** Stops reading; the stream is cancelled. */
  async close(): Promise<void> {
    this.ended = true;
    this.controller.abort();
    const wake = this.wakeProducer;
    this.wakeProducer = undefined;
    wake?.();
    this.wake();
    await this.pump;
    this.onClosed();
  }
}
