import {
  ErrorCodes,
  ShardsnapError,
  cancelled,
  dataLoss,
  isShardsnapError,
  throwIfAborted,
} from '../core';
import type { SnapshotChunk__Output } from '../generated/shardsnap/v1/SnapshotChunk';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, type VerifiedChunk, decodeChunk } from '../snapshot';
import type { Connection } from '../wire/connection';
import { compressionFromWire, compressionToWire } from '../wire/convert';
import { fromServiceError } from '../wire/status';
import type { ChunkSource } from './chunk-source';

export interface NodeFetchOptions {
  snapshotId: string;
  /** Where to start (bytes already received and verified); default 0. */
  offset?: number;
  /** Where to stop (exclusive); default the end of the artifact. */
  end?: number;
  chunkSize?: number;
  compression?: ChunkCompression;
  /** Streams started again after a dropped stream or a corrupt chunk; default 10. */
  maxRetries?: number;
  /** First delay before a retry, doubled each time (at most 5 s); default 100 ms. */
  retryDelayMs?: number;
  onInfo?: (info: SnapshotInfo__Output) => void;
  onRetry?: (error: ShardsnapError, offset: number, attempt: number) => void;
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

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled('fetch cancelled'));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A snapshot's artifact (or one byte range of it) fetched from a node with
 * FetchSnapshot: each chunk's offset and CRC32C are checked before it is yielded. A
 * dropped stream or a corrupt chunk is fetched again from the last verified offset, up
 * to `maxRetries` times with growing delays, so the consumer sees one gapless sequence.
 */
export class NodeFetch implements ChunkSource {
  info: SnapshotInfo__Output | undefined;
  resumes = 0;
  /** The next offset to receive: everything before it was yielded. */
  position: number;
  private sha256 = '';

  constructor(
    private readonly conn: Connection,
    private readonly options: NodeFetchOptions,
  ) {
    this.position = options.offset ?? 0;
  }

  get origin(): string {
    return `node ${this.conn.address}`;
  }

  get snapshotId(): string {
    return this.options.snapshotId;
  }

  get totalBytes(): number {
    return this.info && this.info.state === 'READY' ? Number(this.info.sizeBytes) : 0;
  }

  expectedSha256(): string {
    if (!this.sha256) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `the SHA-256 of snapshot ${this.snapshotId} is known only once its last chunk arrived`,
      );
    }
    return this.sha256;
  }

  async *chunks(signal?: AbortSignal): AsyncGenerator<VerifiedChunk> {
    const { options } = this;
    const maxRetries = options.maxRetries ?? 10;
    for (;;) {
      throwIfAborted(signal);
      try {
        yield* this.stream(signal);
        return;
      } catch (error) {
        const failure = isShardsnapError(error) ? error : fromServiceError(error, 'FetchSnapshot');
        if (signal?.aborted || !isRetryable(failure) || this.resumes >= maxRetries) throw failure;
        this.resumes++;
        options.onRetry?.(failure, this.position, this.resumes);
        await sleep(
          Math.min(5_000, (options.retryDelayMs ?? 100) * 2 ** (this.resumes - 1)),
          signal,
        );
      }
    }
  }

  private async *stream(signal: AbortSignal | undefined): AsyncGenerator<VerifiedChunk> {
    const { options } = this;
    const where = (offset: number): string => `snapshot=${this.snapshotId}, offset=${offset}`;
    const end = options.end;
    const stream = this.conn.snapshots.FetchSnapshot({
      snapshotId: this.snapshotId,
      offset: this.position,
      length: end === undefined ? 0 : end - this.position,
      chunkSize: options.chunkSize ?? 0,
      compression: compressionToWire(options.compression ?? 'none'),
    });
    const onAbort = (): void => stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const chunk of stream as AsyncIterable<SnapshotChunk__Output>) {
        if (chunk.info) {
          this.info = chunk.info;
          options.onInfo?.(chunk.info);
        }
        if (chunk.offset !== this.position) {
          throw dataLoss(
            `chunk at offset ${chunk.offset}, expected ${this.position} [${where(chunk.offset)}]`,
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
          `snapshot=${this.snapshotId}`,
        );
        const next = this.position + raw.length;
        if (end !== undefined && next > end) {
          throw dataLoss(`chunk runs past the end of the range (${end}) [${where(this.position)}]`);
        }
        if (chunk.last && end !== undefined && next !== end) {
          throw dataLoss(
            `stream ended at ${next}, before the end of the range (${end}) [${where(next)}]`,
          );
        }
        if (chunk.last && end === undefined && !chunk.sha256) {
          throw dataLoss(`the last chunk carries no SHA-256 [${where(next)}]`);
        }
        yield { offset: this.position, data: raw };
        this.position = next;
        if (chunk.last) {
          this.sha256 = chunk.sha256 || this.sha256;
          return;
        }
      }
      throw new ShardsnapError(
        ErrorCodes.unavailable,
        `stream ended before the last chunk [${where(this.position)}]`,
      );
    } finally {
      stream.cancel();
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
