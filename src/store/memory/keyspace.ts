import {
  type Entry,
  SLOT_COUNT,
  VALUE_TYPE_CODES,
  type Value,
  cloneEntry,
  type ValueType,
  decodeValuePayload,
  valueBytes,
  valuePayloadLength,
  writeValuePayload,
} from '../../core';
import { Arena } from './arena';
import { FLAG_INDEXED, FLAG_OBJECT, FLAG_RETIRED, RecordTable } from './record-table';
import { type KeyMatcher, SlotTable } from './slot-table';

const TYPE_BY_CODE: readonly ValueType[] = ['string', 'string', 'list', 'hash', 'set', 'zset'];
const STRING_CODE = VALUE_TYPE_CODES.string;
const HASH_CODE = VALUE_TYPE_CODES.hash;

/**
 * Collections up to these sizes are kept as one encoded payload in the arena and decoded
 * to change them (as Redis keeps small ones in a listpack); larger ones stay JS objects,
 * so a change costs its members, not the collection.
 */
const BLOB_MAX_MEMBERS = 128;
const BLOB_MAX_BYTES = 8 << 10;

export type EntryMode = 'live' | 'view' | 'copy';

/** FNV-1a over the key's bytes: the in-slot hash of the index. */
export function hashKey(key: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ (key[i] as number), 0x01000193);
  return h >>> 0;
}

function memberCount(value: Value): number {
  switch (value.type) {
    case 'string':
      return 0;
    case 'list':
      return value.items.length;
    case 'hash':
      return value.fields.size;
    default:
      return value.members.size;
  }
}

/**
 * The memory store's keyspace: records in typed-array columns, their key and value bytes
 * in an append-only arena, and one open-addressing table of record ids per slot. The V8
 * heap holds a few hundred objects (segments, slot tables) plus the large collections,
 * however many keys there are, so garbage collections do not grow with the keyspace.
 *
 * Records are immutable while a view may read them: a change makes a new record and
 * retires the old one, which is freed at once unless a view pinned it.
 */
export class Keyspace implements KeyMatcher {
  readonly records = new RecordTable();
  readonly arena = new Arena();
  private readonly tables: Array<SlotTable | undefined> = new Array<SlotTable | undefined>(
    SLOT_COUNT,
  );
  private readonly objects = new Map<number, { value: Value; bytes: number }>();
  private readonly bytesBySlot = new Float64Array(SLOT_COUNT);
  private keys = 0;
  private bytes = 0;
  private compaction: { victims: Set<Buffer>; cursor: number } | undefined;
  private cleared = 0;

  /** Changes when the keyspace is cleared: records from before are gone. */
  get generation(): number {
    return this.cleared;
  }

  get keyCount(): number {
    return this.keys;
  }

  get dataBytes(): number {
    return this.bytes;
  }

  slotKeyCount(slot: number): number {
    return this.tables[slot]?.size ?? 0;
  }

  slotBytes(slot: number): number {
    return this.bytesBySlot[slot] as number;
  }

  // --- reading ---------------------------------------------------------------------

  find(slot: number, key: Buffer, hash: number): number {
    return this.tables[slot]?.find(this, key, hash) ?? -1;
  }

  keyEquals(id: number, key: Buffer): boolean {
    const r = this.records;
    const length = r.keyLen(id);
    if (length !== key.length) return false;
    const seg = this.arena.segment(r.seg(id));
    const off = r.off(id);
    if (length <= 16) {
      for (let i = 0; i < length; i++) if (seg[off + i] !== key[i]) return false;
      return true;
    }
    return seg.compare(key, 0, length, off, off + length) === 0;
  }

  typeOf(id: number): ValueType {
    return TYPE_BY_CODE[this.records.type(id)] as ValueType;
  }

  expireOf(id: number): number {
    return this.records.expire(id);
  }

  isExpired(id: number, nowMs: number): boolean {
    const at = this.records.expire(id);
    return at > 0 && at <= nowMs;
  }

  /** The key's bytes, as a view of the arena (valid for as long as it is referenced). */
  keyOf(id: number): Buffer {
    const r = this.records;
    const off = r.off(id);
    return this.arena.segment(r.seg(id)).subarray(off, off + r.keyLen(id));
  }

  keyString(id: number): string {
    const r = this.records;
    const off = r.off(id);
    return this.arena.segment(r.seg(id)).toString('latin1', off, off + r.keyLen(id));
  }

  /**
   * The record's entry. `live`: string bytes are a view of the (immutable) arena range
   * and a large collection is the stored object; `view`: the same but large collections
   * are copied; `copy`: nothing refers to the keyspace. Small collections are always
   * decoded afresh.
   */
  entry(id: number, mode: EntryMode): Entry {
    const r = this.records;
    const expireAtMs = r.expire(id);
    if ((r.flags(id) & FLAG_OBJECT) !== 0) {
      const value = (this.objects.get(id) as { value: Value }).value;
      return mode === 'live' ? { value, expireAtMs } : cloneEntry({ value, expireAtMs });
    }
    const start = r.off(id) + r.keyLen(id);
    const end = start + r.valLen(id);
    const seg = this.arena.segment(r.seg(id));
    const code = r.type(id);
    if (code === STRING_CODE) {
      const bytes = seg.subarray(start, end);
      return {
        value: { type: 'string', value: mode === 'copy' ? Buffer.from(bytes) : bytes },
        expireAtMs,
      };
    }
    return { value: decodeValuePayload(this.typeOf(id), seg, start, end), expireAtMs };
  }

  /** Key plus value payload bytes of a record (what `dataBytes` counts). */
  dataBytesOf(id: number): number {
    const r = this.records;
    const keyBytes = r.keyLen(id);
    if ((r.flags(id) & FLAG_OBJECT) !== 0) {
      return keyBytes + (this.objects.get(id) as { bytes: number }).bytes;
    }
    const code = r.type(id);
    const valLen = r.valLen(id);
    if (code === STRING_CODE) return keyBytes + valLen;
    const seg = this.arena.segment(r.seg(id));
    const n = seg.readUInt32LE(r.off(id) + keyBytes);
    return keyBytes + valLen - 4 - (code === HASH_CODE ? 8 : 4) * n;
  }

  /** Record ids of the slot's keys (a copy: later changes do not affect it). */
  slotIds(slot: number): Int32Array {
    return this.tables[slot]?.ids() ?? new Int32Array(0);
  }

  // --- records -----------------------------------------------------------------------

  /** A new string record, not yet in any index. */
  createString(key: Buffer, hash: number, slot: number, value: Buffer, expireAtMs: number): number {
    const id = this.allocateRecord(key, hash, slot, value.length, STRING_CODE, expireAtMs);
    const r = this.records;
    value.copy(this.arena.segment(r.seg(id)), r.off(id) + key.length);
    return id;
  }

  /** A new record for any value, not yet in any index. */
  /**
   * `borrowed`: the entry's buffers are views into memory that will be reused (an
   * install decoding in place); a value kept as an object then gets copies of them.
   */
  create(key: Buffer, hash: number, slot: number, entry: Entry, borrowed = false): number {
    const value = entry.value;
    if (value.type === 'string') {
      return this.createString(key, hash, slot, value.value, entry.expireAtMs);
    }
    const code = VALUE_TYPE_CODES[value.type];
    const members = memberCount(value);
    const payload = members <= BLOB_MAX_MEMBERS ? valuePayloadLength(value) : Infinity;
    if (payload <= BLOB_MAX_BYTES) {
      const id = this.allocateRecord(key, hash, slot, payload, code, entry.expireAtMs);
      const r = this.records;
      writeValuePayload(this.arena.segment(r.seg(id)), r.off(id) + key.length, value);
      return id;
    }
    const id = this.allocateRecord(key, hash, slot, 0, code, entry.expireAtMs);
    this.records.setFlags(id, FLAG_OBJECT);
    const owned = borrowed ? ownedValue(value) : value;
    this.objects.set(id, { value: owned, bytes: valueBytes(owned) });
    return id;
  }

  /** A copy of a record with another expiry (for a view that holds the original). */
  withExpiry(id: number, expireAtMs: number): number {
    const r = this.records;
    if ((r.flags(id) & FLAG_OBJECT) !== 0) {
      const entry = this.entry(id, 'copy');
      return this.create(this.keyOf(id), r.hash(id), r.slot(id), {
        value: entry.value,
        expireAtMs,
      });
    }
    const keyLen = r.keyLen(id);
    const valLen = r.valLen(id);
    const copy = this.records.take();
    const { seg, off } = this.arena.allocate(keyLen + valLen);
    this.arena
      .segment(r.seg(id))
      .copy(this.arena.segment(seg), off, r.off(id), r.off(id) + keyLen + valLen);
    r.set(copy, seg, off, keyLen, valLen, r.hash(id), r.slot(id), r.type(id), expireAtMs);
    return copy;
  }

  /** Changes an expiry in place: only for a record no view holds. */
  setExpiry(id: number, expireAtMs: number): void {
    this.records.setExpire(id, expireAtMs);
  }

  /** Whether a large collection may be changed in place (no view holds it). */
  isMutableObject(id: number): boolean {
    const r = this.records;
    return (r.flags(id) & FLAG_OBJECT) !== 0 && r.pins(id) === 0;
  }

  /** Takes note of an in-place change of a large collection (its size may have changed). */
  objectChanged(id: number): void {
    const held = this.objects.get(id) as { value: Value; bytes: number };
    const before = held.bytes;
    held.bytes = valueBytes(held.value);
    if ((this.records.flags(id) & FLAG_INDEXED) !== 0) {
      this.addBytes(this.records.slot(id), held.bytes - before);
    }
  }

  // --- the index ---------------------------------------------------------------------

  /** Makes `id` the record of its key, in place of `previous` (-1 = the key was absent). */
  put(id: number, previous: number): void {
    const r = this.records;
    const slot = r.slot(id);
    let table = this.tables[slot];
    if (!table) {
      table = new SlotTable();
      this.tables[slot] = table;
    }
    if (previous >= 0) {
      table.swap(previous, id, r.hash(id));
      this.unindex(previous);
    } else {
      table.insert(id, r.hash(id));
      this.keys++;
    }
    r.setFlags(id, r.flags(id) | FLAG_INDEXED);
    this.addBytes(slot, this.dataBytesOf(id));
  }

  /** Removes the record from its key's index and retires it. */
  remove(id: number): void {
    const r = this.records;
    const slot = r.slot(id);
    const table = this.tables[slot] as SlotTable;
    table.remove(id, r.hash(id));
    if (table.size === 0) this.tables[slot] = undefined;
    this.keys--;
    this.unindex(id);
  }

  private unindex(id: number): void {
    const r = this.records;
    this.addBytes(r.slot(id), -this.dataBytesOf(id));
    r.setFlags(id, r.flags(id) & ~FLAG_INDEXED);
    this.retire(id);
  }

  isIndexed(id: number): boolean {
    return (this.records.flags(id) & FLAG_INDEXED) !== 0;
  }

  /** A table of staged records that `swapSlot` can put in place of a slot's table. */
  newTable(): SlotTable {
    return new SlotTable();
  }

  /** Adds a staged record to a staged table; false if its key is there already. */
  stage(table: SlotTable, id: number): boolean {
    const r = this.records;
    const hash = r.hash(id);
    if (table.find(this, this.keyOf(id), hash) >= 0) return false;
    table.insert(id, hash);
    return true;
  }

  /**
   * Puts `table` (staged records) in place of the slot's table and returns the ids of
   * the replaced records, which stay allocated until the caller retires them (after views
   * that still read the slot have pinned them).
   */
  swapSlot(slot: number, table: SlotTable | undefined): Int32Array {
    const old = this.tables[slot];
    const oldIds = old ? old.ids() : new Int32Array(0);
    const r = this.records;
    let bytes = 0;
    for (const id of oldIds) r.setFlags(id, r.flags(id) & ~FLAG_INDEXED);
    const newIds = table ? table.ids() : new Int32Array(0);
    for (const id of newIds) {
      r.setFlags(id, r.flags(id) | FLAG_INDEXED);
      bytes += this.dataBytesOf(id);
    }
    this.keys += newIds.length - oldIds.length;
    this.tables[slot] = table && table.size > 0 ? table : undefined;
    this.addBytes(slot, bytes - (this.bytesBySlot[slot] as number));
    return oldIds;
  }

  // --- lifetime ----------------------------------------------------------------------

  pin(id: number): void {
    this.records.setPins(id, this.records.pins(id) + 1);
  }

  unpin(id: number): void {
    const r = this.records;
    const left = r.pins(id) - 1;
    r.setPins(id, left);
    if (left === 0 && (r.flags(id) & FLAG_RETIRED) !== 0) this.free(id);
  }

  /** A record out of the index: freed now, or when the last view that pinned it lets go. */
  retire(id: number): void {
    const r = this.records;
    if (r.pins(id) === 0) this.free(id);
    else r.setFlags(id, r.flags(id) | FLAG_RETIRED);
  }

  /** Frees a record that was never indexed (an aborted install's). */
  free(id: number): void {
    const r = this.records;
    if ((r.flags(id) & FLAG_OBJECT) !== 0) this.objects.delete(id);
    this.arena.release(r.seg(id), r.keyLen(id) + r.valLen(id));
    r.release(id);
  }

  clear(): void {
    this.cleared++;
    this.tables.fill(undefined);
    this.objects.clear();
    this.bytesBySlot.fill(0);
    this.keys = 0;
    this.bytes = 0;
    this.arena.clear();
    this.records.clear();
    this.compaction = undefined;
  }

  /**
   * One bounded step of compaction: when dead ranges make up over a quarter of the
   * arena (and at least `minDeadBytes`), the sparsest segments are emptied by moving
   * their live ranges to the segment being filled: `budget` record ids examined and at most
   * `maxBytes` copied per step.
   * Returns the records moved.
   */
  compactStep(budget: number, minDeadBytes = 32 << 20, maxBytes = 4 << 20): number {
    const r = this.records;
    if (!this.compaction) {
      const dead = this.arena.allocated - this.arena.liveBytes;
      if (dead < minDeadBytes || dead * 4 < this.arena.allocated) return 0;
      const victims = this.arena.sparseSegments(0.5, 16).map((seg) => this.arena.segment(seg));
      if (victims.length === 0) return 0;
      this.compaction = { victims: new Set(victims), cursor: 0 };
    }
    const { victims } = this.compaction;
    let end = Math.min(r.limit, this.compaction.cursor + budget);
    let moved = 0;
    let movedBytes = 0;
    for (let id = this.compaction.cursor; id < end; id++) {
      if (r.type(id) === 0) continue;
      const from = this.arena.segment(r.seg(id));
      if (!victims.has(from)) continue;
      const length = r.keyLen(id) + r.valLen(id);
      const start = r.off(id);
      const { seg, off } = this.arena.allocate(length);
      from.copy(this.arena.segment(seg), off, start, start + length);
      this.arena.release(r.seg(id), length);
      r.setLocation(id, seg, off);
      moved++;
      movedBytes += length;
      // A step copies at most maxBytes: it runs on the event loop between calls.
      if (movedBytes >= maxBytes) end = id + 1;
    }
    this.compaction.cursor = end;
    if (end >= r.limit) this.compaction = undefined;
    return moved;
  }

  private allocateRecord(
    key: Buffer,
    hash: number,
    slot: number,
    valueLength: number,
    code: number,
    expireAtMs: number,
  ): number {
    const r = this.records;
    const id = r.take();
    const { seg, off } = this.arena.allocate(key.length + valueLength);
    key.copy(this.arena.segment(seg), off);
    r.set(id, seg, off, key.length, valueLength, hash, slot, code, expireAtMs);
    return id;
  }

  private addBytes(slot: number, delta: number): void {
    this.bytesBySlot[slot] = (this.bytesBySlot[slot] as number) + delta;
    this.bytes += delta;
  }
}

/** `value` with copies of its byte strings (members of sets and zsets are strings already). */
function ownedValue(value: Value): Value {
  if (value.type === 'list') return { type: 'list', items: value.items.map((i) => Buffer.from(i)) };
  if (value.type === 'hash') {
    const fields = new Map<string, Buffer>();
    for (const [field, v] of value.fields) fields.set(field, Buffer.from(v));
    return { type: 'hash', fields };
  }
  if (value.type === 'string') return { type: 'string', value: Buffer.from(value.value) };
  return value;
}
