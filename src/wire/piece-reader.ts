import { dataLoss } from '../core';

/**
 * Reads protobuf wire format from a message held as several buffers, without joining
 * them: length-delimited fields come back as lists of views.
 */
export class PieceReader {
  private piece = 0;
  private at = 0;
  private consumed = 0;

  constructor(
    private readonly parts: readonly Buffer[],
    readonly length: number,
  ) {}

  get done(): boolean {
    return this.consumed >= this.length;
  }

  private byte(): number {
    for (;;) {
      const part = this.parts[this.piece];
      if (!part) throw dataLoss('protobuf message ends inside a field');
      if (this.at < part.length) {
        this.consumed++;
        return part[this.at++] as number;
      }
      this.piece++;
      this.at = 0;
    }
  }

  /** A varint up to 2^53 (lengths, offsets, enums, booleans, uint32). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      const b = this.byte();
      value += (b & 0x7f) * scale;
      if (b < 0x80) return value;
      scale *= 128;
    }
    throw dataLoss('protobuf varint longer than 10 bytes');
  }

  /** The next `length` bytes as views into the parts. */
  bytes(length: number): Buffer[] {
    if (length > this.length - this.consumed)
      throw dataLoss('protobuf field runs past its message');
    const out: Buffer[] = [];
    let left = length;
    while (left > 0) {
      const part = this.parts[this.piece] as Buffer;
      const take = Math.min(part.length - this.at, left);
      if (take > 0) out.push(part.subarray(this.at, this.at + take));
      this.at += take;
      left -= take;
      this.consumed += take;
      if (this.at >= part.length) {
        this.piece++;
        this.at = 0;
      }
    }
    return out;
  }

  /** Skips a field of `wireType` whose tag was just read. */
  skip(wireType: number): void {
    if (wireType === 0) this.varint();
    else if (wireType === 1) this.bytes(8);
    else if (wireType === 2) this.bytes(this.varint());
    else if (wireType === 5) this.bytes(4);
    else throw dataLoss(`protobuf wire type ${wireType} is not supported`);
  }
}

/** The bytes of a list of views, joined (for the small fields). */
export function joinPieces(pieces: readonly Buffer[]): Buffer {
  return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
}
