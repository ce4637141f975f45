/**
 * Copies small byte strings into shared slabs. Decoding a million values one Buffer
 * allocation at a time makes V8 account for a million external allocations and run
 * full collections; copying them into slabs of `slabBytes` makes that a few hundred.
 * A slab lives while any value in it does, so slabs are kept moderate in size.
 */
export class SlabAllocator {
  private slab: Buffer;
  private used = 0;

  constructor(private readonly slabBytes = 256 << 10) {
    this.slab = Buffer.allocUnsafeSlow(slabBytes);
  }

  copy(source: Buffer, start: number, end: number): Buffer {
    const length = end - start;
    if (length > this.slabBytes >>> 3) return Buffer.from(source.subarray(start, end));
    const out = this.take(length);
    source.copy(out, 0, start, end);
    return out;
  }

  /** The bytes of a latin1 string (one byte per char). */
  latin1(text: string): Buffer {
    if (text.length > this.slabBytes >>> 3) return Buffer.from(text, 'latin1');
    const out = this.take(text.length);
    out.write(text, 0, 'latin1');
    return out;
  }

  private take(length: number): Buffer {
    if (this.used + length > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    const out = this.slab.subarray(this.used, this.used + length);
    // Keep later copies 8-byte aligned, as Buffer's own pool does.
    this.used = (this.used + length + 7) & ~7;
    return out;
  }
}
