import type { Mutation } from '../core';
import type { StoreChange } from '../store';

/**
 * What a mutation costs beyond its bytes: the object, its array slot and the Buffer
 * headers. An estimate, so that a log of tiny writes is still bounded by `maxBytes`.
 */
export const MUTATION_OVERHEAD_BYTES = 64;
/** The entry, the change object and its mutations array. */
export const ENTRY_OVERHEAD_BYTES = 96;

export function mutationBytes(m: Mutation): number {
  const key = m.key.length + MUTATION_OVERHEAD_BYTES;
  switch (m.op) {
    case 'set':
      return key + m.value.length + 8;
    case 'del':
      return key;
    case 'hset':
      return m.fields.reduce((sum, f) => sum + f.field.length + f.value.length, key);
    case 'lpush':
    case 'rpush':
      return m.values.reduce((sum, v) => sum + v.length, key);
    case 'sadd':
      return m.members.reduce((sum, v) => sum + v.length, key);
    case 'zadd':
      return m.members.reduce((sum, s) => sum + s.member.length + 8, key);
    case 'expire':
      return key + 8;
  }
}

/** The bytes a change holds while it is in the log. */
export function changeBytes(change: StoreChange): number {
  if (change.kind === 'replace') return ENTRY_OVERHEAD_BYTES + 16 * change.slots.length;
  let bytes = ENTRY_OVERHEAD_BYTES;
  for (const m of change.mutations) bytes += mutationBytes(m);
  return bytes;
}
