import {
  type Entry,
  type Mutation,
  cloneEntry,
  decodeValue,
  encodeValue,
  encodedValueBytes,
  isExpired,
  readValueHeader,
  slotOf,
  toMemberKey,
  valueBytes,
} from '../../core';
import { applyMutation, checkTypes } from '../memory/apply';
import { dataKey } from './keys';
import type { SlotCount } from './meta';
import type { WriteOp } from './native';

/** One key a batch touches: what is stored now, and what the batch makes of it. */
interface Touched {
  key: Buffer;
  slot: number;
  dkey: Buffer;
  /** The stored value before the batch (even if expired); undefined = no such key. */
  stored: Buffer | undefined;
  /** The live entry as the batch goes: undefined = absent. Decoded on first need. */
  entry: Entry | undefined;
  decoded: boolean;
  changed: boolean;
}

/** The keys of a batch, once each, in first-use order, with their RocksDB keys. */
export function touchedKeys(
  mutations: readonly Mutation[],
): Map<string, { key: Buffer; slot: number; dkey: Buffer }> {
  const keys = new Map<string, { key: Buffer; slot: number; dkey: Buffer }>();
  for (const m of mutations) {
    const k = toMemberKey(m.key);
    if (keys.has(k)) continue;
    const slot = slotOf(m.key);
    keys.set(k, { key: m.key, slot, dkey: dataKey(slot, m.key) });
  }
  return keys;
}

export interface PlannedBatch {
  ops: WriteOp[];
  /** Per slot: the change in key count and payload bytes. */
  deltas: Map<number, SlotCount>;
}

/**
 * Computes a write batch the way the memory store applies it: the type of every
 * mutation is checked first (WRONGTYPE throws before anything is planned), expired keys
 * count as absent (and any mutation of one removes it), and a mutation that leaves an
 * expired entry removes the key.
 * `stored` holds the current value of each touched key, in `keys` order.
 */
export function planBatch(
  mutations: readonly Mutation[],
  keys: Map<string, { key: Buffer; slot: number; dkey: Buffer }>,
  stored: ReadonlyArray<Buffer | undefined>,
  nowOf: (index: number) => number,
): PlannedBatch {
  const touched = new Map<string, Touched>();
  let i = 0;
  for (const [k, { key, slot, dkey }] of keys) {
    touched.set(k, {
      key,
      slot,
      dkey,
      stored: stored[i++],
      entry: undefined,
      decoded: false,
      changed: false,
    });
  }
  // The entry as the batch goes, alive at `now` (each mutation may have its own reading).
  const live = (t: Touched, now: number): Entry | undefined => {
    if (!t.decoded) {
      t.decoded = true;
      if (t.stored !== undefined) t.entry = decodeValue(t.stored);
    }
    return t.entry && !isExpired(t.entry, now) ? t.entry : undefined;
  };

  checkTypes(
    mutations,
    (key) => {
      const raw = (touched.get(toMemberKey(key)) as Touched).stored;
      if (raw === undefined) return undefined;
      const header = readValueHeader(raw);
      return { type: header.type, expireAtMs: header.expireAtMs };
    },
    nowOf,
  );

  mutations.forEach((m, i) => {
    const now = nowOf(i);
    const t = touched.get(toMemberKey(m.key)) as Touched;
    // A set or del does not look at the old value: skip decoding it.
    const current = m.op === 'set' || m.op === 'del' ? undefined : live(t, now);
    const { entry } = applyMutation(m, current, true, cloneEntry);
    t.entry = entry && !isExpired(entry, now) ? entry : undefined;
    t.decoded = true;
    t.changed = true;
  });

  const ops: WriteOp[] = [];
  const deltas = new Map<number, SlotCount>();
  for (const t of touched.values()) {
    if (!t.changed) continue;
    const before = t.stored === undefined ? 0 : t.key.length + encodedValueBytes(t.stored);
    let after = 0;
    if (t.entry !== undefined) {
      ops.push({ type: 'put', key: t.dkey, value: encodeValue(t.entry) });
      after = t.key.length + valueBytes(t.entry.value);
    } else if (t.stored !== undefined) {
      ops.push({ type: 'del', key: t.dkey });
    } else {
      continue;
    }
    const delta = deltas.get(t.slot) ?? { keys: 0, bytes: 0 };
    delta.keys += (t.entry !== undefined ? 1 : 0) - (t.stored !== undefined ? 1 : 0);
    delta.bytes += after - before;
    deltas.set(t.slot, delta);
  }
  return { ops, deltas };
}
