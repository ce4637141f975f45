import type { ShardsnapError } from '../core';

/**
 * When appended records reach the disk: after every batch (`always`), at most a second
 * later (`everysec`), or when the OS decides (`never`; the log is still synced at rotation
 * and at close).
 */
export type FsyncPolicy = 'always' | 'everysec' | 'never';

export const FSYNC_POLICIES: readonly FsyncPolicy[] = ['always', 'everysec', 'never'];

export interface WalOptions {
  /** The directory of the segments (created if missing), e.g. DIR/wal. */
  dir: string;
  fsync: FsyncPolicy;
  /** A new segment starts once the current one passes this size (default 64 MiB). */
  segmentBytes?: number;
  /** Called once per failed background fsync/write (everysec/never), for logs and metrics. */
  onError?: (error: ShardsnapError) => void;
}

export interface WalRecord {
  /** The store seq the record belongs to; non-decreasing along the log (equal seqs allowed). */
  seq: number;
  /** A small kind byte the user defines (0-255). */
  kind: number;
  payload: Buffer;
  /**
   * Called once, as soon as the log no longer needs `payload` (copied into its write, or
   * the record refused): the caller may then reuse the buffer.
   */
  release?: () => void;
}

export interface WalOpenReport {
  /** Bytes cut off the end of the last segment (a torn or corrupt tail); 0 when clean. */
  truncatedBytes: number;
  /** Why (e.g. "record at offset N of wal-...: CRC32C mismatch"), when truncatedBytes > 0. */
  truncatedReason?: string;
  segments: number;
  /** Seq of the first and last record on disk (undefined when the log is empty). */
  firstSeq: number | undefined;
  lastSeq: number | undefined;
}

/** What the log knows of one segment file holding at least one record. */
export interface SegmentInfo {
  path: string;
  firstSeq: number;
  lastSeq: number;
  /** Bytes of whole records plus the header: where the next record goes. */
  bytes: number;
}
