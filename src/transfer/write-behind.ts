import type { FileHandle } from 'node:fs/promises';

/**
 * Writes pieces to one region of a file strictly in the order given, one at a time, while
 * the caller goes on receiving and verifying the next ones: the file always holds a gapless
 * prefix of what was given, and `write` waits only once `maxQueuedBytes` are queued.
 * A failed write fails the next `write` or `flush`.
 */
export class WriteBehind {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;
  private failure: unknown;
  private failed = false;
  private readonly drained: Array<() => void> = [];
  /** Offset up to which everything given is on the file (in the page cache). */
  written: number;

  constructor(
    private readonly file: FileHandle,
    start: number,
    private readonly maxQueuedBytes = 8 << 20,
    private readonly onWritten?: (end: number) => void,
  ) {
    this.written = start;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.throwIfFailed();
    this.queued += data.length;
    this.tail = this.tail.then(async () => {
      if (this.failed) return;
      try {
        let done = 0;
        while (done < data.length) {
          const { bytesWritten } = await this.file.write(
            data,
            done,
            data.length - done,
            offset + done,
          );
          done += bytesWritten;
        }
        this.written = offset + data.length;
        this.onWritten?.(this.written);
      } catch (error) {
        this.failed = true;
        this.failure = error;
      } finally {
        this.queued -= data.length;
        while (this.queued <= this.maxQueuedBytes && this.drained.length > 0)
          this.drained.shift()?.();
      }
    });
    if (this.queued > this.maxQueuedBytes) {
      await new Promise<void>((resolve) => this.drained.push(resolve));
    }
    this.throwIfFailed();
  }

  /** Waits for every queued piece; throws the first write failure. */
  async flush(): Promise<void> {
    await this.tail;
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.failed) throw this.failure;
  }
}
