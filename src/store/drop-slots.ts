import { type SlotRange, normalizeSlotRanges } from '../core';
import type { Store } from './store';

/**
 * Removes every key of `slots` as one batch (one new seq): an install of the ranges with
 * no records, so each backend does it its own cheapest way (the memory store swaps in
 * empty slots; RocksDB ingests range tombstones and resets the slots' counters).
 * No slots is a no-op (unlike a snapshot request, an empty list never means "all").
 */
export async function dropSlots(
  store: Store,
  slots: readonly SlotRange[],
): Promise<{ seq: number }> {
  if (slots.length === 0) return { seq: (await store.stats()).seq };
  const install = await store.beginInstall({
    slots: normalizeSlotRanges(slots),
    full: false,
    seq: 0,
  });
  try {
    const { seq } = await install.commit();
    return { seq };
  } catch (error) {
    await install.abort();
    throw error;
  }
}
