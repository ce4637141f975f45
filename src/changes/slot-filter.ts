import {
  type Mutation,
  type SlotRange,
  isFullRange,
  normalizeSlotRanges,
  slotMask,
  slotOf,
} from '../core';

/** Which slots a change stream follows; empty ranges follow every slot. */
export class SlotFilter {
  readonly ranges: readonly SlotRange[];
  private readonly mask: Uint8Array | undefined;

  constructor(slots: readonly SlotRange[]) {
    this.ranges = normalizeSlotRanges(slots);
    // Every slot: no key needs hashing.
    this.mask = isFullRange(this.ranges) ? undefined : slotMask(this.ranges);
  }

  /** The mutations of a batch that touch the slots, in batch order. */
  select(mutations: readonly Mutation[]): Mutation[] {
    const mask = this.mask;
    if (!mask) return [...mutations];
    return mutations.filter((m) => mask[slotOf(m.key)] === 1);
  }

  /** The followed slots that also lie in `ranges` (empty when none do). */
  overlap(ranges: readonly SlotRange[]): SlotRange[] {
    const shared: SlotRange[] = [];
    for (const own of this.ranges) {
      for (const r of ranges) {
        const start = Math.max(own.start, r.start);
        const end = Math.min(own.end, r.end);
        if (start <= end) shared.push({ start, end });
      }
    }
    return shared.length > 0 ? normalizeSlotRanges(shared) : [];
  }
}
