import { performance } from 'node:perf_hooks';
import {
  type SlotRange,
  ShardsnapError,
  ErrorCodes,
  ErrorReasons,
  failedPrecondition,
  formatSlotRanges,
  invalidArgument,
  slotRangesOverlap,
} from '../core';
import type { Ownership } from '../ownership';
import { type Store, dropSlotsInSteps } from '../store';

/** Longest pause a target may ask for: beyond this a handoff is not a short pause any more. */
export const MAX_PAUSE_LIMIT_MS = 60_000;

export interface SourceHandoffDeps {
  store: Store;
  ownership: Ownership;
  onError: (error: unknown, context: string) => void;
  onInfo: (context: object, message: string) => void;
  /** Every write pause once it ends (committed, aborted or expired), in ms. */
  onPause?: (ms: number) => void;
}

interface ActiveHandoff {
  id: string;
  slots: SlotRange[];
  target: string;
  release: () => void;
  timer: NodeJS.Timeout;
  pausedAt: number;
  maxPauseMs: number;
  committing?: Promise<CommitOutcome>;
}

export interface CommitOutcome {
  writePauseMs: number;
  /** From the pause's start until the commit arrived, and making the transfer durable. */
  waitedMs: number;
  persistMs: number;
}

const failed = (message: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, message);

/**
 * The source's side of a handoff. `prepare` pauses writes to the slots (they answer
 * TRYAGAIN) and returns the seq that covers every write admitted before the pause; the
 * pause ends by `commit` (ownership moves to the target, persisted first), by `abort`,
 * or by itself after `maxPauseMs` — so a target that dies mid-handoff never leaves the
 * slots paused, and a commit that arrives after that is refused: the source decides.
 */
export class SourceHandoffs {
  private readonly active = new Map<string, ActiveHandoff>();
  /** Pause lengths of committed handoffs, so that a repeated commit answers the same. */
  private readonly committedPauses = new Map<string, CommitOutcome>();
  /** Background removals of given-away slots' keys, with their slots. */
  private readonly cleanups = new Map<Promise<void>, readonly SlotRange[]>();
  private closed = false;

  constructor(private readonly deps: SourceHandoffDeps) {}

  get activeCount(): number {
    return this.active.size;
  }

  async prepare(request: {
    id: string;
    slots: SlotRange[];
    target: string;
    maxPauseMs: number;
  }): Promise<{ seq: number }> {
    const { id, slots, target, maxPauseMs } = request;
    if (!id) throw invalidArgument('migration id is required');
    if (!target) throw invalidArgument('target address is required');
    if (!Number.isInteger(maxPauseMs) || maxPauseMs < 1 || maxPauseMs > MAX_PAUSE_LIMIT_MS) {
      throw invalidArgument(`max pause must be 1..${MAX_PAUSE_LIMIT_MS} ms, got ${maxPauseMs}`);
    }
    if (this.closed) throw new ShardsnapError(ErrorCodes.unavailable, 'node is stopping');
    if (this.active.has(id)) {
      throw failedPrecondition(`handoff ${id} is already prepared`, {
        reason: ErrorReasons.handoffAlreadyPrepared,
        metadata: { migration_id: id },
      });
    }
    const { ownership } = this.deps;
    if (!ownership.ownsAll(slots)) {
      throw failed(
        `this node does not own all of slots ${formatSlotRanges(slots)} (owns ${formatSlotRanges(ownership.owned()) || 'none'})`,
      );
    }
    for (const other of this.active.values()) {
      if (slotRangesOverlap(other.slots, slots)) {
        throw failed(`slots ${formatSlotRanges(slots)} overlap handoff ${other.id} in progress`);
      }
    }
    const handoff: ActiveHandoff = {
      id,
      slots,
      target,
      release: ownership.pause(slots),
      pausedAt: performance.now(),
      maxPauseMs,
      timer: setTimeout(() => this.expire(id), maxPauseMs),
    };
    this.active.set(id, handoff);
    try {
      await ownership.drain();
      if (this.active.get(id) !== handoff) {
        throw failed(`handoff ${id} expired after ${maxPauseMs} ms while writes drained`);
      }
      const { seq } = await this.deps.store.stats();
      return { seq };
    } catch (error) {
      this.end(handoff);
      throw error;
    }
  }

  commit(id: string): Promise<CommitOutcome> {
    const handoff = this.active.get(id);
    if (!handoff) {
      const outcome = this.committedPauses.get(id);
      if (outcome !== undefined) return Promise.resolve(outcome);
      if (this.deps.ownership.transferred(id)) {
        return Promise.resolve({ writePauseMs: 0, waitedMs: 0, persistMs: 0 });
      }
      return Promise.reject(
        failed(`handoff ${id} is not prepared on this node (it expired or was aborted)`),
      );
    }
    if (!handoff.committing && performance.now() - handoff.pausedAt > handoff.maxPauseMs) {
      // The timer is late (a busy event loop): the limit still holds.
      this.expire(id);
      return Promise.reject(
        failed(`handoff ${id} expired: the pause reached its limit of ${handoff.maxPauseMs} ms`),
      );
    }
    handoff.committing ??= this.transfer(handoff);
    return handoff.committing;
  }

  private async transfer(handoff: ActiveHandoff): Promise<CommitOutcome> {
    // From here the handoff cannot expire: the decision is being made durable.
    clearTimeout(handoff.timer);
    const commitAt = performance.now();
    try {
      await this.deps.ownership.transfer(handoff.id, handoff.slots, handoff.target);
    } catch (error) {
      this.end(handoff);
      throw error;
    }
    const writePauseMs = Math.round(performance.now() - handoff.pausedAt);
    this.end(handoff);
    const outcome = {
      writePauseMs,
      waitedMs: Math.round(commitAt - handoff.pausedAt),
      persistMs: Math.round(performance.now() - commitAt),
    };
    this.committedPauses.set(handoff.id, outcome);
    if (this.committedPauses.size > 256) {
      const oldest = this.committedPauses.keys().next().value;
      if (oldest !== undefined) this.committedPauses.delete(oldest);
    }
    this.deps.onInfo(
      {
        migration: handoff.id,
        slots: formatSlotRanges(handoff.slots),
        ...outcome,
      },
      'slots handed over',
    );
    this.cleanUp(handoff.slots);
    return outcome;
  }

  /**
   * Resolves once the background cleanups started so far of any of `slots` have ended
   * (they never reject).
   */
  async cleanupsDone(slots: readonly SlotRange[]): Promise<void> {
    const overlapping = [...this.cleanups].filter(([, of]) => slotRangesOverlap(of, slots));
    await Promise.all(overlapping.map(([job]) => job));
  }

  /** Removes the keys of slots this node gave away, in the background and in steps. */
  cleanUp(slots: SlotRange[]): void {
    const job = (async () => {
      await dropSlotsInSteps(this.deps.store, slots);
      await this.deps.ownership.cleaned(slots);
    })().catch((error: unknown) => {
      if (!this.closed) this.deps.onError(error, `cleanup of slots ${formatSlotRanges(slots)}`);
    });
    this.cleanups.set(job, slots);
    void job.finally(() => this.cleanups.delete(job));
  }

  /**
   * Ends the pause of `id` unless it is committing; reports whether the handoff committed
   * (waiting for a commit in progress), so the answer is final either way.
   */
  async abort(
    id: string,
    handedTo?: { slots: readonly SlotRange[]; target: string },
  ): Promise<{ aborted: boolean; committed: boolean }> {
    const handoff = this.active.get(id);
    if (handoff?.committing) {
      const outcome = await handoff.committing.then(
        () => true,
        () => false,
      );
      return { aborted: false, committed: outcome };
    }
    if (handoff) {
      this.end(handoff);
      return { aborted: true, committed: false };
    }
    const { ownership } = this.deps;
    const committed =
      this.committedPauses.has(id) ||
      ownership.transferred(id) !== undefined ||
      (handedTo !== undefined && this.gaveAway(handedTo.slots, handedTo.target));
    return { aborted: false, committed };
  }

  /** Whether every one of `slots` left this node for `target` (the id may be forgotten). */
  private gaveAway(slots: readonly SlotRange[], target: string): boolean {
    const { ownership } = this.deps;
    if (slots.length === 0 || !target || ownership.ownsAny(slots)) return false;
    return slots.every((range) => {
      for (let slot = range.start; slot <= range.end; slot++) {
        if (ownership.ownerOf(slot) !== target) return false;
      }
      return true;
    });
  }

  private expire(id: string): void {
    const handoff = this.active.get(id);
    if (!handoff || handoff.committing) return;
    this.deps.onInfo(
      { migration: id, slots: formatSlotRanges(handoff.slots) },
      'handoff expired; writes resumed, slots kept',
    );
    this.end(handoff);
  }

  private end(handoff: ActiveHandoff): void {
    clearTimeout(handoff.timer);
    this.deps.onPause?.(performance.now() - handoff.pausedAt);
    handoff.release();
    if (this.active.get(handoff.id) === handoff) this.active.delete(handoff.id);
  }

  /** Ends every pause (the slots stay here) and waits for background cleanups. */
  async close(): Promise<void> {
    this.closed = true;
    for (const handoff of [...this.active.values()]) {
      if (!handoff.committing) this.end(handoff);
    }
    const committing = [...this.active.values()].flatMap((h) =>
      h.committing ? [h.committing] : [],
    );
    await Promise.allSettled(committing);
    await Promise.all([...this.cleanups.keys()]);
  }
}
