import { type StoreRecord, encodedRecordLength, writeRecord } from '../core';
import type { ArtifactWriter } from './artifact-writer';
import { type ArtifactHeader, END_MARKER, encodeHeader } from './format';

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

  async writeTrailer(): Promise<void> {
    const end = Buffer.allocUnsafe(12);
    end.writeUInt32LE(END_MARKER, 0);
    end.writeBigUInt64LE(BigInt(this.keys), 4);
    await this.out.append(end);
    await this.out.append(await this.out.digestSoFar());
  }
}
