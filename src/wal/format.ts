import { crc32c } from '@node-rs/crc32';
import type { WalRecord } from './types';

/**
 * A segment starts with the magic and the seq of the record written just before it (in
 * the previous segment), so a segment that vanished from the middle of the log shows as
 * a gap instead of silently dropping records.
 */
export const SEGMENT_MAGIC = Buffer.from('SSWALv1\n', 'latin1');
export const SEGMENT_HEADER_BYTES = 16;

/** length (u32) + CRC32C (u32), before the checksummed body. */
export const RECORD_PREFIX_BYTES = 8;
/** seq (u64) + kind (u8) at the start of the body. */
export const RECORD_FIXED_BODY_BYTES = 9;
export const RECORD_OVERHEAD_BYTES = RECORD_PREFIX_BYTES + RECORD_FIXED_BODY_BYTES;
/** The longest body (seq + kind + payload) a record may have. */
export const MAX_RECORD_BODY_BYTES = 1024 ** 3;

const TWO_32 = 0x1_0000_0000;
/** The high word of the largest safe integer: anything above is not a seq we wrote. */
const MAX_SAFE_HIGH_WORD = 0x1f_ffff;

const SEGMENT_NAME = /^wal-(\d{20})\.log$/;

export function segmentFileName(firstSeq: number): string {
  return `wal-${String(firstSeq).padStart(20, '0')}.log`;
}

/** The first seq a segment's file name announces, or undefined for any other file. */
export function parseSegmentFileName(name: string): number | undefined {
  const match = SEGMENT_NAME.exec(name);
  if (!match?.[1]) return undefined;
  const seq = Number(match[1]);
  return Number.isSafeInteger(seq) ? seq : undefined;
}

export function encodeSegmentHeader(previousSeq: number | undefined): Buffer {
  const header = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(header, 0);
  if (previousSeq === undefined) {
    header.writeUInt32LE(0xffff_ffff, 8);
    header.writeUInt32LE(0xffff_ffff, 12);
  } else {
    writeSeq(header, 8, previousSeq);
  }
  return header;
}

/** The previous segment's last seq (undefined: none), or a reason the header is bad. */
export function decodeSegmentHeader(
  header: Buffer,
): { previousSeq: number | undefined } | { problem: string } {
  if (header.length < SEGMENT_HEADER_BYTES) return { problem: 'segment header cut short' };
  if (!header.subarray(0, SEGMENT_MAGIC.length).equals(SEGMENT_MAGIC)) {
    return { problem: 'bad magic (not a write-ahead log segment of this version)' };
  }
  const low = header.readUInt32LE(8);
  const high = header.readUInt32LE(12);
  if (low === 0xffff_ffff && high === 0xffff_ffff) return { previousSeq: undefined };
  if (high > MAX_SAFE_HIGH_WORD) return { problem: 'previous seq out of range' };
  return { previousSeq: high * TWO_32 + low };
}

/** True when `bytes` could be the start of a header whose write was cut short. */
export function isTornHeader(bytes: Buffer): boolean {
  if (bytes.length >= SEGMENT_HEADER_BYTES) return false;
  const magicPart = bytes.subarray(0, SEGMENT_MAGIC.length);
  return magicPart.equals(SEGMENT_MAGIC.subarray(0, magicPart.length));
}

export function encodedRecordBytes(payloadBytes: number): number {
  return RECORD_OVERHEAD_BYTES + payloadBytes;
}

/**
 * Encodes records back to back into `into` (a new buffer when absent), which must hold
 * `totalBytes` (the sum of their encoded sizes): each payload is copied once, straight
 * into place, and the CRC runs over the body where it lies. Returns the encoded bytes.
 */
export function encodeRecords(
  records: readonly WalRecord[],
  totalBytes: number,
  into?: Buffer,
): Buffer {
  const out = into ? into.subarray(0, totalBytes) : Buffer.allocUnsafe(totalBytes);
  if (out.length !== totalBytes) throw new RangeError('encodeRecords: buffer too small');
  let at = 0;
  for (const record of records) {
    const payload = record.payload;
    const bodyStart = at + RECORD_PREFIX_BYTES;
    const end = bodyStart + RECORD_FIXED_BODY_BYTES + payload.length;
    out.writeUInt32LE(RECORD_FIXED_BODY_BYTES + payload.length, at);
    writeSeq(out, bodyStart, record.seq);
    out[bodyStart + 8] = record.kind;
    out.set(payload, bodyStart + RECORD_FIXED_BODY_BYTES);
    out.writeUInt32LE(crc32c(out.subarray(bodyStart, end)), at + 4);
    at = end;
  }
  return out;
}

export function writeSeq(out: Buffer, at: number, seq: number): void {
  out.writeUInt32LE(seq % TWO_32, at);
  out.writeUInt32LE(Math.floor(seq / TWO_32), at + 4);
}

/** A u64 seq as a number, or undefined when it is not a safe integer. */
export function readSeq(bytes: Buffer, at: number): number | undefined {
  const high = bytes.readUInt32LE(at + 4);
  if (high > MAX_SAFE_HIGH_WORD) return undefined;
  return high * TWO_32 + bytes.readUInt32LE(at);
}

export function bodyChecksum(body: Buffer): number {
  return crc32c(body);
}
