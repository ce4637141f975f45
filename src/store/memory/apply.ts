import {
  type Entry,
  type Mutation,
  type ValueType,
  ShardsnapError,
  internal,
  toMemberKey,
  valueBytes,
  wrongType as wrongTypeError,
} from '../../core';

/** The type a mutation requires of an existing key (undefined = any type, it replaces). */
const REQUIRED_TYPE: Record<Mutation['op'], ValueType | undefined> = {
  set: undefined,
  del: undefined,
  expire: undefined,
  hset: 'hash',
  lpush: 'list',
  rpush: 'list',
  sadd: 'set',
  zadd: 'zset',
};

/** A key as a message shows it: whole when short, its start and length otherwise. */
function shortKey(key: Buffer): string {
  return key.length <= 200
    ? `"${key.toString('latin1')}"`
    : `"${key.subarray(0, 200).toString('latin1')}…" (${key.length} bytes)`;
}

/** Both backends answer it alike (they share this module): reason WRONGTYPE, key and op. */
export function wrongType(key: Buffer, has: ValueType, op: string): ShardsnapError {
  return wrongTypeError(key, op, `WRONGTYPE ${op} on key ${shortKey(key)} holding a ${has}`);
}

/** A key's type and expiry (0 = none), as far as type checks are concerned. */
export interface TypedKey {
  type: ValueType;
  expireAtMs: number;
}

/**
 * Checks that every mutation of a batch applies to a key of the right type, taking the
 * earlier mutations of the same batch into account (including the expiries they set, at
 * each mutation's clock reading `nowOf(i)`), so a batch fails before any change.
 */
export function checkTypes(
  mutations: readonly Mutation[],
  current: (key: Buffer) => TypedKey | undefined,
  nowOf: (index: number) => number,
): void {
  const known = new Map<string, TypedKey | undefined>();
  mutations.forEach((m, i) => {
    const k = toMemberKey(m.key);
    let has = known.has(k) ? known.get(k) : current(m.key);
    if (has && has.expireAtMs > 0 && has.expireAtMs <= nowOf(i)) has = undefined;
    const required = REQUIRED_TYPE[m.op];
    if (required !== undefined && has !== undefined && has.type !== required) {
      throw wrongType(m.key, has.type, m.op);
    }
    if (m.op === 'set') known.set(k, { type: 'string', expireAtMs: m.expireAtMs });
    else if (m.op === 'del') known.set(k, undefined);
    else if (m.op === 'expire') known.set(k, has && { type: has.type, expireAtMs: m.expireAtMs });
    // A collection op keeps a live key's expiry and creates an absent key without one.
    else known.set(k, { type: required as ValueType, expireAtMs: has?.expireAtMs ?? 0 });
  });
}

/**
 * Applies one mutation to `entry` (undefined = key absent). Changes the entry in place
 * only when `mayMutate`; otherwise works on a copy. Returns the new entry (undefined =
 * key removed) and the change in payload bytes.
 */
export function applyMutation(
  m: Mutation,
  entry: Entry | undefined,
  mayMutate: boolean,
  copy: (e: Entry) => Entry,
): { entry: Entry | undefined; bytesDelta: number } {
  const keyBytes = m.key.length;
  const oldBytes = entry ? keyBytes + valueBytes(entry.value) : 0;
  switch (m.op) {
    case 'set':
      return {
        entry: { value: { type: 'string', value: m.value }, expireAtMs: m.expireAtMs },
        bytesDelta: keyBytes + m.value.length - oldBytes,
      };
    case 'del':
      return { entry: undefined, bytesDelta: -oldBytes };
    case 'expire': {
      if (!entry) return { entry: undefined, bytesDelta: 0 };
      const next = mayMutate ? entry : copy(entry);
      next.expireAtMs = m.expireAtMs;
      return { entry: next, bytesDelta: 0 };
    }
    default:
      break;
  }
  const target = entry ? (mayMutate ? entry : copy(entry)) : newEntry(m);
  let delta = entry ? 0 : keyBytes;
  const v = target.value;
  switch (m.op) {
    case 'hset':
      if (v.type !== 'hash') throw wrongType(m.key, v.type, m.op);
      for (const { field, value } of m.fields) {
        const f = toMemberKey(field);
        const previous = v.fields.get(f);
        delta += previous ? value.length - previous.length : f.length + value.length;
        v.fields.set(f, value);
      }
      break;
    case 'lpush':
    case 'rpush':
      if (v.type !== 'list') throw wrongType(m.key, v.type, m.op);
      for (const value of m.values) {
        if (m.op === 'lpush') v.items.unshift(value);
        else v.items.push(value);
        delta += value.length;
      }
      break;
    case 'sadd':
      if (v.type !== 'set') throw wrongType(m.key, v.type, m.op);
      for (const member of m.members) {
        const key = toMemberKey(member);
        if (!v.members.has(key)) delta += key.length;
        v.members.add(key);
      }
      break;
    case 'zadd':
      if (v.type !== 'zset') throw wrongType(m.key, v.type, m.op);
      for (const { member, score } of m.members) {
        const key = toMemberKey(member);
        if (!v.members.has(key)) delta += key.length + 8;
        v.members.set(key, score);
      }
      break;
  }
  return { entry: target, bytesDelta: delta };
}

function newEntry(m: Mutation): Entry {
  switch (m.op) {
    case 'hset':
      return { value: { type: 'hash', fields: new Map() }, expireAtMs: 0 };
    case 'lpush':
    case 'rpush':
      return { value: { type: 'list', items: [] }, expireAtMs: 0 };
    case 'sadd':
      return { value: { type: 'set', members: new Set() }, expireAtMs: 0 };
    case 'zadd':
      return { value: { type: 'zset', members: new Map() }, expireAtMs: 0 };
    default:
      throw internal(`no collection for ${m.op}`);
  }
}
