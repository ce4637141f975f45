import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Appends bytes to an artifact file through a buffer of `bufferBytes`, hashing as it
 * goes. Each flush awaits the disk write, so a fast producer waits for a slow disk.
 * `onFlush` reports the durable-to-readers size after every flush.
 */
export class ArtifactWriter {
  private readonly hash: Hash = createHash('sha256');
  private buffer_: Buffer;
  private used = 0;
  private flushed = 0;

  private constructor(
    private readonly file: FileHandle,
    bufferBytes: number,
    private readonly onFlush: (size: number) => void,
  ) {
    this.buffer_ = Buffer.allocUnsafe(bufferBytes);
  }

  static async create(
    path: string,
    onFlush: (size: number) => void,
    bufferBytes = 1 << 20,
  ): Promise<ArtifactWriter> {
    return new ArtifactWriter(await open(path, 'wx'), bufferBytes, onFlush);
  }

  get size(): number {
    return this.flushed + this.used;
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

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const data = this.buffer_.subarray(0, this.used);
    this.hash.update(data);
    let written = 0;
    while (written < data.length) {
      const { bytesWritten } = await this.file.write(data, written, data.length - written, this.flushed + written);
      written += bytesWritten;
    }
    this.flushed += data.length;
    this.used = 0;
    this.onFlush(this.flushed);
  }

  /** SHA-256 of everything appended so far (flushes first). */
  async digestSoFar(): Promise<Buffer> {
    await this.flush();
    return this.hash.copy().digest();
  }

  /** Flushes, fsyncs and closes; returns the size and the SHA-256 of the whole file. */
  async finish(): Promise<{ size: number; sha256: string }> {
    await this.flush();
    await this.file.sync();
    await this.file.close();
    return { size: this.flushed, sha256: this.hash.digest('hex') };
  }

  async abandon(): Promise<void> {
    await this.file.close().catch(() => undefined);
  }
}
