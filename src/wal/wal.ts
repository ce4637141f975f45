import { mkdir, open, unlink } from 'node:fs/promises';
import {
  type ShardsnapError,
  invalidArgument,
  isShardsnapError,
  storeClosed,
  throwIfAborted,
} from '../core';
import { walDataLoss, writeFailure } from './errors';
import {
  MAX_RECORD_BODY_BYTES,
  RECORD_FIXED_BODY_BYTES,
  SEGMENT_HEADER_BYTES,
  encodeRecords,
  encodedRecordBytes,
} from './format';
import { PeriodicSync } from './fsync-policy';
import { type Batch, GroupCommit } from './group-commit';
import { type ScannedLog, scanLog } from './scan';
import { SegmentReader } from './segment-reader';
import { type IoCounters, SegmentWriter, syncDirectory } from './segment-writer';
import {
  FSYNC_POLICIES,
  type FsyncPolicy,
  type SegmentInfo,
  type WalOpenReport,
  type WalOptions,
  type WalRecord,
} from './types';

const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
/**
 * The buffer batches are encoded into is kept for the next batch up to this size, rather
 * than a fresh one per write: at install rates (hundreds of MiB a second) every fresh
 * buffer is an allocation and a first touch of its pages, which on virtual machines costs
 * more than the copy into it. Larger batches get a buffer of their own.
 */
const KEPT_ENCODE_BUFFER_BYTES = 8 * 1024 * 1024;
const MIN_ENCODE_BUFFER_BYTES = 1024 * 1024;

/**
 * An append-only log of records in numbered segment files. Appends are ordered when they
 * are called and written in batches (one write per turn of the event loop); `fsync`
 * decides when they reach the disk. After a failed write or fsync the log is failed: it
 * refuses appends until it is reopened, which keeps every record that was acknowledged.
 */
export class Wal {
  private readonly dir: string;
  private readonly policy: FsyncPolicy;
  private readonly segmentBytes: number;
  private readonly onError: ((error: ShardsnapError) => void) | undefined;
  private readonly counters: IoCounters = { writes: 0, fsyncs: 0 };
  private readonly commits: GroupCommit;
  private readonly periodic: PeriodicSync | undefined;
  /** Segments holding records, oldest first (the current one once it has records). */
  private readonly segments: SegmentInfo[];
  private writer: SegmentWriter | undefined;
  private failureValue: ShardsnapError | undefined;
  private closing: Promise<void> | undefined;
  private lastAppendedSeq: number | undefined;
  /** Seq of the last record written (the previous seq a new segment's header names). */
  private lastWrittenSeq: number | undefined;
  private totalBytes: number;
  private checkpointBytes = 0;
  /** Oldest segment (by first seq) each running `read` still needs. */
  private readonly pins = new Map<symbol, number>();
  private truncating: Promise<void> = Promise.resolve();
  /** Reused by every batch (one is written at a time), see KEPT_ENCODE_BUFFER_BYTES. */
  private encodeBuffer: Buffer | undefined;

  private constructor(options: WalOptions, segments: SegmentInfo[]) {
    this.dir = options.dir;
    this.policy = options.fsync;
    this.segmentBytes = options.segmentBytes ?? DEFAULT_SEGMENT_BYTES;
    this.onError = options.onError;
    this.segments = segments;
    this.lastAppendedSeq = segments.at(-1)?.lastSeq;
    this.lastWrittenSeq = this.lastAppendedSeq;
    this.totalBytes = segments.reduce((sum, segment) => sum + segment.bytes, 0);
    this.commits = new GroupCommit((batch) => this.writeBatch(batch));
    if (this.policy === 'everysec') this.periodic = new PeriodicSync(() => this.backgroundSync());
  }

  /**
   * Opens (or creates) the log: checks every segment, cuts a torn/corrupt tail of the LAST
   * segment (a corrupt record in an earlier segment is a DATA_LOSS error, never cut).
   */
  static async open(options: WalOptions): Promise<{ wal: Wal; report: WalOpenReport }> {
    if (!FSYNC_POLICIES.includes(options.fsync)) {
      throw invalidArgument(
        `unknown fsync policy ${String(options.fsync)} (always, everysec, never)`,
      );
    }
    const segmentBytes = options.segmentBytes;
    if (segmentBytes !== undefined && !(Number.isSafeInteger(segmentBytes) && segmentBytes > 0)) {
      throw invalidArgument(`segmentBytes must be a positive integer, not ${segmentBytes}`);
    }
    let scanned: ScannedLog;
    try {
      await mkdir(options.dir, { recursive: true });
      scanned = await scanLog(options.dir);
    } catch (error) {
      throw writeFailure(error, options.dir);
    }
    const { segments, report } = scanned;
    const wal = new Wal(options, segments);
    const last = segments.at(-1);
    if (last) {
      try {
        wal.writer = await SegmentWriter.reopen(last, wal.counters);
      } catch (error) {
        wal.periodic?.stop();
        throw writeFailure(error, last.path);
      }
    }
    return { wal, report };
  }

  /**
   * Appends one record; the order is fixed now. Resolves once the record is in the OS
   * (`never`, `everysec`) or on the disk (`always`).
   */
  append(record: WalRecord): Promise<void> {
    const refusal = this.refusal(record);
    if (refusal) {
      // Refused: the caller may reuse the payload at once.
      record.release?.();
      return Promise.reject(refusal);
    }
    const bytes = encodedRecordBytes(record.payload.length);
    this.lastAppendedSeq = record.seq;
    this.checkpointBytes += bytes;
    return this.commits.add(record, bytes);
  }

  /** Why `record` cannot be appended, or undefined when it can. */
  private refusal(record: WalRecord): ShardsnapError | undefined {
    if (this.closing) return storeClosed('write-ahead log');
    if (this.failureValue) return this.failureValue;
    const { seq, kind, payload } = record;
    if (!Number.isSafeInteger(seq) || seq < 0) {
      return invalidArgument(`WAL record seq ${seq} is not an integer in 0..2^53-1`);
    }
    if (this.lastAppendedSeq !== undefined && seq < this.lastAppendedSeq) {
      return invalidArgument(
        `WAL record seq ${seq} is below the last appended seq ${this.lastAppendedSeq}`,
      );
    }
    if (!Number.isInteger(kind) || kind < 0 || kind > 255) {
      return invalidArgument(`WAL record kind ${kind} is not a byte`);
    }
    if (RECORD_FIXED_BODY_BYTES + payload.length > MAX_RECORD_BODY_BYTES) {
      return invalidArgument(
        `WAL record of ${payload.length} payload bytes is over the 1 GiB limit`,
      );
    }
    return undefined;
  }

  /** The failure that stopped appends, if any. */
  get failure(): ShardsnapError | undefined {
    return this.failureValue;
  }

  /** Seq of the first record still on disk (undefined when empty). */
  get firstSeq(): number | undefined {
    return this.segments[0]?.firstSeq;
  }

  /** Seq of the last record appended. */
  get lastSeq(): number | undefined {
    return this.lastAppendedSeq;
  }

  /** Bytes in all segments. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Bytes appended since the last `markCheckpoint` (for "snapshot every N WAL bytes"). */
  get bytesSinceCheckpoint(): number {
    return this.checkpointBytes;
  }

  markCheckpoint(): void {
    this.checkpointBytes = 0;
  }

  /** Write calls made so far (a batch takes one, unless the OS wrote it in parts). */
  get writes(): number {
    return this.counters.writes;
  }

  /** fdatasync calls on segment files so far (directory syncs are not counted). */
  get fsyncs(): number {
    return this.counters.fsyncs;
  }

  /**
   * Records with seq >= fromSeq in log order, read from the segments; what was appended
   * before the call is written first. Segments it still needs are kept from truncateBefore.
   */
  read(fromSeq: number, options: { signal?: AbortSignal } = {}): AsyncIterable<WalRecord> {
    // Taken now, not at the first `next`: what was appended before the call is included.
    const written = this.commits.idle();
    return this.readAfter(written, fromSeq, options.signal);
  }

  /**
   * Deletes the whole segments whose records all have seq < `seq` (covered by a snapshot),
   * oldest first; never the segment being appended to, nor one a running `read` needs.
   */
  truncateBefore(seq: number): Promise<void> {
    const run = this.truncating.then(() => this.deleteCovered(seq));
    this.truncating = run.catch(() => undefined);
    return run;
  }

  /** Flushes, fsyncs, closes. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    this.periodic?.stop();
    await this.commits.idle();
    await this.periodic?.idle();
    await this.truncating;
    const writer = this.writer;
    this.writer = undefined;
    if (!writer) return;
    try {
      if (!this.failureValue) await writer.sync();
    } catch (error) {
      throw this.fail(error, writer.info.path);
    } finally {
      await writer.close();
    }
  }

  private async writeBatch(batch: Batch): Promise<void> {
    try {
      await this.writeRecords(batch);
    } finally {
      releasePayloads(batch);
    }
  }

  private async writeRecords(batch: Batch): Promise<void> {
    if (this.failureValue) throw this.failureValue;
    let path = this.dir;
    try {
      let writer = this.writer;
      // Equal seqs never straddle a rotation: two segments would claim the same name.
      if (
        writer &&
        writer.info.bytes >= this.segmentBytes &&
        batch.firstSeq > writer.info.firstSeq
      ) {
        path = writer.info.path;
        await this.rotate(writer);
        writer = undefined;
      }
      if (!writer) {
        writer = await SegmentWriter.create(
          this.dir,
          batch.firstSeq,
          this.lastWrittenSeq,
          this.counters,
        );
        this.writer = writer;
      }
      path = writer.info.path;
      const encoded = encodeRecords(batch.records, batch.bytes, this.encodeBufferFor(batch.bytes));
      releasePayloads(batch);
      await writer.write(encoded);
      if (this.policy === 'always') {
        try {
          await writer.sync();
        } catch (error) {
          // The batch is refused: it must not come back at the next open either.
          await writer.cutBack();
          throw error;
        }
      } else {
        this.periodic?.markDirty();
      }
      const hadRecords = writer.hasRecords;
      writer.advance(encoded.length, batch.lastSeq);
      this.lastWrittenSeq = batch.lastSeq;
      this.totalBytes += hadRecords ? encoded.length : writer.info.bytes;
      if (!hadRecords) this.segments.push(writer.info);
    } catch (error) {
      throw this.fail(error, path);
    }
  }

  /** The kept encode buffer when `bytes` fit in one that may be kept; undefined: a fresh one. */
  private encodeBufferFor(bytes: number): Buffer | undefined {
    if (bytes > KEPT_ENCODE_BUFFER_BYTES) return undefined;
    if (!this.encodeBuffer || this.encodeBuffer.length < bytes) {
      this.encodeBuffer = Buffer.allocUnsafeSlow(
        Math.min(KEPT_ENCODE_BUFFER_BYTES, Math.max(MIN_ENCODE_BUFFER_BYTES, bytes * 2)),
      );
    }
    return this.encodeBuffer;
  }

  /** Syncs and closes a full segment; the next batch starts a new one. */
  private async rotate(writer: SegmentWriter): Promise<void> {
    this.writer = undefined;
    await this.periodic?.idle();
    try {
      await writer.sync();
      this.periodic?.markClean();
    } finally {
      await writer.close();
    }
  }

  private async backgroundSync(): Promise<void> {
    const writer = this.writer;
    if (!writer || this.failureValue || this.closing) return;
    try {
      await writer.sync();
    } catch (error) {
      this.fail(error, writer.info.path);
    }
  }

  /** Makes the log failed (once): every later append rejects with the returned error. */
  private fail(error: unknown, path: string): ShardsnapError {
    if (this.failureValue) return this.failureValue;
    const failure = writeFailure(error, path);
    this.failureValue = failure;
    if (this.policy !== 'always') this.onError?.(failure);
    return failure;
  }

  private async *readAfter(
    written: Promise<void>,
    fromSeq: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<WalRecord> {
    await written;
    throwIfAborted(signal);
    const pin = Symbol('read');
    const plan = this.segments
      .filter((segment) => segment.lastSeq >= fromSeq)
      .map((segment) => ({ ...segment }));
    try {
      for (const segment of plan) {
        this.pins.set(pin, segment.firstSeq);
        yield* this.readSegment(segment, fromSeq, signal);
      }
    } finally {
      this.pins.delete(pin);
    }
  }

  private async *readSegment(
    segment: SegmentInfo,
    fromSeq: number,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<WalRecord> {
    const handle = await open(segment.path, 'r');
    try {
      const reader = new SegmentReader(handle, SEGMENT_HEADER_BYTES, segment.bytes);
      for (let record = await reader.next(); record; record = await reader.next()) {
        throwIfAborted(signal);
        // A copy: a kept payload must not pin the whole chunk it was read in.
        if (record.seq >= fromSeq) {
          yield { seq: record.seq, kind: record.kind, payload: Buffer.from(record.payload) };
        }
      }
      if (reader.problem)
        throw walDataLoss(segment.path, reader.problem.offset, reader.problem.reason);
    } finally {
      await handle.close();
    }
  }

  private async deleteCovered(seq: number): Promise<void> {
    for (;;) {
      const oldest = this.segments[0];
      if (!oldest || oldest.lastSeq >= seq || this.isCurrent(oldest) || this.isPinned(oldest))
        return;
      // Out of the list before the unlink: a read starting now does not plan on it.
      this.segments.shift();
      this.totalBytes -= oldest.bytes;
      try {
        await unlink(oldest.path);
        // One deletion durable before the next: the log never shows a hole after a crash.
        await syncDirectory(this.dir);
      } catch (error) {
        if (!isShardsnapError(error) && (error as { code?: unknown }).code === 'ENOENT') continue;
        throw writeFailure(error, oldest.path);
      }
    }
  }

  private isCurrent(segment: SegmentInfo): boolean {
    return segment === this.writer?.info || segment === this.segments.at(-1);
  }

  private isPinned(segment: SegmentInfo): boolean {
    for (const firstSeq of this.pins.values()) if (firstSeq <= segment.firstSeq) return true;
    return false;
  }
}

/** Tells every record's owner its payload is no longer needed (once: `release` is dropped). */
function releasePayloads(batch: Batch): void {
  for (const record of batch.records) {
    const release = record.release;
    if (!release) continue;
    record.release = undefined;
    release();
  }
}
