import { type StoreRecord, encodedRecordLength, writeRecord } from '../core';
import type { ArtifactWriter } from './artifact-writer';
import { type ArtifactHeader, END_MARKER, TOMBSTONE_TYPE, encodeHeader } from './format';

/** Writes a records artifact: header, one frame per record, trailer. */
export class RecordsWriter {
  private keys = 0;

  constructor(private readonly out: ArtifactWriter) {}

  get keyCount(): number {
    return this.keys;
  }

  async writeHeader(header: ArtifactHeader): Promise<void> {
    await this.out.append(encodeHeader(header));
  }

  async writeRecords(records: readonly StoreRecord[]): Promise<void> {
    for (const { key, entry } of records) {
      const length = encodedRecordLength(key, entry);
      let position = this.out.tryReserve(4 + length);
      if (position < 0) position = await this.out.reserve(4 + length);
      const buffer = this.out.buffer;
      buffer.writeUInt32LE(length, position);
      writeRecord(buffer, position + 4, key, entry);
      this.keys++;
    }
  }

  /** Tombstone frames (incremental artifacts only): the keys are deleted by the install. */
  async writeTombstones(keys: readonly Buffer[]): Promise<void> {
    for (const key of keys) {
      const length = 1 + 8 + 4 + key.length;
      let position = this.out.tryReserve(4 + length);
      if (position < 0) position = await this.out.reserve(4 + length);
      const buffer = this.out.buffer;
      buffer.writeUInt32LE(length, position);
      buffer.writeUInt8(TOMBSTONE_TYPE, position + 4);
      buffer.fill(0, position + 5, position + 13);
      buffer.writeUInt32LE(key.length, position + 13);
      key.copy(buffer, position + 17);
      this.keys++;
    }
  }

  async writeTrailer(): Promise<void> {
    const end = Buffer.allocUnsafe(12);
    end.writeUInt32LE(END_MARKER, 0);
    end.writeBigUInt64LE(BigInt(this.keys), 4);
    await this.out.append(end);
    await this.out.append(await this.out.digestSoFar());
  }
}
