import { createReadStream } from 'node:fs';
import { type FileHandle, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { ErrorCodes, type SlotRange, dataLoss, invalidArgument, isShardsnapError } from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, DEFAULT_CHUNK_SIZE } from '../snapshot';
import type { Connection } from '../wire/connection';
import { NodeFetch } from './node-source';
import { type RangeProgress, fetchRanges, planRanges } from './parallel-fetch';
import { createSnapshot, deleteRemoteSnapshot, getSnapshot } from './remote-snapshot';
import { HashingWriter } from './hashing-writer';

export interface FetchToFileOptions {
  out: string;
  /** Fetch this snapshot; otherwise a new one of `slots` is created on the node. */
  snapshotId?: string;
  slots?: SlotRange[];
  strategy?: string;
  compression?: ChunkCompression;
  chunkSize?: number;
  /**
   * Concurrent ranged streams for a READY snapshot; default chosen by its size
   * (`defaultParallelism`). A snapshot still being built is fetched as one stream.
   */
  parallel?: number;
  signal?: AbortSignal;
  maxRetries?: number;
  onProgress?: (received: number, total: number, info: SnapshotInfo__Output) => void;
}

export interface FetchToFileResult {
  info: SnapshotInfo__Output;
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes that were already in `<out>.part` from an earlier run. */
  resumedFrom: number;
  resumes: number;
  /** Streams the artifact was fetched with. */
  streams: number;
}

interface PartState {
  snapshotId: string;
  address: string;
  /** Present when fetched as ranges: how far each range got (its bytes on file). */
  ranges?: RangeProgress[];
  /** The fetch created the snapshot for itself: it is deleted once the file is complete. */
  created?: boolean;
}

/**
 * Ranges pay on paths that limit each connection; on a fast local link they cost CPU
 * (the file is read back to hash it), so only large artifacts get more than one.
 */
export function defaultParallelism(sizeBytes: number): number {
  if (sizeBytes < 1 << 30) return 1;
  if (sizeBytes < 8 * (1 << 30)) return 2;
  return 4;
}

export const MAX_PARALLEL = 16;

const partPath = (out: string): string => `${out}.part`;
const partStatePath = (out: string): string => `${out}.part.json`;
/** The sidecar with the snapshot's info (seq, slots, sha256), written next to the artifact. */
export const infoPath = (out: string): string => `${out}.json`;

/**
 * Fetches a snapshot into `out`: bytes go to `<out>.part` (with `<out>.part.json`
 * naming the snapshot and, for a ranged fetch, how far each range got), which survives a
 * crash of either side; running again with the same `out` resumes where it stopped. The
 * file is fsynced and renamed into place only once the SHA-256 of the whole artifact
 * matches.
 */
export async function fetchToFile(
  conn: Connection,
  options: FetchToFileOptions,
): Promise<FetchToFileResult> {
  const parallel = options.parallel;
  if (
    parallel !== undefined &&
    (!Number.isInteger(parallel) || parallel < 1 || parallel > MAX_PARALLEL)
  ) {
    throw invalidArgument(`parallel ${parallel} is outside 1..${MAX_PARALLEL}`);
  }
  const part = partPath(options.out);
  let previous = await readPartState(options.out);
  if (previous?.created && !options.snapshotId && !(await stillFetchable(conn, previous))) {
    // The snapshot this fetch made for itself is gone (the node restarted mid-build, or it
    // expired): its part is of no use, and the fetch starts over with a new snapshot.
    await rm(part, { force: true });
    await rm(partStatePath(options.out), { force: true });
    previous = undefined;
  }
  let state: PartState;
  let info: SnapshotInfo__Output | undefined;
  if (previous && (!options.snapshotId || options.snapshotId === previous.snapshotId)) {
    state = previous;
  } else {
    const snapshotId =
      options.snapshotId ??
      (
        await createSnapshot(conn, {
          slots: options.slots ?? [],
          strategy: options.strategy,
          compression: options.compression,
        })
      ).id;
    if (options.snapshotId && parallel !== 1) {
      info = await getSnapshot(conn, snapshotId);
    }
    state = { snapshotId, address: conn.address, ...(options.snapshotId ? {} : { created: true }) };
    const streams =
      info?.state === 'READY' ? (parallel ?? defaultParallelism(Number(info.sizeBytes))) : 1;
    if (info && streams > 1)
      state.ranges = planRanges(
        Number(info.sizeBytes),
        streams,
        options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      );
    await rm(part, { force: true });
    await writeFile(partStatePath(options.out), JSON.stringify(state));
  }
  // Ranged fetches read their part file back to hash it.
  const file = await open(part, state === previous ? 'r+' : 'w+').catch(() => open(part, 'w+'));
  let corrupt = false;
  try {
    const result = state.ranges
      ? await fetchRanged(conn, options, state, file, info)
      : await fetchSequential(conn, options, state.snapshotId, file);
    if (result.sha256 !== result.expected) {
      corrupt = true;
      throw dataLoss(
        `fetched artifact SHA-256 ${result.sha256} differs from the node's ${result.expected} [snapshot=${state.snapshotId}]`,
      );
    }
    await file.truncate(result.bytes);
    await file.sync();
    await file.close();
    await rename(part, options.out);
    const finalInfo = {
      ...result.info,
      sha256: result.sha256,
      sizeBytes: result.bytes,
      state: 'READY' as const,
    };
    await writeFile(infoPath(options.out), JSON.stringify(finalInfo, null, 2));
    await rm(partStatePath(options.out), { force: true });
    // Kept while the fetch may resume; of no use once the file is complete.
    if (state.created) await deleteRemoteSnapshot(conn, state.snapshotId);
    return {
      info: finalInfo,
      path: options.out,
      bytes: result.bytes,
      sha256: result.sha256,
      resumedFrom: result.resumedFrom,
      resumes: result.resumes,
      streams: state.ranges?.length ?? 1,
    };
  } catch (error) {
    await file.close().catch(() => undefined);
    if (corrupt) {
      // The part file cannot be trusted: the next run starts over.
      await rm(part, { force: true });
      await rm(partStatePath(options.out), { force: true });
    }
    throw error;
  }
}

interface Fetched {
  info: SnapshotInfo__Output;
  bytes: number;
  sha256: string;
  expected: string;
  resumedFrom: number;
  resumes: number;
}

/**
 * One stream from the end of the part file. Each verified piece is hashed and written
 * as it arrives; the part file stays a gapless prefix, which is what a later run resumes
 * from.
 */
async function fetchSequential(
  conn: Connection,
  options: FetchToFileOptions,
  snapshotId: string,
  file: FileHandle,
): Promise<Fetched> {
  const part = partPath(options.out);
  const resumedFrom = (await stat(part)).size;
  const writer = new HashingWriter(file.fd, resumedFrom);
  try {
    if (resumedFrom > 0) {
      await writer.seed(createReadStream(part, { start: 0, end: resumedFrom - 1 }));
    }
    const source = new NodeFetch(conn, {
      snapshotId,
      offset: resumedFrom,
      chunkSize: options.chunkSize,
      compression: options.compression,
      maxRetries: options.maxRetries,
    });
    for await (const chunk of source.chunks(options.signal)) {
      // Read before the writer may transfer the chunk's buffer to its thread.
      const bytes = chunk.offset + chunk.data.length;
      await writer.add(chunk.offset, chunk.data, chunk.take);
      chunk.release?.();
      if (source.info) options.onProgress?.(bytes, Number(source.info.sizeBytes), source.info);
    }
    if (!source.info) throw dataLoss(`the stream of snapshot ${snapshotId} carried no info`);
    const sha256 = await writer.finish();
    return {
      info: source.info,
      bytes: writer.written,
      sha256,
      expected: source.expectedSha256(),
      resumedFrom,
      resumes: source.resumes,
    };
  } catch (error) {
    // What was received is verified and stays on file (written in order): the next run
    // resumes after it. The writes in flight finish before the file is closed.
    await writer.abandon();
    throw error;
  }
}

/** Concurrent ranges of a READY artifact (see parallel-fetch.ts). */
async function fetchRanged(
  conn: Connection,
  options: FetchToFileOptions,
  state: PartState & { ranges?: RangeProgress[] },
  file: FileHandle,
  known: SnapshotInfo__Output | undefined,
): Promise<Fetched> {
  const info = known ?? (await getSnapshot(conn, state.snapshotId));
  const ranges = state.ranges ?? [];
  const total = Number(info.sizeBytes);
  const resumedFrom = ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  let saving: Promise<void> = Promise.resolve();
  const result = await fetchRanges(conn, {
    snapshotId: state.snapshotId,
    ranges,
    file,
    chunkSize: options.chunkSize,
    compression: options.compression,
    maxRetries: options.maxRetries,
    signal: options.signal,
    onProgress: (received) => options.onProgress?.(received, total, info),
    // The ranges' progress is saved now and then, and always after the bytes it counts
    // are on file: a crash can only make the next run fetch a little again.
    onCheckpoint: () => {
      saving = saving.then(() =>
        writeFile(partStatePath(options.out), JSON.stringify(state)).catch(() => undefined),
      );
    },
  }).finally(() => saving);
  return {
    info,
    bytes: total,
    sha256: result.sha256,
    expected: info.sha256,
    resumedFrom,
    resumes: result.resumes,
  };
}

/** Whether the snapshot of a part file can still be fetched (not gone, not FAILED). */
async function stillFetchable(conn: Connection, state: PartState): Promise<boolean> {
  try {
    return (await getSnapshot(conn, state.snapshotId)).state !== 'FAILED';
  } catch (error) {
    if (isShardsnapError(error, ErrorCodes.notFound)) return false;
    throw error;
  }
}

async function readPartState(out: string): Promise<PartState | undefined> {
  try {
    return JSON.parse(await readFile(partStatePath(out), 'utf8')) as PartState;
  } catch {
    return undefined;
  }
}
