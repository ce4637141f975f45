import { dataLoss } from './errors';
import { SlabAllocator } from './slab';
import { type Entry, type StoreRecord, type Value, VALUE_TYPE_CODES } from './values';

/**
 * Binary encoding of one key record (documented in docs/FORMAT.md):
 *
 *   u8 type | u64 expire_at_ms | u32 key_len | key | payload
 *
 * All integers little-endian. Payload by type: string = u32 len + bytes; list = u32 n +
 * n × (u32 len + bytes); hash = u32 n + n × (field, value); set = u32 n + n × member;
 * zset = u32 n + n × (member, f64 score). The canonical form (used by digests) sorts hash
 * fields, set members and zset members by their bytes; artifacts keep insertion order.
 */

const TYPE_BY_CODE = new Map<number, Value['type']>(
  Object.entries(VALUE_TYPE_CODES).map(([type, code]) => [code, type as Value['type']]),
);

const HEADER_BYTES = 1 + 8 + 4;

export function encodedRecordLength(key: Buffer, entry: Entry): number {
  const v = entry.value;
  let n = HEADER_BYTES + key.length;
  switch (v.type) {
    case 'string':
      return n + 4 + v.value.length;
    case 'list':
      n += 4;
      for (const item of v.items) n += 4 + item.length;
      return n;
    case 'hash':
      n += 4;
      for (const [field, value] of v.fields) n += 8 + field.length + value.length;
      return n;
    case 'set':
      n += 4;
      for (const member of v.members) n += 4 + member.length;
      return n;
    case 'zset':
      n += 4;
      for (const member of v.members.keys()) n += 4 + member.length + 8;
      return n;
  }
}

function writeBytes(out: Buffer, pos: number, bytes: Buffer): number {
  out.writeUInt32LE(bytes.length, pos);
  bytes.copy(out, pos + 4);
  return pos + 4 + bytes.length;
}

function writeLatin1(out: Buffer, pos: number, text: string): number {
  out.writeUInt32LE(text.length, pos);
  out.write(text, pos + 4, 'latin1');
  return pos + 4 + text.length;
}

const byString = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Writes the record at `pos` of `out` (which must have room) and returns the end position. */
export function writeRecord(
  out: Buffer,
  pos: number,
  key: Buffer,
  entry: Entry,
  canonical = false,
): number {
  const v = entry.value;
  out.writeUInt8(VALUE_TYPE_CODES[v.type], pos);
  out.writeUInt32LE(entry.expireAtMs % 0x1_0000_0000, pos + 1);
  out.writeUInt32LE(Math.floor(entry.expireAtMs / 0x1_0000_0000), pos + 5);
  pos = writeBytes(out, pos + 9, key);
  return writePayload(out, pos, v, canonical);
}

export function encodeRecord(key: Buffer, entry: Entry, canonical = false): Buffer {
  const out = Buffer.allocUnsafe(encodedRecordLength(key, entry));
  writeRecord(out, 0, key, entry, canonical);
  return out;
}

/** Reads records out of one buffer holding exactly one encoded record. */
class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
    private readonly end: number,
    private readonly slab: SlabAllocator | 'views' | undefined,
  ) {}

  need(n: number): void {
    if (this.pos + n > this.end) {
      throw dataLoss(`record truncated at byte ${this.pos} (needs ${n} more of ${this.end})`);
    }
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(): Buffer {
    const len = this.u32();
    this.need(len);
    // A copy, so a record never pins the (large) chunk it was decoded from; views only
    // for callers that copy what they keep at once.
    const out =
      this.slab === 'views'
        ? this.buf.subarray(this.pos, this.pos + len)
        : this.slab
          ? this.slab.copy(this.buf, this.pos, this.pos + len)
          : Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }

  latin1(): string {
    const len = this.u32();
    this.need(len);
    const out = this.buf.toString('latin1', this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
}

/** The payload of a value of `type`, read at the reader's position. */
function readPayload(r: Reader, type: Value['type']): Value {
  switch (type) {
    case 'string':
      return { type, value: r.bytes() };
    case 'list': {
      const n = r.u32();
      const items: Buffer[] = new Array<Buffer>(n);
      for (let i = 0; i < n; i++) items[i] = r.bytes();
      return { type, items };
    }
    case 'hash': {
      const n = r.u32();
      const fields = new Map<string, Buffer>();
      for (let i = 0; i < n; i++) fields.set(r.latin1(), r.bytes());
      return { type, fields };
    }
    case 'set': {
      const n = r.u32();
      const members = new Set<string>();
      for (let i = 0; i < n; i++) members.add(r.latin1());
      return { type, members };
    }
    case 'zset': {
      const n = r.u32();
      const members = new Map<string, number>();
      for (let i = 0; i < n; i++) members.set(r.latin1(), r.f64());
      return { type, members };
    }
  }
}

/**
 * Decodes one record; byte strings are copied, into `slab` when one is given, or are
 * views into `buf` with `'views'` (for a caller that copies them before `buf` changes).
 */
export function decodeRecord(
  buf: Buffer,
  start = 0,
  end = buf.length,
  slab?: SlabAllocator | 'views',
): StoreRecord {
  const r = new Reader(buf, start, end, slab);
  r.need(HEADER_BYTES);
  const type = TYPE_BY_CODE.get(buf.readUInt8(r.pos));
  if (type === undefined)
    throw dataLoss(`unknown value type ${buf.readUInt8(r.pos)} at byte ${r.pos}`);
  const expireAtMs = buf.readUInt32LE(r.pos + 1) + buf.readUInt32LE(r.pos + 5) * 0x1_0000_0000;
  r.pos += 9;
  const key = r.bytes();
  const value = readPayload(r, type);
  if (r.pos !== end) throw dataLoss(`record has ${end - r.pos} trailing bytes`);
  return { key, entry: { value, expireAtMs } };
}

/*
 * Values without their key, for stores that keep the key elsewhere (RocksDB keys):
 *
 *   u8 type | u64 expire_at_ms | payload
 *
 * i.e. the record layout above minus `u32 key_len | key`.
 */

const VALUE_HEADER_BYTES = 1 + 8;
const EMPTY_KEY = Buffer.alloc(0);

/** Bytes of `encodeValue(entry)`. */
export function encodedValueLength(entry: Entry): number {
  return encodedRecordLength(EMPTY_KEY, entry) - 4;
}

/** The payload of a value; `canonical` sorts hash fields and set/zset members by bytes. */
function writePayload(out: Buffer, pos: number, v: Value, canonical = false): number {
  switch (v.type) {
    case 'string':
      return writeBytes(out, pos, v.value);
    case 'list':
      out.writeUInt32LE(v.items.length, pos);
      pos += 4;
      for (const item of v.items) pos = writeBytes(out, pos, item);
      return pos;
    case 'hash': {
      out.writeUInt32LE(v.fields.size, pos);
      pos += 4;
      const fields = canonical ? [...v.fields.keys()].sort(byString) : v.fields.keys();
      for (const field of fields) {
        pos = writeLatin1(out, pos, field);
        pos = writeBytes(out, pos, v.fields.get(field) as Buffer);
      }
      return pos;
    }
    case 'set': {
      out.writeUInt32LE(v.members.size, pos);
      pos += 4;
      const members = canonical ? [...v.members].sort(byString) : v.members;
      for (const member of members) pos = writeLatin1(out, pos, member);
      return pos;
    }
    case 'zset': {
      out.writeUInt32LE(v.members.size, pos);
      pos += 4;
      const members = canonical ? [...v.members.keys()].sort(byString) : v.members.keys();
      for (const member of members) {
        pos = writeLatin1(out, pos, member);
        out.writeDoubleLE(v.members.get(member) as number, pos);
        pos += 8;
      }
      return pos;
    }
  }
}

/** Encodes an entry (type, expiry, contents in insertion order) without a key. */
export function encodeValue(entry: Entry): Buffer {
  const out = Buffer.allocUnsafe(encodedValueLength(entry));
  out.writeUInt8(VALUE_TYPE_CODES[entry.value.type], 0);
  out.writeUInt32LE(entry.expireAtMs % 0x1_0000_0000, 1);
  out.writeUInt32LE(Math.floor(entry.expireAtMs / 0x1_0000_0000), 5);
  writePayload(out, VALUE_HEADER_BYTES, entry.value);
  return out;
}

/** Type and expiry of an encoded value, without decoding its contents. */
export function readValueHeader(
  buf: Buffer,
  start = 0,
  end = buf.length,
): { type: Value['type']; expireAtMs: number } {
  if (end - start < VALUE_HEADER_BYTES) {
    throw dataLoss(`value truncated: ${end - start} bytes, header needs ${VALUE_HEADER_BYTES}`);
  }
  const type = TYPE_BY_CODE.get(buf.readUInt8(start));
  if (type === undefined) throw dataLoss(`unknown value type ${buf.readUInt8(start)}`);
  const expireAtMs = buf.readUInt32LE(start + 1) + buf.readUInt32LE(start + 5) * 0x1_0000_0000;
  return { type, expireAtMs };
}

/**
 * `valueBytes` of an encoded value, computed from its length and element count alone
 * (every element carries a fixed overhead: u32 lengths, and a u32 per hash value).
 */
export function encodedValueBytes(buf: Buffer, start = 0, end = buf.length): number {
  const { type } = readValueHeader(buf, start, end);
  if (end - start < VALUE_HEADER_BYTES + 4) throw dataLoss('value truncated before its payload');
  const body = end - start - VALUE_HEADER_BYTES - 4;
  const n = buf.readUInt32LE(start + VALUE_HEADER_BYTES);
  switch (type) {
    case 'string':
      return body;
    case 'hash':
      return body - 8 * n;
    default:
      return body - 4 * n;
  }
}

/** Decodes a value written by `encodeValue`; byte strings are copied, into `slab` when given. */
export function decodeValue(buf: Buffer, start = 0, end = buf.length, slab?: SlabAllocator): Entry {
  const { type, expireAtMs } = readValueHeader(buf, start, end);
  const r = new Reader(buf, start + VALUE_HEADER_BYTES, end, slab);
  const value = readPayload(r, type);
  if (r.pos !== end) throw dataLoss(`value has ${end - r.pos} trailing bytes`);
  return { value, expireAtMs };
}

/*
 * Payloads alone (no type, expiry or key), for stores that keep those beside the bytes
 * (the memory keyspace keeps them in typed arrays).
 */

/** Bytes of `writeValuePayload(value)`. */
export function valuePayloadLength(value: Value): number {
  return encodedRecordLength(EMPTY_KEY, { value, expireAtMs: 0 }) - HEADER_BYTES;
}

/** Writes the payload of `value` at `pos` of `out` (which must have room); returns the end. */
export function writeValuePayload(out: Buffer, pos: number, value: Value): number {
  return writePayload(out, pos, value);
}

/** Decodes a payload written by `writeValuePayload`; byte strings are copied. */
export function decodeValuePayload(
  type: Value['type'],
  buf: Buffer,
  start: number,
  end: number,
): Value {
  const r = new Reader(buf, start, end, undefined);
  const value = readPayload(r, type);
  if (r.pos !== end) throw dataLoss(`value has ${end - r.pos} trailing bytes`);
  return value;
}
