import { ErrorCodes, ShardsnapError, isShardsnapError, throwIfAborted } from '../core';
import type { SnapshotChunk__Output } from '../generated/shardsnap/v1/SnapshotChunk';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, decodeChunk } from '../snapshot';
import { compressionFromWire, compressionToWire } from '../wire/convert';
import { fromServiceError } from '../wire/status';
import type { Connection } from './connection';

export interface FetchLoopOptions {
  snapshotId: string;
  /** Where to start (bytes already received and verified). */
  offset: number;
  chunkSize?: number;
  compression?: ChunkCompression;
  signal?: AbortSignal;
  /** Reconnections allowed after a dropped stream or a corrupt chunk. */
  maxRetries?: number;
  retryDelayMs?: number;
  /** Receives each verified chunk in order; awaited, so it applies backpressure. */
  onChunk: (offset: number, raw: Buffer) => Promise<void>;
  onInfo?: (info: SnapshotInfo__Output) => void | Promise<void>;
  onRetry?: (error: ShardsnapError, offset: number, attempt: number) => void;
}

export interface FetchLoopResult {
  info: SnapshotInfo__Output;
  sha256: string;
  bytes: number;
  resumes: number;
}

/** A failure of the consumer of the chunks: fetching again would not help. */
class ConsumerFailure extends Error {
  constructor(readonly error: unknown) {
    super('chunk consumer failed');
  }
}

/** Errors after which fetching again from the last verified offset can succeed. */
function isRetryable(error: ShardsnapError): boolean {
  return (
    error.code === ErrorCodes.unavailable ||
    error.code === ErrorCodes.dataLoss ||
    error.code === ErrorCodes.internal ||
    error.code === ErrorCodes.cancelled
  );
}

/**
 * Fetches a snapshot's artifact from `offset` to its end, verifying each chunk's offset
 * and CRC32C. A dropped stream or a corrupt chunk is fetched again from the last verified
 * offset, up to `maxRetries` times with growing delays.
 */
export async function fetchLoop(
  conn: Connection,
  options: FetchLoopOptions,
): Promise<FetchLoopResult> {
  const maxRetries = options.maxRetries ?? 10;
  let offset = options.offset;
  let info: SnapshotInfo__Output | undefined;
  let attempt = 0;
  for (;;) {
    throwIfAborted(options.signal);
    try {
      const end = await fetchOnce(
        conn,
        options,
        offset,
        (next) => (offset = next),
        async (i) => {
          info = i;
          await options.onInfo?.(i);
        },
      );
      if (!info)
        throw new ShardsnapError(ErrorCodes.internal, 'stream ended without snapshot info');
      return { info, sha256: end, bytes: offset, resumes: attempt };
    } catch (error) {
      if (error instanceof ConsumerFailure) throw error.error;
      const failure = isShardsnapError(error) ? error : fromServiceError(error, 'FetchSnapshot');
      if (options.signal?.aborted) throw failure;
      if (!isRetryable(failure) || attempt >= maxRetries) throw failure;
      attempt++;
      options.onRetry?.(failure, offset, attempt);
      const delay = Math.min(5_000, (options.retryDelayMs ?? 100) * 2 ** (attempt - 1));
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

async function fetchOnce(
  conn: Connection,
  options: FetchLoopOptions,
  start: number,
  advance: (offset: number) => void,
  onInfo: (info: SnapshotInfo__Output) => Promise<void>,
): Promise<string> {
  const stream = conn.snapshots.FetchSnapshot({
    snapshotId: options.snapshotId,
    offset: start,
    chunkSize: options.chunkSize ?? 0,
    compression: compressionToWire(options.compression ?? 'none'),
  });
  const onAbort = (): void => stream.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let expected = start;
  try {
    for await (const chunk of stream as AsyncIterable<SnapshotChunk__Output>) {
      if (chunk.info) await onInfo(chunk.info);
      if (chunk.offset !== expected) {
        throw new ShardsnapError(
          ErrorCodes.dataLoss,
          `chunk at offset ${chunk.offset}, expected ${expected} [snapshot=${options.snapshotId}]`,
        );
      }
      const raw = decodeChunk(
        {
          offset: chunk.offset,
          data: chunk.data,
          crc32c: chunk.crc32c,
          compression: compressionFromWire(chunk.compression),
          rawLength: chunk.rawLength,
        },
        `snapshot=${options.snapshotId}`,
      );
      try {
        await options.onChunk(expected, raw);
      } catch (error) {
        throw new ConsumerFailure(error);
      }
      expected += raw.length;
      advance(expected);
      if (chunk.last) {
        stream.cancel();
        return chunk.sha256;
      }
    }
    throw new ShardsnapError(
      ErrorCodes.unavailable,
      `stream ended before the last chunk [snapshot=${options.snapshotId}, offset=${expected}]`,
    );
  } catch (error) {
    stream.cancel();
    if (error instanceof ConsumerFailure || isShardsnapError(error)) throw error;
    throw fromServiceError(error, 'FetchSnapshot');
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
  }
}
