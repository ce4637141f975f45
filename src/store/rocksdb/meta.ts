import {
  ErrorCodes,
  SLOT_COUNT,
  ShardsnapError,
  type SlotRange,
  dataLoss,
  slotMask,
} from '../../core';
import {
  ALL_COUNTERS,
  FORMAT_KEY,
  SEQ_KEY,
  counterKey,
  counterRangeBounds,
  slotOfCounterKey,
} from './keys';
import type { Db, PutOp, Snapshot, WriteOp } from './native';

/** Layout version written into new stores; a store with another version is refused. */
export const FORMAT_VERSION = 'shardsnap-rocksdb/1';

export function encodeU64(n: number): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigUInt64LE(BigInt(n), 0);
  return out;
}

export function decodeU64(buf: Buffer, what: string): number {
  if (buf.length !== 8) throw dataLoss(`${what}: expected 8 bytes, found ${buf.length}`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw dataLoss(`${what}: ${n} is out of range`);
  return Number(n);
}

export function seqPut(seq: number): PutOp {
  return { type: 'put', key: SEQ_KEY, value: encodeU64(seq) };
}

/** The store seq as of `snapshot` (latest when omitted); 0 for a store never written. */
export async function readSeq(db: Db, snapshot?: Snapshot): Promise<number> {
  const raw = await db.get(SEQ_KEY, snapshot);
  return raw ? decodeU64(raw, 'store seq') : 0;
}

/** One slot's key count and payload bytes. */
export interface SlotCount {
  keys: number;
  bytes: number;
}

export function encodeSlotCount(count: SlotCount): Buffer {
  const out = Buffer.allocUnsafe(16);
  out.writeBigUInt64LE(BigInt(count.keys), 0);
  out.writeBigUInt64LE(BigInt(count.bytes), 8);
  return out;
}

export function decodeSlotCount(buf: Buffer): SlotCount {
  if (buf.length !== 16) throw dataLoss(`slot counter: expected 16 bytes, found ${buf.length}`);
  return { keys: Number(buf.readBigUInt64LE(0)), bytes: Number(buf.readBigUInt64LE(8)) };
}

/** The write op that stores `count` for `slot` (a delete once the slot is empty). */
export function slotCountOp(slot: number, count: SlotCount): WriteOp {
  return count.keys === 0 && count.bytes === 0
    ? { type: 'del', key: counterKey(slot) }
    : { type: 'put', key: counterKey(slot), value: encodeSlotCount(count) };
}

/** Reads the counters stored in `bounds` (as of `snapshot`) and passes each to `visit`. */
async function scanCounters(
  db: Db,
  bounds: { gte: Buffer; lt: Buffer },
  snapshot: Snapshot | undefined,
  visit: (slot: number, count: SlotCount) => void,
): Promise<void> {
  const it = db.iterator({ ...bounds, snapshot });
  try {
    for (;;) {
      const batch = await it.next(SLOT_COUNT, 1 << 20);
      for (let i = 0; i < batch.keys.length; i++) {
        visit(
          slotOfCounterKey(batch.keys[i] as Buffer),
          decodeSlotCount(batch.values[i] as Buffer),
        );
      }
      if (batch.done) return;
    }
  } finally {
    await it.close();
  }
}

/** Keys in `ranges` (normalized) as of `snapshot`, from the stored counters (no data is read). */
export async function countKeysAt(
  db: Db,
  ranges: readonly SlotRange[],
  snapshot: Snapshot,
): Promise<number> {
  const first = ranges[0];
  const last = ranges[ranges.length - 1];
  if (!first || !last) return 0;
  // One scan from the first range to the last (at most 16384 small entries).
  const mask = slotMask(ranges);
  const bounds = counterRangeBounds({ start: first.start, end: last.end });
  let keys = 0;
  await scanCounters(db, bounds, snapshot, (slot, count) => {
    if (mask[slot] === 1) keys += count.keys;
  });
  return keys;
}

/**
 * The in-memory copy of the per-slot counters, so stats never touch the db. Changed
 * only together with a successful write of the same counters to the db.
 */
export class SlotCounters {
  private readonly keys = new Float64Array(SLOT_COUNT);
  private readonly bytes = new Float64Array(SLOT_COUNT);
  private totalKeys = 0;
  private totalBytes = 0;

  static async load(db: Db): Promise<SlotCounters> {
    const counters = new SlotCounters();
    await scanCounters(db, ALL_COUNTERS, undefined, (slot, count) => counters.set(slot, count));
    return counters;
  }

  get keyCount(): number {
    return this.totalKeys;
  }

  get dataBytes(): number {
    return this.totalBytes;
  }

  get(slot: number): SlotCount {
    return { keys: this.keys[slot] as number, bytes: this.bytes[slot] as number };
  }

  set(slot: number, count: SlotCount): void {
    this.totalKeys += count.keys - (this.keys[slot] as number);
    this.totalBytes += count.bytes - (this.bytes[slot] as number);
    this.keys[slot] = count.keys;
    this.bytes[slot] = count.bytes;
  }

  /** Takes over every counter of `other` (after the whole database was replaced). */
  adopt(other: SlotCounters): void {
    this.keys.set(other.keys);
    this.bytes.set(other.bytes);
    this.totalKeys = other.totalKeys;
    this.totalBytes = other.totalBytes;
  }

  /** Sets every slot of `ranges` to its count in `counts` (absent = empty). */
  replaceRanges(ranges: readonly SlotRange[], counts: ReadonlyMap<number, SlotCount>): void {
    const empty = { keys: 0, bytes: 0 };
    for (const range of ranges) {
      for (let slot = range.start; slot <= range.end; slot++)
        this.set(slot, counts.get(slot) ?? empty);
    }
  }
}

/** Reads the format marker; writes it into an empty db. Refuses anything else. */
export async function checkFormat(db: Db, where: string): Promise<'new' | 'existing'> {
  const raw = await db.get(FORMAT_KEY);
  if (raw === undefined) {
    const it = db.iterator();
    let empty: boolean;
    try {
      empty = (await it.next(1, 1)).keys.length === 0;
    } finally {
      await it.close();
    }
    if (!empty) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `${where} holds a RocksDB database that is not a shardsnap store (no format marker)`,
      );
    }
    await db.write([{ type: 'put', key: FORMAT_KEY, value: Buffer.from(FORMAT_VERSION) }], {
      sync: true,
    });
    return 'new';
  }
  if (raw.toString() !== FORMAT_VERSION) {
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `${where} has store format "${raw.toString()}"; this build reads "${FORMAT_VERSION}"`,
    );
  }
  return 'existing';
}
