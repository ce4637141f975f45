/**
 * Buffers for log payloads that the log copies into its own write and then releases
 * (`WalRecord.release`). An install logs every record it stages, hundreds of MiB a
 * second; reused buffers spare an allocation and a first touch of fresh pages per part.
 */
export class PayloadPool {
  private readonly free: Buffer[] = [];

  constructor(
    /** Buffers up to this size are kept for reuse; larger payloads get one of their own. */
    private readonly keptBytes = 4 * 1024 * 1024,
    private readonly keep = 4,
    private readonly minBytes = 1024 * 1024,
  ) {}

  /** `length` bytes of a buffer, and the function that gives it back (call it once). */
  take(length: number): { payload: Buffer; release: () => void } {
    if (length > this.keptBytes) return { payload: Buffer.allocUnsafe(length), release: noop };
    const at = this.free.findIndex((buffer) => buffer.length >= length);
    const buffer =
      at >= 0
        ? (this.free.splice(at, 1)[0] as Buffer)
        : Buffer.allocUnsafeSlow(Math.min(this.keptBytes, Math.max(this.minBytes, length)));
    return { payload: buffer.subarray(0, length), release: () => this.give(buffer) };
  }

  private give(buffer: Buffer): void {
    if (this.free.length < this.keep) this.free.push(buffer);
  }
}

const noop = (): void => undefined;
