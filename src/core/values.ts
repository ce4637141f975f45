/**
 * Typed values of the Redis-like store. Collection members are kept as `latin1` strings
 * (one char per byte, so the mapping to bytes is exact and ordering equals byte order)
 * because JavaScript maps compare keys by value only for strings.
 */
export type ValueType = 'string' | 'list' | 'hash' | 'set' | 'zset';

export type Value =
  | { type: 'string'; value: Buffer }
  | { type: 'list'; items: Buffer[] }
  | { type: 'hash'; fields: Map<string, Buffer> }
  | { type: 'set'; members: Set<string> }
  | { type: 'zset'; members: Map<string, number> };

export interface Entry {
  value: Value;
  /** Absolute expiry in Unix milliseconds; 0 = none. */
  expireAtMs: number;
}

/** One key and its entry: the unit of snapshots, installs and digests. */
export interface StoreRecord {
  key: Buffer;
  entry: Entry;
}

export const VALUE_TYPE_CODES: Record<ValueType, number> = {
  string: 1,
  list: 2,
  hash: 3,
  set: 4,
  zset: 5,
};

export const toMemberKey = (bytes: Buffer): string => bytes.toString('latin1');
export const fromMemberKey = (member: string): Buffer => Buffer.from(member, 'latin1');

export function isExpired(entry: Entry, nowMs: number): boolean {
  return entry.expireAtMs > 0 && entry.expireAtMs <= nowMs;
}

/** A deep copy whose collections can be changed without touching the original. */
export function cloneEntry(entry: Entry): Entry {
  const v = entry.value;
  switch (v.type) {
    case 'string':
      return { value: v, expireAtMs: entry.expireAtMs };
    case 'list':
      return { value: { type: 'list', items: v.items.slice() }, expireAtMs: entry.expireAtMs };
    case 'hash':
      return { value: { type: 'hash', fields: new Map(v.fields) }, expireAtMs: entry.expireAtMs };
    case 'set':
      return { value: { type: 'set', members: new Set(v.members) }, expireAtMs: entry.expireAtMs };
    case 'zset':
      return { value: { type: 'zset', members: new Map(v.members) }, expireAtMs: entry.expireAtMs };
  }
}

/** Approximate payload bytes of a value (keys, members and values, not overhead). */
export function valueBytes(v: Value): number {
  switch (v.type) {
    case 'string':
      return v.value.length;
    case 'list':
      return v.items.reduce((n, item) => n + item.length, 0);
    case 'hash': {
      let n = 0;
      for (const [field, value] of v.fields) n += field.length + value.length;
      return n;
    }
    case 'set': {
      let n = 0;
      for (const member of v.members) n += member.length;
      return n;
    }
    case 'zset': {
      let n = 0;
      for (const member of v.members.keys()) n += member.length + 8;
      return n;
    }
  }
}
