import {
  type Compression,
  type OpenOptions,
  type SstWriterOptions,
  supportedCompressions,
} from './native';

/** Tuning of the RocksDB backend; every field has a default. */
export interface RocksDbStoreOptions {
  /** Memtable size before a flush (default 64 MiB). */
  writeBufferSize?: number;
  /** Memtables kept before writes stall (default 3). */
  maxWriteBufferNumber?: number;
  /** Target size of SST files at level 1 (default 64 MiB). */
  targetFileSizeBase?: number;
  /** Flush and compaction threads (default 2). */
  maxBackgroundJobs?: number;
  /** LRU block cache bytes (default 128 MiB). */
  blockCacheSize?: number;
  /** Bloom filter bits per key; 0 disables it (default 10). */
  bloomBitsPerKey?: number;
  /** Block compression (default lz4, else snappy, else none, by what the build supports). */
  compression?: Compression;
  /** fsync the WAL before a write batch resolves (default false: a crash of the machine, not of the process, may lose the last batches). */
  syncWrites?: boolean;
  /** Bytes buffered before staged install records go to the SST writer (default 4 MiB). */
  installFlushBytes?: number;
  /** Clock for expiry decisions; tests move it. */
  now?: () => number;
}

export type ResolvedOptions = Required<Omit<RocksDbStoreOptions, 'now'>> & { now: () => number };

function defaultCompression(): Compression {
  const supported = supportedCompressions();
  for (const preferred of ['lz4', 'snappy'] as const)
    if (supported.includes(preferred)) return preferred;
  return 'none';
}

export function resolveOptions(options: RocksDbStoreOptions = {}): ResolvedOptions {
  return {
    writeBufferSize: options.writeBufferSize ?? 64 << 20,
    maxWriteBufferNumber: options.maxWriteBufferNumber ?? 3,
    targetFileSizeBase: options.targetFileSizeBase ?? 64 << 20,
    maxBackgroundJobs: options.maxBackgroundJobs ?? 2,
    blockCacheSize: options.blockCacheSize ?? 128 << 20,
    bloomBitsPerKey: options.bloomBitsPerKey ?? 10,
    compression: options.compression ?? defaultCompression(),
    syncWrites: options.syncWrites ?? false,
    installFlushBytes: options.installFlushBytes ?? 4 << 20,
    now: options.now ?? Date.now,
  };
}

export function openOptions(o: ResolvedOptions): OpenOptions {
  return {
    createIfMissing: true,
    writeBufferSize: o.writeBufferSize,
    maxWriteBufferNumber: o.maxWriteBufferNumber,
    targetFileSizeBase: o.targetFileSizeBase,
    maxBackgroundJobs: o.maxBackgroundJobs,
    blockCacheSize: o.blockCacheSize,
    bloomBitsPerKey: o.bloomBitsPerKey,
    compression: o.compression,
  };
}

/** Staged install files use the db's table settings, so ingested files are alike. */
export function sstOptions(o: ResolvedOptions): SstWriterOptions {
  return { compression: o.compression, bloomBitsPerKey: o.bloomBitsPerKey };
}
