import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  abortableSleep,
  cancelled,
  checksumMismatch,
  dataLoss,
  isShardsnapError,
  throwIfAborted,
} from '../core';
import { type VerifiedChunk, checksum, sha256Stream } from '../snapshot';
import type { ArchiveRecord } from './archive-snapshot';
import type { ArchiveTarget } from './target';

export interface DownloadOptions {
  signal?: AbortSignal;
  /** Ranged GETs started again after a failure (dropped connection, corrupt chunk); default 10. */
  maxRetries?: number;
  /** First delay before a retry, doubled each time (at most 5 s); default 200 ms. */
  retryDelayMs?: number;
  /** Chunks asked for per ranged GET; default 8. */
  chunksPerRequest?: number;
  onRetry?: (error: ShardsnapError, offset: number, attempt: number) => void;
}

/** A chunk whose CRC32C differs from the manifest's: fetched once more, then DATA_LOSS. */
class ChunkMismatch extends ShardsnapError {
  constructor(
    message: string,
    readonly offset: number,
    snapshotId: string,
  ) {
    super(ErrorCodes.dataLoss, message, {
      reason: ErrorReasons.checksumMismatch,
      metadata: { snapshot_id: snapshotId, offset },
    });
  }
}

function isRetryable(error: ShardsnapError): boolean {
  return error.code === ErrorCodes.unavailable || error.code === ErrorCodes.internal;
}

/**
 * Reads an archived artifact in ranged GETs and yields it chunk by chunk (the manifest's
 * chunk size), each chunk checked against the manifest's CRC32C before it is yielded.
 * After the last chunk the SHA-256 of everything must match the manifest (DATA_LOSS
 * otherwise, thrown before the generator ends). A dropped connection or a corrupt chunk
 * is fetched again from the last verified offset, with growing delays, at most
 * `maxRetries` times in all; a chunk corrupt twice in a row is DATA_LOSS.
 */
export async function* downloadArtifact(
  target: ArchiveTarget,
  record: ArchiveRecord,
  options: DownloadOptions = {},
): AsyncGenerator<VerifiedChunk> {
  const { manifest, location } = record;
  const { signal } = options;
  const key = location.artifactKey;
  const chunkSize = manifest.chunk_size;
  const size = manifest.size;
  const where = (offset: number): string =>
    `bucket=${location.bucket}, key=${key}, offset=${offset}`;
  const maxRetries = options.maxRetries ?? 10;
  const window = chunkSize * (options.chunksPerRequest ?? 8);

  const stored = await target.head(key, signal);
  if (!stored)
    throw new ShardsnapError(ErrorCodes.notFound, `archive artifact missing [${where(0)}]`);
  if (stored.size !== size) {
    throw dataLoss(
      `archive artifact holds ${stored.size} bytes, its manifest says ${size} [${where(0)}]`,
    );
  }

  const hash = sha256Stream();
  let offset = 0;
  let attempt = 0;
  let lastMismatchAt = -1;
  try {
    while (offset < size) {
      throwIfAborted(signal);
      const end = Math.min(size, offset + window) - 1;
      let parts: Buffer[] = [];
      let partsLength = 0;
      try {
        for await (const received of target.getRange(key, offset, end, signal)) {
          let piece = received;
          while (piece.length > 0) {
            if (offset >= size)
              throw dataLoss(`archive artifact is longer than ${size} bytes [${where(offset)}]`);
            const chunkLength = Math.min(chunkSize, size - offset);
            const take = piece.subarray(0, chunkLength - partsLength);
            parts.push(take);
            partsLength += take.length;
            piece = piece.subarray(take.length);
            if (partsLength < chunkLength) continue;
            const data = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
            parts = [];
            partsLength = 0;
            const index = offset / chunkSize;
            const crc = checksum(data);
            const expected = manifest.chunk_crc32c[index];
            if (crc !== expected) {
              throw new ChunkMismatch(
                `chunk ${index} CRC32C mismatch: got ${crc}, manifest says ${expected} [${where(offset)}]`,
                offset,
                manifest.snapshot.id,
              );
            }
            hash.update(data);
            yield { offset, data };
            offset += data.length;
          }
        }
        if (offset <= end) {
          throw new ShardsnapError(
            ErrorCodes.unavailable,
            `ranged GET ended early [${where(offset)}]`,
          );
        }
      } catch (error) {
        if (signal?.aborted) throw cancelled('download cancelled');
        const failure = isShardsnapError(error)
          ? error
          : new ShardsnapError(ErrorCodes.internal, String(error), { cause: error });
        if (failure instanceof ChunkMismatch) {
          // The same chunk corrupt twice is what the store holds, not a transfer error.
          if (failure.offset === lastMismatchAt) throw failure;
          lastMismatchAt = failure.offset;
        } else if (!isRetryable(failure)) {
          throw failure;
        }
        if (attempt >= maxRetries) throw failure;
        attempt++;
        options.onRetry?.(failure, offset, attempt);
        await abortableSleep(
          Math.min(5_000, (options.retryDelayMs ?? 200) * 2 ** (attempt - 1)),
          signal,
          'download',
        );
      }
    }
    const sha256 = await hash.digest();
    if (sha256 !== manifest.sha256) {
      throw checksumMismatch(
        `archive artifact SHA-256 ${sha256} differs from its manifest's ${manifest.sha256} [${where(size)}]`,
        { snapshotId: manifest.snapshot.id, offset: 0 },
      );
    }
  } finally {
    hash.discard();
  }
}
