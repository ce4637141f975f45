import {
  MAX_SLOT,
  SLOT_COUNT,
  type SlotRange,
  formatSlotRanges,
  normalizeSlotRanges,
  slotMask,
} from '../core';

/**
 * Slot sets are kept as one byte per slot, so that checking a key on the hot path is one
 * array lookup; ranges are only the form they take at the edges (API, file, logs).
 */
export type SlotBitmap = Uint8Array;

/**
 * Validates, sorts and merges ranges. Unlike `normalizeSlotRanges`, an empty list stays
 * empty: here it means "no slots", never "every slot".
 */
export function normalizeRanges(ranges: readonly SlotRange[]): SlotRange[] {
  return ranges.length === 0 ? [] : normalizeSlotRanges(ranges);
}

export function bitmapOf(ranges: readonly SlotRange[]): SlotBitmap {
  return slotMask(normalizeRanges(ranges));
}

export function emptyBitmap(): SlotBitmap {
  return new Uint8Array(SLOT_COUNT);
}

export function setRanges(bitmap: SlotBitmap, ranges: readonly SlotRange[], on: boolean): void {
  for (const r of ranges) bitmap.fill(on ? 1 : 0, r.start, r.end + 1);
}

export function hasAll(bitmap: SlotBitmap, ranges: readonly SlotRange[]): boolean {
  for (const r of ranges) {
    for (let slot = r.start; slot <= r.end; slot++) if (bitmap[slot] !== 1) return false;
  }
  return true;
}

export function hasAny(bitmap: SlotBitmap, ranges: readonly SlotRange[]): boolean {
  for (const r of ranges) {
    for (let slot = r.start; slot <= r.end; slot++) if (bitmap[slot] === 1) return true;
  }
  return false;
}

/** The set slots as sorted, merged ranges. */
export function rangesOf(bitmap: SlotBitmap): SlotRange[] {
  const ranges: SlotRange[] = [];
  let start = -1;
  for (let slot = 0; slot <= MAX_SLOT; slot++) {
    if (bitmap[slot] === 1) {
      if (start < 0) start = slot;
    } else if (start >= 0) {
      ranges.push({ start, end: slot - 1 });
      start = -1;
    }
  }
  if (start >= 0) ranges.push({ start, end: MAX_SLOT });
  return ranges;
}

/** The slots of `ranges` that are set in `bitmap`. */
export function intersect(bitmap: SlotBitmap, ranges: readonly SlotRange[]): SlotRange[] {
  const other = bitmapOf(ranges);
  for (let slot = 0; slot <= MAX_SLOT; slot++)
    other[slot] = (other[slot] ?? 0) & (bitmap[slot] ?? 0);
  return rangesOf(other);
}

/** Ranges as operators write them; `none` for no slots. */
export function describeRanges(ranges: readonly SlotRange[]): string {
  return ranges.length === 0 ? 'none' : formatSlotRanges(ranges);
}
