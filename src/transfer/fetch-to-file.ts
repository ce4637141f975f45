import { createReadStream } from 'node:fs';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import {
  ErrorCodes,
  type SlotRange,
  checksumMismatch,
  dataLoss,
  invalidArgument,
  isShardsnapError,
  normalizeSlotRanges,
} from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, DEFAULT_CHUNK_SIZE } from '../snapshot/chunk-codec';
import type { Connection } from '../wire/connection';
import { type FetchStatus, FetchReporter } from './fetch-status';
import { HashingWriter } from './hashing-writer';
import { NodeFetch } from './node-source';
import { fetchRanges, planRanges } from './parallel-fetch';
import {
  type PartState,
  PartFile,
  partOfAnotherFetch,
  partPath,
  partProgress,
  partSnapshotGone,
  readPartState,
  removePart,
  sameSlots,
  writePartState,
} from './part-state';
import { deleteRemoteSnapshot, getSnapshot, snapshotToRead } from './remote-snapshot';

export { type FetchPhase, type FetchStatus } from './fetch-status';
export * from './fetch-to-stream';
export {
  PART_MISMATCH,
  type PartState,
  isStalePartError,
  partPath,
  partProgress,
  partStatePath,
  readPartState,
} from './part-state';

export interface FetchToFileOptions {
  out: string;
  /** Fetch this snapshot; otherwise a new one of `slots` is created on the node. */
  snapshotId?: string;
  slots?: SlotRange[];
  strategy?: string;
  /** A snapshot created for the fetch is incremental: the changes after this seq. */
  sinceSeq?: number;
  compression?: ChunkCompression;
  chunkSize?: number;
  /**
   * Concurrent ranged streams for a READY snapshot; default chosen by its size
   * (`defaultParallelism`). A snapshot still being built is fetched as one stream.
   */
  parallel?: number;
  signal?: AbortSignal;
  maxRetries?: number;
  /** Discards `<out>.part` of an earlier run (and the snapshot that run created) first. */
  restart?: boolean;
  /** Keeps the snapshot the fetch created on the node (by default deleted once complete). */
  keepSnapshot?: boolean;
  /** `total` is 0 until the snapshot is READY. */
  onProgress?: (received: number, total: number, info: SnapshotInfo__Output) => void;
  /** The phase and bytes of the fetch, for a progress display (see FetchStatus). */
  onStatus?: (status: FetchStatus) => void;
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
  /** The fetch (this run or the one it resumed) created the snapshot on the node. */
  created: boolean;
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

/** The sidecar with the snapshot's info (seq, slots, sha256), written next to the artifact. */
export const infoPath = (out: string): string => `${out}.json`;

/**
 * Fetches a snapshot into `out`: bytes go to `<out>.part` (with `<out>.part.json`
 * naming the snapshot and, for a ranged fetch, how far each range got), which survives a
 * crash of either side; running again with the same `out` resumes where it stopped. The
 * file is fsynced and renamed into place only once the SHA-256 of the whole artifact
 * matches.
 *
 * A part file that cannot resume (its snapshot is not on the node, or it is of another
 * snapshot or other slots than asked for) is refused before anything is written, with an
 * error whose metadata names it (`isStalePartError`); `restart` discards it. The part file
 * is created with the first verified bytes, and a fetch that ends keeping no bytes leaves
 * no part state, and deletes the snapshot it created: a failed or interrupted run costs
 * the node at most the one snapshot a later run resumes.
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
  const { out } = options;
  let previous = await readPartState(out);
  if (options.restart) {
    if (previous?.created) await deleteRemoteSnapshot(conn, previous.snapshotId);
    await removePart(out);
    previous = undefined;
  }
  const resumed = previous && (await resumable(conn, options, previous));
  let state: PartState;
  let info: SnapshotInfo__Output;
  if (resumed) {
    ({ state, info } = resumed);
  } else {
    // An unknown id fails here, before anything is written.
    info = await snapshotToRead(conn, options, { signal: options.signal });
    state = {
      snapshotId: info.id,
      address: conn.address,
      ...(options.snapshotId
        ? {}
        : {
            created: true,
            ...(options.slots ? { slots: normalizeSlotRanges(options.slots) } : {}),
          }),
    };
    const streams =
      info.state === 'READY' ? (parallel ?? defaultParallelism(Number(info.sizeBytes))) : 1;
    if (streams > 1)
      state.ranges = planRanges(
        Number(info.sizeBytes),
        streams,
        options.chunkSize ?? DEFAULT_CHUNK_SIZE,
      );
    await rm(partPath(out), { force: true });
    // Recorded at once: a run killed from here on resumes this snapshot, not a new one.
    await writePartState(out, state);
  }
  const reporter = new FetchReporter(conn, state.snapshotId, options);
  reporter.observe(info);
  const file = new PartFile(partPath(out));
  let corrupt = false;
  try {
    const result = state.ranges
      ? await fetchRanged(conn, options, state, file, info, reporter)
      : await fetchSequential(conn, options, state.snapshotId, file, reporter);
    if (result.sha256 !== result.expected) {
      corrupt = true;
      throw checksumMismatch(
        `fetched artifact SHA-256 ${result.sha256} differs from the node's ${result.expected} [snapshot=${state.snapshotId}]`,
        { snapshotId: state.snapshotId, offset: 0 },
      );
    }
    const handle = await file.open();
    await handle.truncate(result.bytes);
    await handle.sync();
    await file.close();
    await rename(partPath(out), out);
    const finalInfo = {
      ...result.info,
      sha256: result.sha256,
      sizeBytes: result.bytes,
      state: 'READY' as const,
    };
    await writeFile(infoPath(out), JSON.stringify(finalInfo, null, 2));
    await removePart(out);
    // Kept while the fetch may resume; of no use once the file is complete.
    if (state.created && !options.keepSnapshot) await deleteRemoteSnapshot(conn, state.snapshotId);
    return {
      info: finalInfo,
      path: out,
      bytes: result.bytes,
      sha256: result.sha256,
      resumedFrom: result.resumedFrom,
      resumes: result.resumes,
      streams: state.ranges?.length ?? 1,
      created: state.created === true,
    };
  } catch (error) {
    await file.close();
    // A corrupt part file cannot be trusted, and one without bytes resumes nothing: the
    // next run starts over, and the snapshot made for this one is of no further use.
    if (corrupt || (await partProgress(out, state)) === 0) {
      await removePart(out);
      if (state.created) await deleteRemoteSnapshot(conn, state.snapshotId);
    }
    throw error;
  } finally {
    await reporter.close();
  }
}

/**
 * The part state and snapshot info to resume with; undefined when the run should start
 * over (the snapshot an earlier run made for itself on this node is gone, or the part
 * holds nothing); throws when the part file cannot serve this request.
 */
async function resumable(
  conn: Connection,
  options: FetchToFileOptions,
  previous: PartState,
): Promise<{ state: PartState; info: SnapshotInfo__Output } | undefined> {
  const { out } = options;
  const bytes = await partProgress(out, previous);
  if (options.snapshotId && options.snapshotId !== previous.snapshotId) {
    if (bytes === 0) return undefined;
    throw partOfAnotherFetch(out, previous, bytes, `snapshot ${options.snapshotId}`);
  }
  if (
    !options.snapshotId &&
    options.slots &&
    !(previous.created && sameSlots(previous.slots, options.slots))
  ) {
    if (bytes === 0) return undefined;
    throw partOfAnotherFetch(out, previous, bytes, 'a new snapshot of the slots asked for');
  }
  let info: SnapshotInfo__Output | undefined;
  try {
    info = await getSnapshot(conn, previous.snapshotId);
  } catch (error) {
    if (!isShardsnapError(error, ErrorCodes.notFound)) throw error;
  }
  if (info && info.state !== 'FAILED') return { state: previous, info };
  // The snapshot an earlier run made for itself is gone (the node restarted mid-build, or
  // it expired): its part is of no use, and a new snapshot serves the same request.
  const ownGone = previous.created && !options.snapshotId && previous.address === conn.address;
  if (ownGone || bytes === 0) {
    if (previous.created && info) await deleteRemoteSnapshot(conn, previous.snapshotId);
    await removePart(out);
    return undefined;
  }
  throw partSnapshotGone(out, previous, conn.address, bytes, info ? 'failed' : 'not_found');
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
  file: PartFile,
  reporter: FetchReporter,
): Promise<Fetched> {
  const part = partPath(options.out);
  const resumedFrom = await stat(part).then(
    (s) => s.size,
    () => 0,
  );
  reporter.resumedFrom = resumedFrom;
  let writer: HashingWriter | undefined;
  const start = async (): Promise<HashingWriter> =>
    (writer ??= new HashingWriter((await file.open()).fd, resumedFrom));
  try {
    if (resumedFrom > 0) {
      reporter.set('resuming', resumedFrom);
      await (await start()).seed(createReadStream(part, { start: 0, end: resumedFrom - 1 }));
    }
    const source = new NodeFetch(conn, {
      snapshotId,
      offset: resumedFrom,
      chunkSize: options.chunkSize,
      compression: options.compression,
      maxRetries: options.maxRetries,
      onInfo: (info) => reporter.observe(info),
    });
    reporter.set('fetching', resumedFrom);
    for await (const chunk of source.chunks(options.signal)) {
      // Read before the writer may transfer the chunk's buffer to its thread.
      const bytes = chunk.offset + chunk.data.length;
      await (writer ?? (await start())).add(chunk.offset, chunk.data, chunk.take);
      chunk.release?.();
      reporter.set('fetching', bytes);
    }
    if (!source.info) throw dataLoss(`the stream of snapshot ${snapshotId} carried no info`);
    reporter.set('verifying');
    const done = writer ?? (await start());
    const sha256 = await done.finish();
    return {
      info: source.info,
      bytes: done.written,
      sha256,
      expected: source.expectedSha256(),
      resumedFrom,
      resumes: source.resumes,
    };
  } catch (error) {
    // What was received is verified and stays on file (written in order): the next run
    // resumes after it. The writes in flight finish before the file is closed.
    await writer?.abandon();
    throw error;
  }
}

/** Concurrent ranges of a READY artifact (see parallel-fetch.ts). */
async function fetchRanged(
  conn: Connection,
  options: FetchToFileOptions,
  state: PartState,
  file: PartFile,
  info: SnapshotInfo__Output,
  reporter: FetchReporter,
): Promise<Fetched> {
  const ranges = state.ranges ?? [];
  const total = Number(info.sizeBytes);
  const resumedFrom = ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  reporter.resumedFrom = resumedFrom;
  reporter.set('fetching', resumedFrom);
  let saving: Promise<void> = Promise.resolve();
  const result = await fetchRanges(conn, {
    snapshotId: state.snapshotId,
    ranges,
    file: () => file.open(),
    chunkSize: options.chunkSize,
    compression: options.compression,
    maxRetries: options.maxRetries,
    signal: options.signal,
    // The SHA-256 is computed behind the ranges: once all bytes are in, it catches up.
    onProgress: (received) => reporter.set(received >= total ? 'verifying' : 'fetching', received),
    // The ranges' progress is saved now and then, and always after the bytes it counts
    // are on file: a crash can only make the next run fetch a little again.
    onCheckpoint: () => {
      saving = saving.then(() => writePartState(options.out, state).catch(() => undefined));
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
