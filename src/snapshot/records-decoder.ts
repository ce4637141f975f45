import { createHash, type Hash } from 'node:crypto';
import { type StoreRecord, dataLoss, decodeRecord } from '../core';
import { type ArtifactHeader, END_MARKER, TRAILER_BYTES, tryDecodeHeader } from './format';

/**
 * Incremental parser of a records artifact: feed it the artifact's bytes in order, in
 * pieces of any size, and it returns the complete records of each piece. `finish` checks
 * the trailer: key count and the inner SHA-256.
 */
export class RecordsDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private headerValue: ArtifactHeader | undefined;
  private readonly hash: Hash = createHash('sha256');
  private records = 0;
  private ended = false;
  private consumed = 0;

  get header(): ArtifactHeader | undefined {
    return this.headerValue;
  }

  get recordCount(): number {
    return this.records;
  }

  push(bytes: Buffer): StoreRecord[] {
    if (this.ended && bytes.length > 0) throw dataLoss('bytes after the artifact trailer');
    this.pending = this.pending.length === 0 ? bytes : Buffer.concat([this.pending, bytes]);
    const out: StoreRecord[] = [];
    let pos = 0;
    const buf = this.pending;
    if (!this.headerValue) {
      const parsed = tryDecodeHeader(buf);
      if (!parsed) return out;
      this.headerValue = parsed.header;
      pos = parsed.length;
    }
    while (!this.ended && buf.length - pos >= 4) {
      const length = buf.readUInt32LE(pos);
      if (length === END_MARKER) {
        if (buf.length - pos < TRAILER_BYTES) break;
        this.hash.update(buf.subarray(0, pos + 12));
        this.checkTrailer(buf, pos);
        pos += TRAILER_BYTES;
        this.ended = true;
        break;
      }
      if (length === 0) throw dataLoss(`empty record frame at byte ${this.consumed + pos}`);
      if (buf.length - pos - 4 < length) break;
      try {
        out.push(decodeRecord(buf, pos + 4, pos + 4 + length));
      } catch (error) {
        throw dataLoss(`bad record at byte ${this.consumed + pos}: ${(error as Error).message}`, error);
      }
      this.records++;
      pos += 4 + length;
    }
    if (!this.ended) this.hash.update(buf.subarray(0, pos));
    else if (pos < buf.length) throw dataLoss('bytes after the artifact trailer');
    this.consumed += pos;
    this.pending = buf.subarray(pos);
    return out;
  }

  private checkTrailer(buf: Buffer, pos: number): void {
    const keyCount = Number(buf.readBigUInt64LE(pos + 4));
    if (keyCount !== this.records) {
      throw dataLoss(`artifact trailer counts ${keyCount} keys but ${this.records} were read`);
    }
    const inner = buf.subarray(pos + 12, pos + TRAILER_BYTES);
    const actual = this.hash.digest();
    if (!inner.equals(actual)) throw dataLoss('artifact inner SHA-256 does not match its contents');
  }

  /** Throws unless the whole artifact, trailer included, has been read. */
  finish(): { header: ArtifactHeader; keyCount: number } {
    if (!this.headerValue) throw dataLoss('artifact ended before its header');
    if (!this.ended) throw dataLoss(`artifact ended without its trailer after ${this.records} records`);
    return { header: this.headerValue, keyCount: this.records };
  }
}
