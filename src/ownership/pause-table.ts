import { SLOT_COUNT, type SlotRange } from '../core';

/** Per-slot pause counts: overlapping pauses each hold their slots until released. */
export class PauseTable {
  private readonly counts = new Uint32Array(SLOT_COUNT);
  /** Pauses held, so that the common case (none) skips the table. */
  private held = 0;

  isPaused(slot: number): boolean {
    return this.held > 0 && (this.counts[slot] ?? 0) > 0;
  }

  /** Pauses normalized `ranges`; the returned release is idempotent. */
  pause(ranges: readonly SlotRange[]): () => void {
    this.apply(ranges, 1);
    this.held++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.apply(ranges, -1);
      this.held--;
    };
  }

  private apply(ranges: readonly SlotRange[], delta: 1 | -1): void {
    for (const r of ranges) {
      for (let slot = r.start; slot <= r.end; slot++) {
        this.counts[slot] = (this.counts[slot] ?? 0) + delta;
      }
    }
  }
}
