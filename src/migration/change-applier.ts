import { performance } from 'node:perf_hooks';
import type { Mutation } from '../core';
import type { Store } from '../store';
import type { ChangeFeed, FeedBatch } from './change-feed';

/** Mutations merged into one local write at most. */
const MAX_MERGED_MUTATIONS = 4096;

/**
 * Applies a source's change batches to the local store in seq order, from the seq of the
 * installed snapshot on. Batches are merged into few local writes: a merged write has the
 * effect of its parts in sequence (types are checked mutation by mutation, and each
 * mutation is applied at the clock reading of its source batch, so expiries are decided
 * as they were on the source). Fewer writes let the target keep up with a source written
 * from many clients.
 */
export class ChangeApplier {
  private seq: number;

  constructor(
    private readonly store: Store,
    /** The seq the local store already holds (the snapshot's). */
    fromSeq: number,
    /** Told how many source batches with mutations each apply wrote. */
    private readonly onApplied: (batches: number) => void = () => undefined,
  ) {
    this.seq = fromSeq;
  }

  /** The source seq the local store holds now. */
  get appliedSeq(): number {
    return this.seq;
  }

  /** Source seqs not applied here yet, given the source's latest seq. */
  lag(headSeq: number): number {
    return Math.max(0, headSeq - this.seq);
  }

  /** Applies the batches past the applied seq; batches at or before it are skipped. */
  async apply(batches: readonly FeedBatch[]): Promise<void> {
    const writes: Array<Promise<unknown>> = [];
    let merged: Mutation[] = [];
    let clocks: number[] = [];
    let lastSeq = this.seq;
    let parts = 0;
    const flush = (): void => {
      if (merged.length === 0) return;
      // Issued without waiting: the store applies writes in call order.
      writes.push(this.store.write(merged, { atMs: clocks }));
      merged = [];
      clocks = [];
    };
    for (const batch of batches) {
      if (batch.seq <= lastSeq) continue;
      if (batch.mutations.length > 0) {
        if (merged.length >= MAX_MERGED_MUTATIONS) flush();
        // A source too old to send its clock reading: this node's clock decides.
        const at = batch.atMs > 0 ? batch.atMs : Date.now();
        for (const m of batch.mutations) {
          merged.push(m);
          clocks.push(at);
        }
        parts++;
      }
      lastSeq = batch.seq;
    }
    flush();
    await Promise.all(writes);
    this.seq = lastSeq;
    this.onApplied(parts);
  }

  /**
   * Applies what `feed` delivers until `seq` is applied; false when `deadline`
   * (performance.now()) comes first.
   */
  async applyUntil(
    feed: ChangeFeed,
    seq: number,
    deadline: number,
    signal: AbortSignal,
  ): Promise<boolean> {
    while (this.seq < seq) {
      const wait = deadline - performance.now();
      if (wait <= 0) return false;
      await this.apply(await feed.take(Math.min(wait, 20), signal));
    }
    return true;
  }
}
