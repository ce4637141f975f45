import { createHash, type Hash } from 'node:crypto';
import { type StoreRecord, SlabAllocator, dataLoss, decodeRecord } from '../core';
import {
  type ArtifactHeader,
  DELTA_FORMAT_VERSION,
  END_MARKER,
  TOMBSTONE_TYPE,
  TRAILER_BYTES,
  tryDecodeHeader,
} from './format';

const EMPTY = Buffer.alloc(0);

/**
 * The largest record frame accepted. A record is one key with its whole value, so a
 * large collection is one frame; beyond this a claimed length is taken for what it most
 * likely is (corruption or a hostile artifact) before any of its bytes are buffered.
 */
export const MAX_RECORD_FRAME_BYTES = 1 << 30;

function checkFrameLength(length: number, at: number): void {
  if (length === 0) throw dataLoss(`empty record frame at byte ${at}`);
  if (length > MAX_RECORD_FRAME_BYTES) {
    throw dataLoss(
      `record frame at byte ${at} claims ${length} bytes, over the limit of ${MAX_RECORD_FRAME_BYTES}`,
    );
  }
}

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
  private carry: Buffer = EMPTY;
  /** A frame whose length is known and whose bytes span pieces. */
  private pending: { parts: Buffer[]; length: number; total: number } | undefined;
  private headerValue: ArtifactHeader | undefined;
  private readonly hash: Hash | undefined;
  private readonly slab: SlabAllocator | 'views';
  private records = 0;
  /** Keys of the tombstone frames read since the last `takeTombstones`. */
  private deleted: Buffer[] = [];
  private ended = false;
  private consumed = 0;

  constructor(options: RecordsDecoderOptions = {}) {
    this.hash = options.verifyInnerDigest ? createHash('sha256') : undefined;
    this.slab = options.views ? 'views' : new SlabAllocator();
  }

  get header(): ArtifactHeader | undefined {
    return this.headerValue;
  }

  /** Frames read: records and tombstones. */
  get recordCount(): number {
    return this.records;
  }

  /**
   * The keys of the tombstone frames read so far (incremental artifacts), copies, each
   * handed out once. A tombstone and a record never name the same key in one artifact.
   */
  takeTombstones(): Buffer[] {
    const keys = this.deleted;
    this.deleted = [];
    return keys;
  }

  push(bytes: Buffer): StoreRecord[] {
    if (this.ended) {
      if (bytes.length > 0) throw dataLoss('bytes after the artifact trailer');
      return [];
    }
    const out: StoreRecord[] = [];
    let piece = bytes;
    for (;;) {
      if (this.pending) {
        // A frame of known size split across pieces: its parts are kept (copied: the
        // caller may reuse its buffers) and joined once, so time stays linear.
        const pending = this.pending;
        const take = Math.min(pending.total - pending.length, piece.length);
        if (take > 0) pending.parts.push(Buffer.from(piece.subarray(0, take)));
        pending.length += take;
        piece = piece.subarray(take);
        if (pending.length < pending.total) return out;
        this.pending = undefined;
        const frame = Buffer.concat(pending.parts, pending.total);
        if (this.parse(frame, out) !== frame.length) {
          throw dataLoss(`frame at byte ${this.consumed} could not be completed`);
        }
        if (this.ended) {
          if (piece.length > 0) throw dataLoss('bytes after the artifact trailer');
          return out;
        }
      }
      if (this.carry.length > 0) {
        if (!this.headerValue) {
          // The header (at most MAX_HEADER_BYTES) split across pieces.
          piece = Buffer.concat([this.carry, piece]);
          this.carry = EMPTY;
        } else {
          // Fewer than 4 bytes of a frame: just enough of the piece to read its length.
          const need = 4 - this.carry.length;
          if (piece.length < need) {
            this.carry = Buffer.concat([this.carry, piece]);
            return out;
          }
          const head = Buffer.concat([this.carry, piece.subarray(0, need)]);
          this.carry = EMPTY;
          this.pending = { parts: [head], length: 4, total: this.frameTotal(head) };
          piece = piece.subarray(need);
          continue;
        }
      }
      const used = this.parse(piece, out);
      if (this.ended) {
        if (used < piece.length) throw dataLoss('bytes after the artifact trailer');
        return out;
      }
      const rest = piece.subarray(used);
      if (this.headerValue && rest.length >= 4) {
        this.pending = { parts: [], length: 0, total: this.frameTotal(rest) };
        piece = rest;
        continue;
      }
      this.carry = Buffer.from(rest);
      return out;
    }
  }

  /** The bytes of the item that starts `head` (its first 4 bytes), once checked. */
  private frameTotal(head: Buffer): number {
    const length = head.readUInt32LE(0);
    if (length === END_MARKER) return TRAILER_BYTES;
    checkFrameLength(length, this.consumed);
    return 4 + length;
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
      checkFrameLength(length, this.consumed + pos);
      if (buf.length - pos - 4 < length) break;
      try {
        if (buf[pos + 4] === TOMBSTONE_TYPE)
          this.deleted.push(this.tombstone(buf, pos + 4, length));
        else out.push(decodeRecord(buf, pos + 4, pos + 4 + length, this.slab));
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

  private tombstone(buf: Buffer, at: number, length: number): Buffer {
    if (this.headerValue?.format_version !== DELTA_FORMAT_VERSION) {
      throw dataLoss('a tombstone in an artifact that is not incremental');
    }
    if (length < 13 || buf.readUInt32LE(at + 9) !== length - 13) {
      throw dataLoss(`tombstone of ${length} bytes does not hold exactly its key`);
    }
    return Buffer.from(buf.subarray(at + 13, at + length));
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
