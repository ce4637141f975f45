import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * Appends bytes to an artifact file through a buffer of `bufferBytes`, hashing as it
 * goes. Each flush awaits the disk write, so a fast producer waits for a slow disk.
 * `onFlush` reports the durable-to-readers size after every flush.
 */
export class ArtifactWriter {
  private readonly hash: Hash = createHash('sha256');
  private buffer: Buffer;
  private used = 0;
  private flushed = 0;

  private constructor(
    private readonly file: FileHandle,
    bufferBytes: number,
    private readonly onFlush: (size: number) => void,
  ) {
    this.buffer = Buffer.allocUnsafe(bufferBytes);
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

  /** Returns a buffer region of exactly `length` bytes to fill, flushing first if needed. */
  async reserve(length: number): Promise<Buffer> {
    if (this.used + length > this.buffer.length) await this.flush();
    if (length > this.buffer.length) this.buffer = Buffer.allocUnsafe(length);
    const region = this.buffer.subarray(this.used, this.used + length);
    this.used += length;
    return region;
  }

  async append(bytes: Buffer): Promise<void> {
    const region = await this.reserve(bytes.length);
    bytes.copy(region);
  }

  async flush(): Promise<void> {
    if (this.used === 0) return;
    const data = this.buffer.subarray(0, this.used);
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
