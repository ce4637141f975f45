import { dataLoss } from './errors';
import type { Mutation } from './mutation';

/**
 * A write batch as one buffer, for holding recent batches without an object per key,
 * member and value (the change log keeps tens of MiB of them):
 *
 *   u32 count | count × (u8 op | bytes key | op fields)
 *
 * bytes = u32 length + bytes; set = value, f64 expire; expire = f64 expire; hset = u32 n
 * + n × (field, value); lpush/rpush/sadd = u32 n + n × bytes; zadd = u32 n + n × (member,
 * f64 score). Integers little-endian. Decoded byte strings are views of the buffer.
 */
const OPS = ['set', 'del', 'hset', 'lpush', 'rpush', 'sadd', 'zadd', 'expire'] as const;
const OP_CODES: Record<Mutation['op'], number> = {
  set: 0,
  del: 1,
  hset: 2,
  lpush: 3,
  rpush: 4,
  sadd: 5,
  zadd: 6,
  expire: 7,
};

function mutationLength(m: Mutation): number {
  const head = 1 + 4 + m.key.length;
  switch (m.op) {
    case 'set':
      return head + 4 + m.value.length + 8;
    case 'del':
      return head;
    case 'expire':
      return head + 8;
    case 'hset':
      return m.fields.reduce((n, f) => n + 8 + f.field.length + f.value.length, head + 4);
    case 'lpush':
    case 'rpush':
      return m.values.reduce((n, v) => n + 4 + v.length, head + 4);
    case 'sadd':
      return m.members.reduce((n, v) => n + 4 + v.length, head + 4);
    case 'zadd':
      return m.members.reduce((n, v) => n + 12 + v.member.length, head + 4);
  }
}

function putBytes(out: Buffer, pos: number, bytes: Buffer): number {
  out.writeUInt32LE(bytes.length, pos);
  bytes.copy(out, pos + 4);
  return pos + 4 + bytes.length;
}

export function encodeMutations(mutations: readonly Mutation[]): Buffer {
  let length = 4;
  for (const m of mutations) length += mutationLength(m);
  const out = Buffer.allocUnsafe(length);
  out.writeUInt32LE(mutations.length, 0);
  let pos = 4;
  for (const m of mutations) {
    out[pos] = OP_CODES[m.op];
    pos = putBytes(out, pos + 1, m.key);
    switch (m.op) {
      case 'set':
        pos = putBytes(out, pos, m.value);
        pos = out.writeDoubleLE(m.expireAtMs, pos);
        break;
      case 'del':
        break;
      case 'expire':
        pos = out.writeDoubleLE(m.expireAtMs, pos);
        break;
      case 'hset':
        pos = out.writeUInt32LE(m.fields.length, pos);
        for (const f of m.fields) pos = putBytes(out, putBytes(out, pos, f.field), f.value);
        break;
      case 'lpush':
      case 'rpush':
        pos = out.writeUInt32LE(m.values.length, pos);
        for (const v of m.values) pos = putBytes(out, pos, v);
        break;
      case 'sadd':
        pos = out.writeUInt32LE(m.members.length, pos);
        for (const v of m.members) pos = putBytes(out, pos, v);
        break;
      case 'zadd':
        pos = out.writeUInt32LE(m.members.length, pos);
        for (const v of m.members) pos = out.writeDoubleLE(v.score, putBytes(out, pos, v.member));
        break;
    }
  }
  return out;
}

class Cursor {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw dataLoss(`mutation batch truncated at byte ${this.pos} (needs ${n})`);
    }
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleLE(this.pos);
    this.pos += 8;
    return v;
  }
  bytes(): Buffer {
    const n = this.u32();
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

export function decodeMutations(buf: Buffer): Mutation[] {
  const r = new Cursor(buf);
  const count = r.u32();
  const out: Mutation[] = [];
  for (let i = 0; i < count; i++) {
    const op = OPS[r.u8()];
    if (op === undefined) throw dataLoss(`unknown mutation op at byte ${r.pos - 1}`);
    const key = r.bytes();
    switch (op) {
      case 'set': {
        const value = r.bytes();
        out.push({ op, key, value, expireAtMs: r.f64() });
        break;
      }
      case 'del':
        out.push({ op, key });
        break;
      case 'expire':
        out.push({ op, key, expireAtMs: r.f64() });
        break;
      case 'hset': {
        const fields = new Array<{ field: Buffer; value: Buffer }>(r.u32());
        for (let j = 0; j < fields.length; j++) fields[j] = { field: r.bytes(), value: r.bytes() };
        out.push({ op, key, fields });
        break;
      }
      case 'lpush':
      case 'rpush':
      case 'sadd': {
        const items = new Array<Buffer>(r.u32());
        for (let j = 0; j < items.length; j++) items[j] = r.bytes();
        out.push(op === 'sadd' ? { op, key, members: items } : { op, key, values: items });
        break;
      }
      case 'zadd': {
        const members = new Array<{ member: Buffer; score: number }>(r.u32());
        for (let j = 0; j < members.length; j++) members[j] = { member: r.bytes(), score: r.f64() };
        out.push({ op, key, members });
        break;
      }
    }
  }
  if (r.pos !== buf.length)
    throw dataLoss(`mutation batch has ${buf.length - r.pos} trailing bytes`);
  return out;
}
