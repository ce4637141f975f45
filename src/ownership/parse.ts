import { type SlotRange, invalidArgument, parseSlotRanges } from '../core';

/** The slots a node is started with: `A-B[,C-D]`, `all`, or `none` (an empty split target). */
export function parseOwnedSlots(text: string): SlotRange[] {
  const trimmed = text.trim();
  if (trimmed === 'none') return [];
  // parseSlotRanges reads an empty text as "all"; for ownership that is too easy a mistake.
  if (trimmed === '') throw invalidArgument('no slots given (expected A-B[,C-D], all or none)');
  return parseSlotRanges(trimmed);
}
