import { setImmediate as nextTurn } from 'node:timers/promises';
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

/**
 * `dropSlots` for work in the background (the keys of slots handed to another node):
 * in pieces of at most `store.dropStepSlots` slots, each its own batch, one per turn of
 * the event loop and none in the turn of the call, so that the calls the node serves
 * meanwhile (the answer to the commit that gave the slots away, other migrations'
 * handoffs, client writes) do not wait behind one long drop. The slots must be out of
 * the node's ownership already: between pieces some of their keys are still there.
 */
export async function dropSlotsInSteps(store: Store, slots: readonly SlotRange[]): Promise<void> {
  const step = store.dropStepSlots ?? Number.POSITIVE_INFINITY;
  for (const range of normalizeSlotRanges(slots)) {
    for (let start = range.start; start <= range.end; start += step) {
      await nextTurn();
      await dropSlots(store, [{ start, end: Math.min(range.end, start + step - 1) }]);
    }
  }
}
