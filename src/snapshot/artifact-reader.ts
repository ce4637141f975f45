import { open } from 'node:fs/promises';
import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  invalidArgument,
  isNoSpace,
  isShardsnapError,
  snapshotFailed,
  throwIfAborted,
} from '../core';
import type { BufferPool } from './buffer-pool';
import type { SnapshotEntry } from './snapshot-entry';

const READ_AHEAD = 4;

export interface ArtifactPiece {
  offset: number;
  data: Buffer;
  /** Gives the piece's buffer back to the pool it came from, once its bytes are used. */
  release: () => void;
  /** True on the piece that ends the artifact. */
  last: boolean;
}

/**
 * Reads an artifact from `offset` up to `end` (exclusive; default its end) in pieces of
 * `chunkSize`, following it while it is still being built. A range that ends past the
 * end of the artifact is INVALID_ARGUMENT (as soon as the size is known). Each piece is
 * a fresh buffer (or one from `pool`), so a consumer may hold it while the next is read.
 * The file is closed when the generator ends, fails or is returned early.
 */
export async function* readArtifact(
  entry: SnapshotEntry,
  options: {
    offset: number;
    end?: number;
    chunkSize: number;
    signal?: AbortSignal;
    pool?: BufferPool;
  },
): AsyncGenerator<ArtifactPiece> {
  const { chunkSize, signal } = options;
  const position = options.offset;
  const end = options.end;
  if (end !== undefined && end <= position) {
    throw invalidArgument(`range [${position}, ${end}) of snapshot ${entry.meta.id} is empty`);
  }
  const check = (): void => {
    throwIfAborted(signal);
    // A READY snapshot deleted while streamed keeps its files until the last stream ends:
    // streams already reading it finish. A build deleted midway stops, so must they.
    if (entry.deleted && entry.meta.state !== 'READY') {
      throw new ShardsnapError(ErrorCodes.notFound, `snapshot ${entry.meta.id} was deleted`, {
        reason: ErrorReasons.snapshotNotFound,
        metadata: { snapshot_id: entry.meta.id },
      });
    }
    if (entry.meta.state === 'FAILED') {
      // A build stopped by a limit (the spool) is the node's resource, not the request's fault.
      const exhausted =
        isShardsnapError(entry.failure, ErrorCodes.resourceExhausted) || isNoSpace(entry.failure);
      throw snapshotFailed(
        entry.meta.id,
        `snapshot ${entry.meta.id} failed to build: ${entry.meta.error}`,
        exhausted ? ErrorCodes.resourceExhausted : ErrorCodes.failedPrecondition,
      );
    }
    if (entry.meta.state === 'READY' && position > entry.meta.sizeBytes) {
      throw invalidArgument(
        `offset ${position} is past the end of snapshot ${entry.meta.id} (${entry.meta.sizeBytes} bytes)`,
      );
    }
    if (entry.meta.state === 'READY' && end !== undefined && end > entry.meta.sizeBytes) {
      throw invalidArgument(
        `range end ${end} is past the end of snapshot ${entry.meta.id} (${entry.meta.sizeBytes} bytes)`,
      );
    }
  };
  check();
  // Waiting for the first bytes also waits for the build to create the file.
  await entry.waitForBytes(Math.min(position, chunkSize - 1), signal);
  check();
  const file = await open(entry.artifactPath, 'r');
  // Reads run ahead of the consumer (up to READ_AHEAD pieces), so the disk works while
  // the previous piece is encoded and sent.
  const ahead: Array<{ offset: number; last: boolean; data: Promise<Buffer>; buffer: Buffer }> = [];
  let next = position;
  const pool = options.pool?.size === chunkSize ? options.pool : undefined;
  const readPiece = async (buffer: Buffer, at: number, length: number): Promise<Buffer> => {
    const data = buffer.subarray(0, length);
    let read = 0;
    while (read < length) {
      const { bytesRead } = await file.read(data, read, length - read, at + read);
      if (bytesRead === 0) {
        throw new ShardsnapError(
          ErrorCodes.dataLoss,
          `artifact of snapshot ${entry.meta.id} is shorter than its manifest [offset=${at + read}]`,
        );
      }
      read += bytesRead;
    }
    return data;
  };
  try {
    if (end === undefined && entry.meta.state === 'READY' && position === entry.meta.sizeBytes) {
      yield { offset: position, data: Buffer.alloc(0), last: true, release: () => undefined };
      return;
    }
    for (;;) {
      check();
      for (;;) {
        const ready = entry.meta.state === 'READY';
        const limit =
          end === undefined ? entry.meta.bytesWritten : Math.min(end, entry.meta.bytesWritten);
        const available = limit - next;
        const tail = ready || (end !== undefined && entry.meta.bytesWritten >= end);
        if (
          ahead.length >= READ_AHEAD ||
          next >= (end ?? Infinity) ||
          (tail ? available <= 0 : available < chunkSize)
        )
          break;
        const length = Math.min(chunkSize, available);
        const buffer = pool ? pool.acquire() : Buffer.allocUnsafe(length);
        const data = readPiece(buffer, next, length);
        data.catch(() => undefined);
        ahead.push({
          offset: next,
          last: next + length === end || (ready && next + length === entry.meta.sizeBytes),
          data,
          buffer,
        });
        next += length;
      }
      const piece = ahead.shift();
      if (!piece) {
        await entry.waitForBytes(Math.min(next + chunkSize, end ?? Infinity) - 1, signal);
        continue;
      }
      const release = (): void => pool?.release(piece.buffer);
      yield { offset: piece.offset, data: await piece.data, last: piece.last, release };
      if (piece.last) return;
    }
  } finally {
    await Promise.allSettled(ahead.map((p) => p.data));
    await file.close();
  }
}
