import { type FileHandle, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { internal } from '../core';
import { SEGMENT_HEADER_BYTES, encodeSegmentHeader, segmentFileName } from './format';
import type { SegmentInfo } from './types';

/** Counters of the system calls the log makes (observability, and tests of batching). */
export interface IoCounters {
  writes: number;
  fsyncs: number;
}

/** Makes a directory's entries (a created or deleted segment) durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The segment being appended to: positioned writes at its end, never past a whole record. */
export class SegmentWriter {
  private constructor(
    private readonly handle: FileHandle,
    /** Grows as batches land; `bytes` counts only whole records, as readers may trust it. */
    readonly info: SegmentInfo,
    private readonly counters: IoCounters,
  ) {}

  /** A new segment for records from `firstSeq` on, its entry synced into `dir`. */
  static async create(
    dir: string,
    firstSeq: number,
    previousSeq: number | undefined,
    counters: IoCounters,
  ): Promise<SegmentWriter> {
    const path = join(dir, segmentFileName(firstSeq));
    // Exclusive: a segment is never overwritten, whatever the state of the directory.
    const handle = await open(path, 'wx');
    try {
      await writeFully(handle, encodeSegmentHeader(previousSeq), 0, counters);
      await syncDirectory(dir);
    } catch (error) {
      await handle.close().catch(() => undefined);
      await unlink(path).catch(() => undefined);
      throw error;
    }
    return new SegmentWriter(
      handle,
      { path, firstSeq, lastSeq: firstSeq, bytes: SEGMENT_HEADER_BYTES },
      counters,
    );
  }

  /** The last segment found at open (already cut to whole records). */
  static async reopen(info: SegmentInfo, counters: IoCounters): Promise<SegmentWriter> {
    const handle = await open(info.path, 'r+');
    return new SegmentWriter(handle, info, counters);
  }

  get hasRecords(): boolean {
    return this.info.bytes > SEGMENT_HEADER_BYTES;
  }

  /**
   * Writes whole records after the last ones. On failure the file is cut back to the last
   * whole record, so a half-written batch does not linger even where its CRC would catch it.
   * Readers see the records once `advance` is called.
   */
  async write(encoded: Buffer): Promise<void> {
    const start = this.info.bytes;
    try {
      await writeFully(this.handle, encoded, start, this.counters);
    } catch (error) {
      await this.cutBack();
      throw error;
    }
  }

  /** Drops whatever was written past the last record `advance` accepted (best effort). */
  async cutBack(): Promise<void> {
    await this.handle.truncate(this.info.bytes).catch(() => undefined);
  }

  advance(bytes: number, lastSeq: number): void {
    this.info.bytes += bytes;
    this.info.lastSeq = lastSeq;
  }

  async sync(): Promise<void> {
    await this.handle.datasync();
    this.counters.fsyncs++;
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

async function writeFully(
  handle: FileHandle,
  data: Buffer,
  position: number,
  counters: IoCounters,
): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    counters.writes++;
    if (bytesWritten <= 0) throw internal(`write-ahead log: a write made no progress`);
    done += bytesWritten;
  }
}
