import { open, type FileHandle } from 'node:fs/promises';
import { crc32c } from '@node-rs/crc32';
import { type Sha256Stream, sha256Stream } from './sha256-stream';

/**
 * Appends bytes to an artifact file through two buffers of `bufferBytes`, hashing as it
 * goes: one fills while the other is written, so a fast producer waits for a slow disk
 * but otherwise overlaps with it. `onFlush` reports the size readers may read after
 * every completed write.
 */
export class ArtifactWriter {
  private readonly hash: Sha256Stream = sha256Stream();
  private buffer_: Buffer;
  private spare: Buffer | undefined;
  private used = 0;
  /** Bytes in the file (readers may read up to here). */
  private flushed = 0;
  /** Bytes handed to the disk but not yet written. */
  private pendingBytes = 0;
  private inflight: Promise<void> | undefined;
  /**
   * CRC32C of each `crcChunkSize` piece of the artifact, in order (the last, shorter one
   * once finished): a fetch in chunks of that size sends these instead of computing them.
   */
  readonly chunkCrcs: number[] = [];
  private crcState = 0;
  private crcFill = 0;

  private constructor(
    private readonly file: FileHandle,
    bufferBytes: number,
    private readonly onFlush: (size: number) => void,
    private readonly crcChunkSize: number,
  ) {
    this.buffer_ = Buffer.allocUnsafe(bufferBytes);
  }

  static async create(
    path: string,
    onFlush: (size: number) => void,
    options: { bufferBytes?: number; crcChunkSize?: number } = {},
  ): Promise<ArtifactWriter> {
    return new ArtifactWriter(
      await open(path, 'wx'),
      options.bufferBytes ?? 1 << 20,
      onFlush,
      options.crcChunkSize ?? 1 << 20,
    );
  }

  get size(): number {
    return this.flushed + this.pendingBytes + this.used;
  }

  /** The buffer that `reserve` positions point into; valid until the next `reserve`. */
  get buffer(): Buffer {
    return this.buffer_;
  }

  /**
   * Reserves `length` bytes, flushing first if they do not fit, and returns their
   * position in `buffer`. Returning a position instead of a view saves an object per
   * record on the hot path.
   */
  async reserve(length: number): Promise<number> {
    if (this.used + length > this.buffer_.length) {
      await this.flush();
      if (length > this.buffer_.length) this.buffer_ = Buffer.allocUnsafe(length);
    }
    const position = this.used;
    this.used += length;
    return position;
  }

  /** `reserve` without waiting: -1 when the buffer must be flushed first. */
  tryReserve(length: number): number {
    if (this.used + length > this.buffer_.length) return -1;
    const position = this.used;
    this.used += length;
    return position;
  }

  async append(bytes: Buffer): Promise<void> {
    const position = await this.reserve(bytes.length);
    bytes.copy(this.buffer_, position);
  }

  /**
   * Hands the filled buffer to the disk and goes on filling the spare one: at most one
   * write is in flight, so the producer overlaps with the disk but never runs ahead of
   * it by more than one buffer.
   */
  async flush(): Promise<void> {
    await this.inflight;
    if (this.used === 0) return;
    const data = this.buffer_.subarray(0, this.used);
    this.hash.update(data);
    this.trackChunkCrcs(data);
    const position = this.flushed + this.pendingBytes;
    this.pendingBytes += data.length;
    this.inflight = this.writeAll(data, position);
    // Handled here so a failed write never goes unobserved; the next flush rethrows it.
    this.inflight.catch(() => undefined);
    const spare = this.spare;
    this.spare = this.buffer_;
    this.buffer_ = spare ?? Buffer.allocUnsafe(this.spare.length);
    this.used = 0;
  }

  private trackChunkCrcs(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      const take = Math.min(this.crcChunkSize - this.crcFill, data.length - at);
      this.crcState = crc32c(data.subarray(at, at + take), this.crcState);
      this.crcFill += take;
      at += take;
      if (this.crcFill === this.crcChunkSize) {
        this.chunkCrcs.push(this.crcState);
        this.crcState = 0;
        this.crcFill = 0;
      }
    }
  }

  private async writeAll(data: Buffer, position: number): Promise<void> {
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.file.write(
        data,
        written,
        data.length - written,
        position + written,
      );
      written += bytesWritten;
    }
    this.flushed += data.length;
    this.pendingBytes -= data.length;
    this.onFlush(this.flushed);
  }

  /** Waits until everything appended so far is in the file. */
  private async drain(): Promise<void> {
    await this.flush();
    await this.inflight;
  }

  /** SHA-256 of everything appended so far (flushes first). */
  async digestSoFar(): Promise<Buffer> {
    await this.flush();
    return this.hash.peek();
  }

  /** Flushes, fsyncs and closes; returns the size and the SHA-256 of the whole file. */
  async finish(): Promise<{ size: number; sha256: string }> {
    await this.drain();
    if (this.crcFill > 0) this.chunkCrcs.push(this.crcState);
    this.crcFill = 0;
    await this.file.sync();
    await this.file.close();
    return { size: this.flushed, sha256: await this.hash.digest() };
  }

  async abandon(): Promise<void> {
    this.hash.discard();
    await this.inflight?.catch(() => undefined);
    await this.file.close().catch(() => undefined);
  }
}
