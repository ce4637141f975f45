/**
 * Reusable buffers of one size. Every fresh 1 MiB buffer is external memory to V8, and
 * enough of it makes V8 mark the whole heap, which for a node holding a large store is
 * the dominant cost of streaming. Reusing a few buffers avoids that.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];

  constructor(
    readonly size: number,
    private readonly keep = 8,
  ) {}

  acquire(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.size);
  }

  release(buffer: Buffer): void {
    if (buffer.length === this.size && this.free.length < this.keep) this.free.push(buffer);
  }
}
