import type { FileHandle } from 'node:fs/promises';
import { ErrorCodes, ShardsnapError, throwIfAborted } from '../core';
import { type ChunkCompression, DEFAULT_CHUNK_SIZE } from '../snapshot/chunk-codec';
import { sha256Stream } from '../snapshot/sha256-stream';
import type { Connection } from '../wire/connection';
import { NodeFetch } from './node-source';
import { WriteThrough } from './write-through';

/** One range of a ranged fetch: `[start, end)`, of which `[start, next)` is on file. */
export interface RangeProgress {
  start: number;
  end: number;
  next: number;
}

/** Splits `[0, total)` into `streams` ranges whose bounds fall on chunk boundaries. */
export function planRanges(
  total: number,
  streams: number,
  align = DEFAULT_CHUNK_SIZE,
): RangeProgress[] {
  const chunks = Math.ceil(total / align);
  const count = Math.max(1, Math.min(streams, chunks));
  const ranges: RangeProgress[] = [];
  for (let i = 0; i < count; i++) {
    const start = Math.min(total, Math.floor((chunks * i) / count) * align);
    const end =
      i === count - 1 ? total : Math.min(total, Math.floor((chunks * (i + 1)) / count) * align);
    ranges.push({ start, end, next: start });
  }
  return ranges;
}

export interface FetchRangesOptions {
  snapshotId: string;
  /** Updated in place as bytes reach the file. */
  ranges: RangeProgress[];
  /**
   * The file the ranges are written to, or how to open it: then it is opened when the
   * first verified bytes arrive, and a fetch that fails before creates no file.
   */
  file: FileHandle | (() => Promise<FileHandle>);
  chunkSize?: number;
  compression?: ChunkCompression;
  maxRetries?: number;
  signal?: AbortSignal;
  onProgress?: (receivedBytes: number) => void;
  /** Called after every `checkpointBytes` written, and at the end: time to save `ranges`. */
  onCheckpoint?: () => void;
  checkpointBytes?: number;
}

/**
 * Fetches every unfinished range at once, each its own resumable stream writing its own
 * region of `file`. The SHA-256 of the whole is computed while the ranges arrive, by
 * reading back the gapless prefix of the file as it grows (from the page cache); it is
 * returned for the caller to compare with the snapshot's.
 */
export async function fetchRanges(
  conn: Connection,
  options: FetchRangesOptions,
): Promise<{ sha256: string; resumes: number }> {
  const { ranges } = options;
  const given = options.file;
  let opening: Promise<FileHandle> | undefined;
  const file = (): Promise<FileHandle> =>
    (opening ??= typeof given === 'function' ? given() : Promise.resolve(given));
  const total = ranges.at(-1)?.end ?? 0;
  const every = options.checkpointBytes ?? 32 << 20;
  const abort = new AbortController();
  const stop = (): void => abort.abort(options.signal?.reason);
  throwIfAborted(options.signal);
  options.signal?.addEventListener('abort', stop, { once: true });
  let wake: (() => void) | undefined;
  const notify = (): void => {
    wake?.();
    wake = undefined;
  };
  let sinceCheckpoint = 0;
  const received = (): number => ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  let resumes = 0;
  let finished = false;

  const fetchOne = async (range: RangeProgress): Promise<void> => {
    if (range.next >= range.end) return;
    const source = new NodeFetch(conn, {
      snapshotId: options.snapshotId,
      offset: range.next,
      end: range.end,
      chunkSize: options.chunkSize,
      compression: options.compression,
      maxRetries: options.maxRetries,
      onRetry: () => resumes++,
    });
    let writer: WriteThrough | undefined;
    const advance = (done: WriteThrough): void => {
      sinceCheckpoint += done.written - range.next;
      range.next = done.written;
      if (sinceCheckpoint >= every) {
        sinceCheckpoint = 0;
        options.onCheckpoint?.();
      }
      options.onProgress?.(received());
      notify();
    };
    try {
      for await (const chunk of source.chunks(abort.signal)) {
        writer ??= new WriteThrough(await file(), range.next);
        writer.add(chunk.offset, chunk.data, chunk.release);
        if (writer.written > range.next) advance(writer);
      }
    } finally {
      // Verified bytes go to the file even when the range stops early.
      if (writer) {
        writer.flush();
        if (writer.written > range.next) advance(writer);
      }
    }
  };

  const hashPrefix = async (): Promise<string> => {
    const hash = sha256Stream();
    const buffer = Buffer.allocUnsafe(4 << 20);
    let hashed = 0;
    try {
      while (hashed < total) {
        throwIfAborted(abort.signal);
        let prefix = total;
        for (const r of ranges) {
          if (r.next < r.end) {
            prefix = r.next;
            break;
          }
        }
        if (prefix <= hashed) {
          if (finished) {
            throw new ShardsnapError(ErrorCodes.internal, `ranges ended with a gap at ${hashed}`);
          }
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const length = Math.min(buffer.length, prefix - hashed);
        const { bytesRead } = await (await file()).read(buffer, 0, length, hashed);
        if (bytesRead === 0)
          throw new ShardsnapError(ErrorCodes.internal, `part file ends at ${hashed}`);
        hash.update(buffer.subarray(0, bytesRead));
        hashed += bytesRead;
      }
      return await hash.digest();
    } catch (error) {
      hash.discard();
      throw error;
    }
  };

  const hashing = hashPrefix();
  hashing.catch(() => undefined);
  try {
    const fetches = ranges.map((r) =>
      fetchOne(r).catch((error: unknown) => {
        stop();
        throw error;
      }),
    );
    const outcomes = await Promise.allSettled(fetches);
    finished = true;
    notify();
    options.onCheckpoint?.();
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
    if (failed) {
      // The first failure is the cause; the others were stopped because of it.
      const causes = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      throw causes.find((c) => !abortedByUs(c.reason, abort.signal))?.reason ?? failed.reason;
    }
    return { sha256: await hashing, resumes };
  } finally {
    stop();
    notify();
    await hashing.catch(() => undefined);
    options.signal?.removeEventListener('abort', stop);
  }
}

function abortedByUs(reason: unknown, signal: AbortSignal): boolean {
  return signal.aborted && reason instanceof ShardsnapError && reason.code === ErrorCodes.cancelled;
}
