import { type Mutation, mutationPayloadBytes } from '../core';
import type { StoreChange } from '../store';

/**
 * What a mutation costs beyond its bytes: the object, its array slot and the Buffer
 * headers. An estimate, so that a log of tiny writes is still bounded by `maxBytes`.
 */
export const MUTATION_OVERHEAD_BYTES = 64;
/** The entry, the change object and its mutations array. */
export const ENTRY_OVERHEAD_BYTES = 96;

export function mutationBytes(m: Mutation): number {
  // A set's and an expire's expiry time count too.
  const expiry = m.op === 'set' || m.op === 'expire' ? 8 : 0;
  return mutationPayloadBytes(m) + MUTATION_OVERHEAD_BYTES + expiry;
}

/** The bytes a change holds while it is in the log. */
export function changeBytes(change: StoreChange): number {
  if (change.kind === 'replace') return ENTRY_OVERHEAD_BYTES + 16 * change.slots.length;
  let bytes = ENTRY_OVERHEAD_BYTES;
  for (const m of change.mutations) bytes += mutationBytes(m);
  return bytes;
}
