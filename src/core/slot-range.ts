import { invalidArgument } from './errors';
import { MAX_SLOT, SLOT_COUNT } from './slots';

/** An inclusive range of slots. */
export interface SlotRange {
  start: number;
  end: number;
}

export const ALL_SLOTS: readonly SlotRange[] = Object.freeze([{ start: 0, end: MAX_SLOT }]);

export function validateSlotRange(range: SlotRange): SlotRange {
  const { start, end } = range;
  if (!Number.isInteger(start) || !Number.isInteger(end)) {
    throw invalidArgument(`slot range ${start}-${end}: bounds must be integers`);
  }
  if (start < 0 || end > MAX_SLOT || start > MAX_SLOT || end < 0) {
    throw invalidArgument(`slot range ${start}-${end} is outside 0..${MAX_SLOT}`);
  }
  if (start > end) {
    throw invalidArgument(`slot range ${start}-${end}: start is greater than end`);
  }
  return { start, end };
}

/**
 * Validates, sorts and merges ranges. An empty list means every slot, so callers can
 * tell "full" from "ranges" with `isFullRange`.
 */
export function normalizeSlotRanges(ranges: readonly SlotRange[]): SlotRange[] {
  if (ranges.length === 0) return [{ start: 0, end: MAX_SLOT }];
  const sorted = ranges.map(validateSlotRange).sort((a, b) => a.start - b.start);
  const merged: SlotRange[] = [];
  for (const range of sorted) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end + 1) {
      last.end = Math.max(last.end, range.end);
    } else {
      merged.push({ ...range });
    }
  }
  return merged;
}

export function isFullRange(ranges: readonly SlotRange[]): boolean {
  return ranges.length === 1 && ranges[0]?.start === 0 && ranges[0]?.end === MAX_SLOT;
}

export function* slotsOf(ranges: readonly SlotRange[]): Generator<number> {
  for (const range of ranges) {
    for (let slot = range.start; slot <= range.end; slot++) yield slot;
  }
}

/** A dense membership table, for hot paths that test many slots. */
export function slotMask(ranges: readonly SlotRange[]): Uint8Array {
  const mask = new Uint8Array(SLOT_COUNT);
  for (const r of ranges) mask.fill(1, r.start, r.end + 1);
  return mask;
}

/** Parses `A-B[,C-D]` (a single slot `A` is allowed); `all` or empty means every slot. */
export function parseSlotRanges(text: string): SlotRange[] {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed === 'all') return [{ start: 0, end: MAX_SLOT }];
  const ranges = trimmed.split(',').map((part) => {
    const match = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!match) throw invalidArgument(`cannot parse slot range "${part}" (expected A-B)`);
    const start = Number(match[1]);
    const end = match[2] === undefined ? start : Number(match[2]);
    return validateSlotRange({ start, end });
  });
  return normalizeSlotRanges(ranges);
}

export function formatSlotRanges(ranges: readonly SlotRange[]): string {
  return ranges.map((r) => (r.start === r.end ? `${r.start}` : `${r.start}-${r.end}`)).join(',');
}

/** Whether any slot of `a` is in `b`. */
export function slotRangesOverlap(a: readonly SlotRange[], b: readonly SlotRange[]): boolean {
  return a.some((x) => b.some((y) => x.start <= y.end && y.start <= x.end));
}

/** Whether every slot of `inner` is in `outer` (each as normalized, merged ranges). */
export function slotRangesCover(outer: readonly SlotRange[], inner: readonly SlotRange[]): boolean {
  return inner.every((i) => outer.some((o) => o.start <= i.start && i.end <= o.end));
}
