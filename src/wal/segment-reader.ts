import type { FileHandle } from 'node:fs/promises';
import {
  MAX_RECORD_BODY_BYTES,
  RECORD_FIXED_BODY_BYTES,
  RECORD_OVERHEAD_BYTES,
  RECORD_PREFIX_BYTES,
  bodyChecksum,
  readSeq,
} from './format';
import type { WalRecord } from './types';

const CHUNK_BYTES = 1024 * 1024;

export interface StoredRecord extends WalRecord {
  /** Where the record starts in its segment, and where the next one starts. */
  offset: number;
  end: number;
}

/** Why reading stopped before `end`: the bytes at `offset` are not a whole, valid record. */
export interface ReadProblem {
  offset: number;
  /** `torn`: the file ends inside the record; `corrupt`: its bytes are wrong. */
  kind: 'torn' | 'corrupt';
  reason: string;
}

/**
 * Reads records from `start` up to `end` of a segment in large chunks, checking each
 * record's length and CRC32C. Payloads are views into a chunk that is never reused.
 */
export class SegmentReader {
  /** Set when `next` stopped at a bad record (it then returns undefined). */
  problem: ReadProblem | undefined;
  private buffer = Buffer.alloc(0);
  /** File offset of buffer[0]. */
  private bufferStart: number;
  private position: number;

  constructor(
    private readonly handle: FileHandle,
    start: number,
    private readonly end: number,
  ) {
    this.bufferStart = start;
    this.position = start;
  }

  async next(): Promise<StoredRecord | undefined> {
    if (this.problem || this.position >= this.end) return undefined;
    const offset = this.position;
    const left = this.end - offset;
    if (left < RECORD_OVERHEAD_BYTES) {
      return this.stop(
        'torn',
        `record header cut short (${left} of ${RECORD_OVERHEAD_BYTES} bytes)`,
      );
    }
    if (!(await this.ensure(RECORD_OVERHEAD_BYTES))) {
      return this.stop('torn', 'the file ended early');
    }
    const at = offset - this.bufferStart;
    const bodyBytes = this.buffer.readUInt32LE(at);
    if (bodyBytes < RECORD_FIXED_BODY_BYTES || bodyBytes > MAX_RECORD_BODY_BYTES) {
      return this.stop('corrupt', `record length ${bodyBytes} out of range`);
    }
    const recordBytes = RECORD_PREFIX_BYTES + bodyBytes;
    if (recordBytes > left) {
      return this.stop('torn', `record cut short (${left} of ${recordBytes} bytes)`);
    }
    if (!(await this.ensure(recordBytes))) return this.stop('torn', 'the file ended early');
    const start = offset - this.bufferStart;
    const body = this.buffer.subarray(start + RECORD_PREFIX_BYTES, start + recordBytes);
    if (bodyChecksum(body) !== this.buffer.readUInt32LE(start + 4)) {
      return this.stop('corrupt', 'CRC32C mismatch');
    }
    const seq = readSeq(body, 0);
    if (seq === undefined) return this.stop('corrupt', 'seq out of range');
    this.position = offset + recordBytes;
    return {
      seq,
      kind: body[8] ?? 0,
      payload: body.subarray(RECORD_FIXED_BODY_BYTES),
      offset,
      end: this.position,
    };
  }

  private stop(kind: ReadProblem['kind'], reason: string): undefined {
    this.problem = { offset: this.position, kind, reason };
    return undefined;
  }

  /** Makes `bytes` bytes from the current position available; false if the file is short. */
  private async ensure(bytes: number): Promise<boolean> {
    const have = this.bufferStart + this.buffer.length - this.position;
    if (have >= bytes) return true;
    const size = Math.min(Math.max(CHUNK_BYTES, bytes), this.end - this.position);
    const next = Buffer.allocUnsafe(size);
    this.buffer.copy(next, 0, this.position - this.bufferStart);
    let filled = have;
    while (filled < size) {
      const { bytesRead } = await this.handle.read(
        next,
        filled,
        size - filled,
        this.position + filled,
      );
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    this.buffer = next.subarray(0, filled);
    this.bufferStart = this.position;
    return filled >= bytes;
  }
}
