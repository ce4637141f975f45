import { createHash, type Hash } from 'node:crypto';
import { type StoreRecord, SlabAllocator, dataLoss, decodeRecord } from '../core';
import { type ArtifactHeader, END_MARKER, TRAILER_BYTES, tryDecodeHeader } from './format';

export interface RecordsDecoderOptions {
  /**
   * Check the trailer's inner SHA-256. Callers that check the SHA-256 of the whole
   * artifact anyway (installs) skip this second pass over the bytes.
   */
  verifyInnerDigest?: boolean;
  /**
   * Records' byte strings are views into the pieces given to `push` instead of copies:
   * only for a consumer that copies them before the next `push` or before the piece's
   * buffer is reused.
   */
  views?: boolean;
}

/**
 * Incremental parser of a records artifact: feed it the artifact's bytes in order, in
 * pieces of any size, and it returns the complete records of each piece. `finish` checks
 * that the trailer was read and its key count.
 */
export class RecordsDecoder {
  /** Bytes of a frame (or header) split across pieces, waiting for the rest. */
  private carry: Buffer = Buffer.alloc(0);
  private headerValue: ArtifactHeader | undefined;
  private readonly hash: Hash | undefined;
  private readonly slab: SlabAllocator | 'views';
  private records = 0;
  private ended = false;
  private consumed = 0;

  constructor(options: RecordsDecoderOptions = {}) {
    this.hash = options.verifyInnerDigest ? createHash('sha256') : undefined;
    this.slab = options.views ? 'views' : new SlabAllocator();
  }

  get header(): ArtifactHeader | undefined {
    return this.headerValue;
  }

  get recordCount(): number {
    return this.records;
  }

  push(bytes: Buffer): StoreRecord[] {
    if (this.ended) {
      if (bytes.length > 0) throw dataLoss('bytes after the artifact trailer');
      return [];
    }
    const out: StoreRecord[] = [];
    let piece = bytes;
    if (this.carry.length > 0) {
      // Complete the split frame with just enough of the new piece, then go on in place.
      const needed = this.bytesNeeded(this.carry, piece);
      const take = Math.min(needed ?? piece.length, piece.length);
      const joined = Buffer.concat([this.carry, piece.subarray(0, take)]);
      const used = this.parse(joined, out);
      if (used < joined.length) {
        if (take < piece.length && !this.ended) {
          throw dataLoss(`frame at byte ${this.consumed} could not be completed`);
        }
        this.carry = joined.subarray(used);
        return out;
      }
      this.carry = Buffer.alloc(0);
      piece = piece.subarray(take);
      if (this.ended) {
        if (piece.length > 0) throw dataLoss('bytes after the artifact trailer');
        return out;
      }
    }
    const used = this.parse(piece, out);
    if (this.ended && used < piece.length) throw dataLoss('bytes after the artifact trailer');
    this.carry = Buffer.from(piece.subarray(used));
    return out;
  }

  /** How many bytes of `piece` complete the item that starts in `carry`, if known yet. */
  private bytesNeeded(carry: Buffer, piece: Buffer): number | undefined {
    if (!this.headerValue) return undefined;
    const head =
      carry.length >= 4 ? carry : Buffer.concat([carry, piece.subarray(0, 4 - carry.length)]);
    if (head.length < 4) return undefined;
    const length = head.readUInt32LE(0);
    const total = length === END_MARKER ? TRAILER_BYTES : 4 + length;
    return Math.max(0, total - carry.length);
  }

  /** Parses whole items from the start of `buf` into `out`; returns the bytes used. */
  private parse(buf: Buffer, out: StoreRecord[]): number {
    let pos = 0;
    if (!this.headerValue) {
      const parsed = tryDecodeHeader(buf);
      if (!parsed) return 0;
      this.headerValue = parsed.header;
      pos = parsed.length;
    }
    while (buf.length - pos >= 4) {
      const length = buf.readUInt32LE(pos);
      if (length === END_MARKER) {
        if (buf.length - pos < TRAILER_BYTES) break;
        this.readTrailer(buf, pos);
        pos += TRAILER_BYTES;
        break;
      }
      if (length === 0) throw dataLoss(`empty record frame at byte ${this.consumed + pos}`);
      if (buf.length - pos - 4 < length) break;
      try {
        out.push(decodeRecord(buf, pos + 4, pos + 4 + length, this.slab));
      } catch (error) {
        throw dataLoss(
          `bad record at byte ${this.consumed + pos}: ${(error as Error).message}`,
          error,
        );
      }
      this.records++;
      pos += 4 + length;
    }
    if (!this.ended) this.hash?.update(buf.subarray(0, pos));
    this.consumed += pos;
    return pos;
  }

  private readTrailer(buf: Buffer, pos: number): void {
    const keyCount = Number(buf.readBigUInt64LE(pos + 4));
    if (keyCount !== this.records) {
      throw dataLoss(`artifact trailer counts ${keyCount} keys but ${this.records} were read`);
    }
    if (this.hash) {
      this.hash.update(buf.subarray(0, pos + 12));
      const inner = buf.subarray(pos + 12, pos + TRAILER_BYTES);
      if (!inner.equals(this.hash.digest())) {
        throw dataLoss('artifact inner SHA-256 does not match its contents');
      }
    }
    this.ended = true;
  }

  /** Throws unless the whole artifact, trailer included, has been read. */
  finish(): { header: ArtifactHeader; keyCount: number } {
    if (!this.headerValue) throw dataLoss('artifact ended before its header');
    if (!this.ended)
      throw dataLoss(`artifact ended without its trailer after ${this.records} records`);
    return { header: this.headerValue, keyCount: this.records };
  }
}
