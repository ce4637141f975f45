import type { SlotRange } from '../core';
import type { Ownership } from '../ownership';

/**
 * This node's side of the handoff, for the whole migration: its own write pause of the
 * slots, and whether the commit left (from then on nothing may be dropped or cancelled:
 * the source decides).
 */
export class HandoffState {
  commitSent = false;
  private release: (() => void) | undefined;

  /** Pauses local writes to `slots` (an earlier pause ends first). */
  pause(ownership: Ownership, slots: SlotRange[]): void {
    this.resume();
    this.release = ownership.pause(slots);
  }

  resume(): void {
    const release = this.release;
    this.release = undefined;
    release?.();
  }

  /** Hands the pause to whoever settles an in-doubt commit: it ends the pause then. */
  handOver(): () => void {
    const release = this.release ?? (() => undefined);
    this.release = undefined;
    return release;
  }
}
