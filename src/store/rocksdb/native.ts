import * as fs from 'node:fs';
import * as path from 'node:path';
import { failedPrecondition } from '../../core';

// Typed surface over the shardsnap_rocksdb addon. This is the only module that
// loads the addon; everything else goes through the wrappers below, which turn
// native failures into RocksDbError.

export type Compression = 'none' | 'snappy' | 'lz4' | 'zstd';

export interface OpenOptions {
  /** Defaults to true. */
  createIfMissing?: boolean | undefined;
  errorIfExists?: boolean | undefined;
  /** Opens without a write lock; every mutating call then fails with NotSupported. */
  readOnly?: boolean | undefined;
  writeBufferSize?: number | undefined;
  maxWriteBufferNumber?: number | undefined;
  targetFileSizeBase?: number | undefined;
  maxBackgroundJobs?: number | undefined;
  /** Bytes of LRU block cache; RocksDB's default cache when omitted. */
  blockCacheSize?: number | undefined;
  /** Bloom filter bits per key; defaults to 10, 0 disables the filter. */
  bloomBitsPerKey?: number | undefined;
  compression?: Compression | undefined;
  /** Collects RocksDB statistics, readable via getProperty('rocksdb.options-statistics'). */
  statistics?: boolean | undefined;
}

/** Table settings for standalone SST files; match the db's to keep ingested files alike. */
export interface SstWriterOptions {
  compression?: Compression | undefined;
  bloomBitsPerKey?: number | undefined;
}

export interface PutOp {
  type: 'put';
  key: Buffer;
  value: Buffer;
}

export interface DelOp {
  type: 'del';
  key: Buffer;
}

/** Deletes keys in [start, end). */
export interface DelRangeOp {
  type: 'delRange';
  start: Buffer;
  end: Buffer;
}

export type WriteOp = PutOp | DelOp | DelRangeOp;

export interface WriteOptions {
  /** fsync the WAL before resolving. */
  sync?: boolean | undefined;
}

export interface IteratorOptions {
  /** Inclusive lower bound. */
  gte?: Buffer | undefined;
  /** Exclusive upper bound. */
  lt?: Buffer | undefined;
  /** Read as of this snapshot; it stays pinned until the iterator is closed. */
  snapshot?: Snapshot | undefined;
  /** Defaults to true; bulk scans should pass false to keep the cache warm for point reads. */
  fillCache?: boolean | undefined;
}

/**
 * One batch of entries. All keys and values of a batch are views into a single
 * native buffer, so retaining any of them keeps the whole batch in memory:
 * copy what you keep for long.
 */
export interface IteratorBatch {
  keys: Buffer[];
  values: Buffer[];
  /** True once the iterator is exhausted; this batch may still hold entries. */
  done: boolean;
}

export interface CheckpointInfo {
  /** Sequence number of the last write contained in the checkpoint. */
  sequence: number;
}

export interface LiveFile {
  /** File name relative to `directory`, e.g. "000012.sst". */
  name: string;
  directory: string;
  size: number;
  level: number;
  smallestKey: Buffer;
  largestKey: Buffer;
  smallestSeq: number;
  largestSeq: number;
}

export interface IngestOptions {
  /** Hard-link/move files instead of copying them. Defaults to false. */
  moveFiles?: boolean | undefined;
  /** Defaults to true. */
  snapshotConsistency?: boolean | undefined;
  /** Defaults to true. */
  allowGlobalSeqNo?: boolean | undefined;
}

export interface SstFileInfo {
  fileSize: number;
  entries: number;
}

export type RocksDbErrorCode =
  | 'NotFound'
  | 'Corruption'
  | 'NotSupported'
  | 'InvalidArgument'
  | 'IOError'
  /** An I/O error because the disk is full. */
  | 'NoSpace'
  | 'MergeInProgress'
  | 'Incomplete'
  | 'ShutdownInProgress'
  | 'TimedOut'
  | 'Aborted'
  | 'Busy'
  | 'Expired'
  | 'TryAgain'
  | 'CompactionTooLarge'
  | 'ColumnFamilyDropped'
  | 'Unknown'
  /** The db, snapshot, iterator or sst writer was already closed/released. */
  | 'Closed';

const ERROR_CODES: ReadonlySet<string> = new Set<RocksDbErrorCode>([
  'NotFound',
  'Corruption',
  'NotSupported',
  'InvalidArgument',
  'IOError',
  'NoSpace',
  'MergeInProgress',
  'Incomplete',
  'ShutdownInProgress',
  'TimedOut',
  'Aborted',
  'Busy',
  'Expired',
  'TryAgain',
  'CompactionTooLarge',
  'ColumnFamilyDropped',
  'Unknown',
  'Closed',
]);

export class RocksDbError extends Error {
  readonly code: RocksDbErrorCode;

  constructor(code: RocksDbErrorCode, message: string) {
    super(message);
    this.name = 'RocksDbError';
    this.code = code;
  }
}

export function isRocksDbError(err: unknown, code?: RocksDbErrorCode): err is RocksDbError {
  return err instanceof RocksDbError && (code === undefined || err.code === code);
}

export interface Snapshot {
  readonly sequence: number;
  /** True after release() or once the owning db closed. */
  readonly released: boolean;
  /** Idempotent. Reads/iterators still using the snapshot keep it alive until they finish. */
  release(): void;
}

export interface DbIterator {
  /**
   * Up to maxEntries entries and, beyond the first entry, at most maxBytes of
   * keys plus values. Calls must not overlap (code 'Busy').
   */
  next(maxEntries: number, maxBytes: number): Promise<IteratorBatch>;
  /** Idempotent. */
  close(): Promise<void>;
}

export interface SstWriter {
  /** Keys must be strictly ascending (bytewise); otherwise throws InvalidArgument. */
  put(key: Buffer, value: Buffer): void;
  putBatch(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void>;
  /**
   * Adds a range tombstone over [start, end). It may be added in any order relative to
   * puts; once ingested it deletes older keys of the range, never the file's own keys.
   */
  deleteRange(start: Buffer, end: Buffer): void;
  finish(): Promise<SstFileInfo>;
  /** Drops an unfinished writer and deletes its partial file; no-op after finish(). */
  abandon(): Promise<void>;
}

export interface Db {
  readonly closed: boolean;
  /** Waits for in-flight operations, closes open iterators and snapshots. Idempotent. */
  close(): Promise<void>;
  get(key: Buffer, snapshot?: Snapshot): Promise<Buffer | undefined>;
  /**
   * Values of many keys (undefined = missing), all read at one point in time: the
   * snapshot's, or the latest when the read starts.
   */
  multiGet(keys: readonly Buffer[], snapshot?: Snapshot): Promise<Array<Buffer | undefined>>;
  /** Applies all ops atomically; resolves with the latest sequence number after the write. */
  write(ops: readonly WriteOp[], options?: WriteOptions): Promise<number>;
  latestSequence(): number;
  getSnapshot(): Snapshot;
  iterator(options?: IteratorOptions): DbIterator;
  /** `dir` must not exist yet. */
  createCheckpoint(dir: string, logSizeForFlush?: number): Promise<CheckpointInfo>;
  liveFiles(): Promise<LiveFile[]>;
  ingest(files: readonly string[], options?: IngestOptions): Promise<void>;
  getProperty(name: string): string | undefined;
  getIntProperty(name: string): number | undefined;
  flush(): Promise<void>;
  /** Omitted bounds mean the start/end of the keyspace. */
  compactRange(start?: Buffer, end?: Buffer): Promise<void>;
}

interface NativeSnapshot {
  readonly sequence: number;
  readonly released: boolean;
  release(): void;
}

interface NativeIteratorBatch {
  data: Buffer;
  /** Alternating key and value lengths into `data`. */
  lengths: Uint32Array;
  done: boolean;
}

interface NativeIterator {
  next(maxEntries: number, maxBytes: number): Promise<NativeIteratorBatch>;
  close(): Promise<void>;
}

interface NativeIteratorOptions {
  gte?: Buffer | undefined;
  lt?: Buffer | undefined;
  snapshot?: NativeSnapshot | undefined;
  fillCache?: boolean | undefined;
}

interface NativeDb {
  readonly closed: boolean;
  close(): Promise<void>;
  get(key: Buffer, snapshot?: NativeSnapshot): Promise<Buffer | undefined>;
  multiGet(keys: readonly Buffer[], snapshot?: NativeSnapshot): Promise<Array<Buffer | undefined>>;
  write(ops: readonly WriteOp[], options?: WriteOptions): Promise<number>;
  latestSequence(): number;
  getSnapshot(): NativeSnapshot;
  iterator(options: NativeIteratorOptions): NativeIterator;
  createCheckpoint(dir: string, logSizeForFlush?: number): Promise<CheckpointInfo>;
  liveFiles(): Promise<LiveFile[]>;
  ingest(files: readonly string[], options?: IngestOptions): Promise<void>;
  getProperty(name: string): string | undefined;
  getIntProperty(name: string): number | undefined;
  flush(): Promise<void>;
  compactRange(start?: Buffer, end?: Buffer): Promise<void>;
}

interface NativeSstWriter {
  put(key: Buffer, value: Buffer): void;
  putBatch(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void>;
  deleteRange(start: Buffer, end: Buffer): void;
  finish(): Promise<SstFileInfo>;
  abandon(): Promise<void>;
}

interface NativeBinding {
  openDb(path: string, options?: OpenOptions): Promise<NativeDb>;
  createSstWriter(path: string, options?: SstWriterOptions): Promise<NativeSstWriter>;
  supportedCompressions(): Compression[];
}

const ADDON_RELATIVE = path.join('native', 'build', 'Release', 'shardsnap_rocksdb.node');

// Sources run from src/store/rocksdb, compiled output from dist/src/store/rocksdb.
// SHARDSNAP_ADDON_DIR: another build of the addons (`make test-native-asan` builds one
// with AddressSanitizer and UndefinedBehaviorSanitizer).
const ADDON_CANDIDATES = [
  ...(process.env.SHARDSNAP_ADDON_DIR
    ? [path.join(process.env.SHARDSNAP_ADDON_DIR, 'shardsnap_rocksdb.node')]
    : []),
  path.join(__dirname, '../../..', ADDON_RELATIVE),
  path.join(__dirname, '../../../..', ADDON_RELATIVE),
];

let binding: NativeBinding | undefined;

// Loaded on first use so that importing this module (e.g. for types or in
// setups that only use the in-memory store) does not require a built addon.
function addon(): NativeBinding {
  if (binding !== undefined) return binding;
  const file = ADDON_CANDIDATES.find((candidate) => fs.existsSync(candidate));
  if (file === undefined) {
    throw failedPrecondition(
      `shardsnap_rocksdb addon not found (looked in ${ADDON_CANDIDATES.join(', ')}); ` +
        'build it with `cd native && npx node-gyp rebuild`',
    );
  }
  const loaded: { exports: unknown } = { exports: {} };
  process.dlopen(loaded, file);
  binding = loaded.exports as NativeBinding;
  return binding;
}

function convertError(err: unknown): unknown {
  if (err instanceof Error && !(err instanceof RocksDbError)) {
    const code: unknown = (err as { code?: unknown }).code;
    if (typeof code === 'string' && ERROR_CODES.has(code)) {
      return new RocksDbError(code as RocksDbErrorCode, err.message);
    }
  }
  return err;
}

async function settle<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw convertError(err);
  }
}

function sync<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    throw convertError(err);
  }
}

class SnapshotHandle implements Snapshot {
  constructor(readonly native: NativeSnapshot) {}

  get sequence(): number {
    return this.native.sequence;
  }

  get released(): boolean {
    return this.native.released;
  }

  release(): void {
    sync(() => this.native.release());
  }
}

function unwrapSnapshot(snapshot: Snapshot | undefined): NativeSnapshot | undefined {
  if (snapshot === undefined) return undefined;
  if (!(snapshot instanceof SnapshotHandle)) {
    throw new TypeError('snapshot must come from db.getSnapshot()');
  }
  return snapshot.native;
}

function splitBatch(batch: NativeIteratorBatch): IteratorBatch {
  const { data, lengths } = batch;
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i + 1 < lengths.length; i += 2) {
    const keyEnd = offset + (lengths[i] ?? 0);
    const valueEnd = keyEnd + (lengths[i + 1] ?? 0);
    keys.push(data.subarray(offset, keyEnd));
    values.push(data.subarray(keyEnd, valueEnd));
    offset = valueEnd;
  }
  return { keys, values, done: batch.done };
}

class IteratorHandle implements DbIterator {
  constructor(private readonly native: NativeIterator) {}

  next(maxEntries: number, maxBytes: number): Promise<IteratorBatch> {
    return settle(async () => splitBatch(await this.native.next(maxEntries, maxBytes)));
  }

  close(): Promise<void> {
    return settle(() => this.native.close());
  }
}

class SstWriterHandle implements SstWriter {
  constructor(private readonly native: NativeSstWriter) {}

  put(key: Buffer, value: Buffer): void {
    sync(() => this.native.put(key, value));
  }

  putBatch(keys: readonly Buffer[], values: readonly Buffer[]): Promise<void> {
    return settle(() => this.native.putBatch(keys, values));
  }

  deleteRange(start: Buffer, end: Buffer): void {
    sync(() => this.native.deleteRange(start, end));
  }

  finish(): Promise<SstFileInfo> {
    return settle(() => this.native.finish());
  }

  abandon(): Promise<void> {
    return settle(() => this.native.abandon());
  }
}

class DbHandle implements Db {
  constructor(private readonly native: NativeDb) {}

  get closed(): boolean {
    return this.native.closed;
  }

  close(): Promise<void> {
    return settle(() => this.native.close());
  }

  get(key: Buffer, snapshot?: Snapshot): Promise<Buffer | undefined> {
    return settle(() => this.native.get(key, unwrapSnapshot(snapshot)));
  }

  multiGet(keys: readonly Buffer[], snapshot?: Snapshot): Promise<Array<Buffer | undefined>> {
    return settle(() => this.native.multiGet(keys, unwrapSnapshot(snapshot)));
  }

  write(ops: readonly WriteOp[], options?: WriteOptions): Promise<number> {
    return settle(() => this.native.write(ops, options));
  }

  latestSequence(): number {
    return sync(() => this.native.latestSequence());
  }

  getSnapshot(): Snapshot {
    return new SnapshotHandle(sync(() => this.native.getSnapshot()));
  }

  iterator(options: IteratorOptions = {}): DbIterator {
    const { snapshot, ...rest } = options;
    const native = sync(() =>
      this.native.iterator({ ...rest, snapshot: unwrapSnapshot(snapshot) }),
    );
    return new IteratorHandle(native);
  }

  createCheckpoint(dir: string, logSizeForFlush?: number): Promise<CheckpointInfo> {
    return settle(() => this.native.createCheckpoint(dir, logSizeForFlush));
  }

  liveFiles(): Promise<LiveFile[]> {
    return settle(() => this.native.liveFiles());
  }

  ingest(files: readonly string[], options?: IngestOptions): Promise<void> {
    return settle(() => this.native.ingest(files, options));
  }

  getProperty(name: string): string | undefined {
    return sync(() => this.native.getProperty(name));
  }

  getIntProperty(name: string): number | undefined {
    return sync(() => this.native.getIntProperty(name));
  }

  flush(): Promise<void> {
    return settle(() => this.native.flush());
  }

  compactRange(start?: Buffer, end?: Buffer): Promise<void> {
    return settle(() => this.native.compactRange(start, end));
  }
}

export async function openDb(dbPath: string, options: OpenOptions = {}): Promise<Db> {
  return new DbHandle(await settle(() => addon().openDb(dbPath, options)));
}

/** Starts a standalone SST file at `filePath` for later ingestion. */
export async function createSstWriter(
  filePath: string,
  options: SstWriterOptions = {},
): Promise<SstWriter> {
  return new SstWriterHandle(await settle(() => addon().createSstWriter(filePath, options)));
}

/** Compression types this RocksDB build can write ('none' always included). */
export function supportedCompressions(): Compression[] {
  return addon().supportedCompressions();
}
