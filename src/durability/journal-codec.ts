import {
  type Mutation,
  type SlotRange,
  type StoreRecord,
  dataLoss,
  decodeMutations,
  decodeRecord,
  encodeMutations,
  encodedRecordLength,
  writeRecord,
} from '../core';
import type { InstallTarget } from '../store';

/**
 * The payloads of the memory store's WAL records (the WAL frames and checksums them; see
 * docs/FORMAT.md). Integers little-endian; seqs are u64.
 *
 *   write          u64 store seq | u32 n | n × f64 clock reading | mutation batch
 *                  (n = 1: one reading for the batch; the batch as mutation-codec.ts)
 *   install part   u64 install id | target | u32 n | n × (u32 length | record as record-codec.ts)
 *   install commit u64 install id | target | u64 store seq after | u32 records staged
 *   delta          target (seq: the source's) | u64 base seq | u64 store seq after |
 *                  f64 clock reading | u32 n | n × (u32 length | record) |
 *                  u32 m | m × (u32 length | deleted key)
 *   expired        u32 n | n × (u32 length | key)   (keys the expiry sweep removed; no seq)
 *   target         u8 full | u64 target seq | u32 n | n × (u32 start | u32 end)
 *
 * Every part names its target, so that a replay stages an install as it goes rather than
 * holding its records until the commit.
 */
export const JournalKinds = {
  write: 1,
  installPart: 2,
  installCommit: 3,
  delta: 4,
  expired: 5,
} as const;

export interface JournalTarget {
  full: boolean;
  targetSeq: number;
  slots: SlotRange[];
}

export type JournalEntry =
  | { kind: 'write'; seq: number; atMs: number | number[]; mutations: Mutation[] }
  | { kind: 'installPart'; installId: bigint; target: JournalTarget; records: StoreRecord[] }
  | {
      kind: 'installCommit';
      installId: bigint;
      target: JournalTarget;
      seq: number;
      recordCount: number;
    }
  | {
      kind: 'delta';
      target: JournalTarget;
      baseSeq: number;
      seq: number;
      atMs: number;
      upserts: StoreRecord[];
      deletes: Buffer[];
    }
  | { kind: 'expired'; keys: Buffer[] };

const u64 = (n: number): bigint => BigInt(n);

export function encodeWrite(
  seq: number,
  atMs: number | readonly number[],
  mutations: readonly Mutation[],
): Buffer {
  const readings = typeof atMs === 'number' ? [atMs] : atMs;
  const batch = encodeMutations(mutations);
  const out = Buffer.allocUnsafe(12 + 8 * readings.length + batch.length);
  out.writeBigUInt64LE(u64(seq), 0);
  out.writeUInt32LE(readings.length, 8);
  let pos = 12;
  for (const reading of readings) pos = out.writeDoubleLE(reading, pos);
  batch.copy(out, pos);
  return out;
}

const targetBytes = (target: InstallTarget): number => 13 + 8 * target.slots.length;

function writeTarget(out: Buffer, pos: number, target: InstallTarget): number {
  pos = out.writeUInt8(target.full ? 1 : 0, pos);
  pos = out.writeBigUInt64LE(u64(target.seq), pos);
  pos = out.writeUInt32LE(target.slots.length, pos);
  for (const range of target.slots) {
    pos = out.writeUInt32LE(range.start, pos);
    pos = out.writeUInt32LE(range.end, pos);
  }
  return pos;
}

export function encodeInstallPart(
  installId: bigint,
  target: InstallTarget,
  records: readonly StoreRecord[],
  allocate: (length: number) => Buffer = (length) => Buffer.allocUnsafe(length),
): Buffer {
  let length = 12 + targetBytes(target);
  for (const { key, entry } of records) length += 4 + encodedRecordLength(key, entry);
  const out = allocate(length);
  out.writeBigUInt64LE(installId, 0);
  let pos = writeTarget(out, 8, target);
  pos = out.writeUInt32LE(records.length, pos);
  for (const { key, entry } of records) {
    const end = writeRecord(out, pos + 4, key, entry);
    out.writeUInt32LE(end - pos - 4, pos);
    pos = end;
  }
  return out;
}

export function encodeInstallCommit(
  installId: bigint,
  commit: { target: InstallTarget; seq: number; recordCount: number },
): Buffer {
  const out = Buffer.allocUnsafe(8 + targetBytes(commit.target) + 12);
  out.writeBigUInt64LE(installId, 0);
  let pos = writeTarget(out, 8, commit.target);
  pos = out.writeBigUInt64LE(u64(commit.seq), pos);
  out.writeUInt32LE(commit.recordCount, pos);
  return out;
}

export function encodeDelta(change: {
  target: InstallTarget & { baseSeq: number };
  seq: number;
  atMs: number;
  upserts: readonly StoreRecord[];
  deletes: readonly Buffer[];
}): Buffer {
  let length = targetBytes(change.target) + 8 + 8 + 8 + 4 + 4;
  for (const { key, entry } of change.upserts) length += 4 + encodedRecordLength(key, entry);
  for (const key of change.deletes) length += 4 + key.length;
  const out = Buffer.allocUnsafe(length);
  let pos = writeTarget(out, 0, change.target);
  pos = out.writeBigUInt64LE(u64(change.target.baseSeq), pos);
  pos = out.writeBigUInt64LE(u64(change.seq), pos);
  pos = out.writeDoubleLE(change.atMs, pos);
  pos = out.writeUInt32LE(change.upserts.length, pos);
  for (const { key, entry } of change.upserts) {
    const end = writeRecord(out, pos + 4, key, entry);
    out.writeUInt32LE(end - pos - 4, pos);
    pos = end;
  }
  pos = out.writeUInt32LE(change.deletes.length, pos);
  for (const key of change.deletes) {
    pos = out.writeUInt32LE(key.length, pos);
    pos += key.copy(out, pos);
  }
  return out;
}

export function encodeExpired(keys: readonly Buffer[]): Buffer {
  let length = 4;
  for (const key of keys) length += 4 + key.length;
  const out = Buffer.allocUnsafe(length);
  let pos = out.writeUInt32LE(keys.length, 0);
  for (const key of keys) {
    pos = out.writeUInt32LE(key.length, pos);
    pos += key.copy(out, pos);
  }
  return out;
}

class Reader {
  pos = 0;
  constructor(
    private readonly payload: Buffer,
    private readonly what: string,
  ) {}
  need(bytes: number): void {
    if (this.pos + bytes > this.payload.length) {
      throw dataLoss(
        `${this.what} record truncated: ${this.payload.length} bytes, needs ${this.pos + bytes}`,
      );
    }
  }
  u8(): number {
    this.need(1);
    return this.payload.readUInt8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const value = this.payload.readUInt32LE(this.pos);
    this.pos += 4;
    return value;
  }
  u64(): bigint {
    this.need(8);
    const value = this.payload.readBigUInt64LE(this.pos);
    this.pos += 8;
    return value;
  }
  seq(): number {
    const value = this.u64();
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw dataLoss(`seq ${value} is out of range`);
    return Number(value);
  }
  f64(): number {
    this.need(8);
    const value = this.payload.readDoubleLE(this.pos);
    this.pos += 8;
    return value;
  }
  target(): JournalTarget {
    const full = this.u8() === 1;
    const targetSeq = this.seq();
    const n = this.u32();
    this.need(8 * n);
    const slots: SlotRange[] = [];
    for (let i = 0; i < n; i++) slots.push({ start: this.u32(), end: this.u32() });
    return { full, targetSeq, slots };
  }
  bytes(): Buffer {
    const length = this.u32();
    this.need(length);
    const out = this.payload.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }
  record(): StoreRecord {
    const length = this.u32();
    this.need(length);
    const record = decodeRecord(this.payload, this.pos, this.pos + length, 'views');
    this.pos += length;
    return record;
  }
  end(): void {
    if (this.pos !== this.payload.length) {
      throw dataLoss(`${this.what} record has ${this.payload.length - this.pos} trailing bytes`);
    }
  }
}

/** Decodes one record's payload (byte strings are views of `payload`). */
export function decodeJournalEntry(kind: number, payload: Buffer): JournalEntry {
  switch (kind) {
    case JournalKinds.write: {
      const r = new Reader(payload, 'write');
      const seq = r.seq();
      const n = r.u32();
      r.need(8 * n);
      const readings: number[] = [];
      for (let i = 0; i < n; i++) readings.push(r.f64());
      const mutations = decodeMutations(payload.subarray(r.pos));
      return { kind: 'write', seq, atMs: n === 1 ? (readings[0] as number) : readings, mutations };
    }
    case JournalKinds.installPart: {
      const r = new Reader(payload, 'install part');
      const installId = r.u64();
      const target = r.target();
      const count = r.u32();
      const records: StoreRecord[] = [];
      for (let i = 0; i < count; i++) records.push(r.record());
      r.end();
      return { kind: 'installPart', installId, target, records };
    }
    case JournalKinds.installCommit: {
      const r = new Reader(payload, 'install commit');
      const installId = r.u64();
      const target = r.target();
      const seq = r.seq();
      const recordCount = r.u32();
      r.end();
      return { kind: 'installCommit', installId, target, seq, recordCount };
    }
    case JournalKinds.delta: {
      const r = new Reader(payload, 'delta');
      const target = r.target();
      const baseSeq = r.seq();
      const seq = r.seq();
      const atMs = r.f64();
      const upserts: StoreRecord[] = [];
      for (let n = r.u32(), i = 0; i < n; i++) upserts.push(r.record());
      const deletes: Buffer[] = [];
      for (let n = r.u32(), i = 0; i < n; i++) deletes.push(r.bytes());
      r.end();
      return { kind: 'delta', target, baseSeq, seq, atMs, upserts, deletes };
    }
    case JournalKinds.expired: {
      const r = new Reader(payload, 'expired');
      const keys: Buffer[] = [];
      for (let n = r.u32(), i = 0; i < n; i++) keys.push(r.bytes());
      r.end();
      return { kind: 'expired', keys };
    }
    default:
      throw dataLoss(`unknown journal record kind ${kind}`);
  }
}
