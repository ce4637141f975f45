import { SLOT_COUNT, type SlotRange } from '../../core';

/**
 * Key layout of the RocksDB backend.
 *
 *   data:  be16(slot) | user key           slots 0..16383 → first byte 0x00..0x3f
 *   meta:  0xff 0xff | kind | ...          outside every slot range
 *
 * A slot range [a, b] is the contiguous key range [be16(a), be16(b + 1)); for b = 16383
 * the upper bound is 0x40 0x00.
 */

export const SLOT_PREFIX_BYTES = 2;

export function slotPrefix(slot: number): Buffer {
  const out = Buffer.allocUnsafe(SLOT_PREFIX_BYTES);
  out.writeUInt16BE(slot, 0);
  return out;
}

/** The RocksDB key of a user key in `slot`. */
export function dataKey(slot: number, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(SLOT_PREFIX_BYTES + key.length);
  out.writeUInt16BE(slot, 0);
  key.copy(out, SLOT_PREFIX_BYTES);
  return out;
}

/** [gte, lt) of the data keys of a slot range. */
export function slotRangeBounds(range: SlotRange): { gte: Buffer; lt: Buffer } {
  return { gte: slotPrefix(range.start), lt: slotPrefix(range.end + 1) };
}

const META = [0xff, 0xff];
const KIND_COUNTER = 0x63; // 'c'
const KIND_FORMAT = 0x66; // 'f'
const KIND_SEQ = 0x73; // 's'

/** The store's sequence number (u64 LE). */
export const SEQ_KEY = Buffer.from([...META, KIND_SEQ]);
/** Layout version of the store, written when the store is created. */
export const FORMAT_KEY = Buffer.from([...META, KIND_FORMAT]);

/** Per-slot key count and payload bytes. */
export function counterKey(slot: number): Buffer {
  const out = Buffer.from([...META, KIND_COUNTER, 0, 0]);
  out.writeUInt16BE(slot, 3);
  return out;
}

export function slotOfCounterKey(key: Buffer): number {
  return key.readUInt16BE(3);
}

/** [gte, lt) of the counter keys of a slot range. */
export function counterRangeBounds(range: SlotRange): { gte: Buffer; lt: Buffer } {
  return { gte: counterKey(range.start), lt: counterKey(range.end + 1) };
}

export const ALL_COUNTERS = counterRangeBounds({ start: 0, end: SLOT_COUNT - 1 });

/** A short printable form of a user key for error messages. */
export function describeKey(key: Buffer): string {
  const head = key.subarray(0, 64);
  const printable = head.every((byte) => byte >= 0x20 && byte < 0x7f);
  const text = printable ? JSON.stringify(head.toString('latin1')) : `0x${head.toString('hex')}`;
  return key.length > head.length ? `${text}… (${key.length} bytes)` : text;
}
