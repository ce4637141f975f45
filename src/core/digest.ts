import { createHash } from 'node:crypto';
import { encodeRecord } from './record-codec';
import type { StoreRecord } from './values';

/**
 * Order-independent content digest: each record's canonical encoding is hashed with
 * SHA-256 and the hashes are added lane-wise (8 × u32, mod 2^32). Addition commutes, so
 * any iteration order gives the same sum; the final digest hashes the sum with the count.
 */
export class ContentDigest {
  private readonly lanes = new Uint32Array(8);
  private count = 0;

  add(record: StoreRecord): void {
    const hash = createHash('sha256')
      .update(encodeRecord(record.key, record.entry, true))
      .digest();
    for (let i = 0; i < 8; i++) {
      this.lanes[i] = ((this.lanes[i] as number) + hash.readUInt32LE(i * 4)) >>> 0;
    }
    this.count++;
  }

  get keyCount(): number {
    return this.count;
  }

  hex(): string {
    const countBytes = Buffer.alloc(8);
    countBytes.writeBigUInt64LE(BigInt(this.count));
    return createHash('sha256')
      .update(Buffer.from(this.lanes.buffer, this.lanes.byteOffset, this.lanes.byteLength))
      .update(countBytes)
      .digest('hex');
  }
}
