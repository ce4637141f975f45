import { createHash } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';

/**
 * The CRC32C of every `chunkSize` piece of a byte stream (the chunks of the artifact
 * format, whatever the sizes of the pieces fed in) and the SHA-256 of all of it.
 */
export class ChunkDigests {
  readonly crcs: number[] = [];
  private readonly hash = createHash('sha256');
  private crc = 0;
  private inChunk = 0;
  private total = 0;

  constructor(readonly chunkSize: number) {}

  get bytes(): number {
    return this.total;
  }

  update(piece: Buffer): void {
    this.hash.update(piece);
    this.total += piece.length;
    let at = 0;
    while (at < piece.length) {
      const take = Math.min(this.chunkSize - this.inChunk, piece.length - at);
      this.crc = crc32c(piece.subarray(at, at + take), this.crc);
      this.inChunk += take;
      at += take;
      if (this.inChunk === this.chunkSize) this.closeChunk();
    }
  }

  /** The CRC32Cs of all chunks (the last one may be short) and the hex SHA-256. */
  finish(): { crcs: number[]; sha256: string; bytes: number } {
    if (this.inChunk > 0) this.closeChunk();
    return { crcs: this.crcs, sha256: this.hash.digest('hex'), bytes: this.total };
  }

  private closeChunk(): void {
    this.crcs.push(this.crc >>> 0);
    this.crc = 0;
    this.inChunk = 0;
  }
}
