import { once } from 'node:events';
import type { Writable } from 'node:stream';
import {
  type SlotRange,
  ShardsnapError,
  ErrorCodes,
  abortError,
  checksumMismatch,
  dataLoss,
} from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { ChunkCompression } from '../snapshot/chunk-codec';
import { sha256Stream } from '../snapshot/sha256-stream';
import type { Connection } from '../wire/connection';
import { type FetchStatus, FetchReporter } from './fetch-status';
import { NodeFetch } from './node-source';
import { deleteRemoteSnapshot, snapshotToRead } from './remote-snapshot';

export interface FetchToStreamOptions {
  /** Fetch this snapshot; otherwise a new one of `slots` is created (and deleted after). */
  snapshotId?: string;
  slots?: SlotRange[];
  strategy?: string;
  /** A snapshot created for the fetch is incremental: the changes after this seq. */
  sinceSeq?: number;
  compression?: ChunkCompression;
  chunkSize?: number;
  signal?: AbortSignal;
  maxRetries?: number;
  /** Keeps the snapshot the fetch created on the node. */
  keepSnapshot?: boolean;
  onStatus?: (status: FetchStatus) => void;
}

export interface FetchToStreamResult {
  info: SnapshotInfo__Output;
  bytes: number;
  sha256: string;
  resumes: number;
  created: boolean;
}

/**
 * Writes a snapshot's artifact to `sink` (a pipe, stdout) as its verified chunks arrive,
 * at the pace the sink takes them. A dropped stream resumes from the last verified chunk,
 * but a failed fetch cannot resume later: nothing is kept. The SHA-256 of the whole is
 * checked at the end, after the bytes were written: a mismatch rejects, and the reader
 * must then discard what it got. A snapshot the fetch created is deleted when it ends
 * (unless `keepSnapshot` and it succeeded).
 */
export async function fetchToStream(
  conn: Connection,
  sink: Writable,
  options: FetchToStreamOptions = {},
): Promise<FetchToStreamResult> {
  const created = options.snapshotId === undefined;
  const first = await snapshotToRead(conn, options, { signal: options.signal });
  const reporter = new FetchReporter(conn, first.id, options);
  reporter.observe(first);
  // A sink that fails (a closed pipe) stops the fetch rather than crashing the process.
  const stop = new AbortController();
  let sinkError: Error | undefined;
  const onSinkError = (error: Error): void => {
    sinkError ??= error;
    stop.abort();
  };
  sink.on('error', onSinkError);
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  const hash = sha256Stream();
  let succeeded = false;
  try {
    const source = new NodeFetch(conn, {
      snapshotId: first.id,
      chunkSize: options.chunkSize,
      compression: options.compression,
      maxRetries: options.maxRetries,
      onInfo: (info) => reporter.observe(info),
    });
    reporter.set('fetching', 0);
    let bytes = 0;
    try {
      for await (const chunk of source.chunks(signal)) {
        hash.update(chunk.data);
        // The chunk's buffer is never released to its source: the sink may hold it.
        if (!sink.write(chunk.data)) await once(sink, 'drain', { signal });
        bytes = chunk.offset + chunk.data.length;
        reporter.set('fetching', bytes);
      }
    } catch (error) {
      if (sinkError) throw sinkClosed(sinkError);
      if (options.signal?.aborted) throw abortError(options.signal);
      throw error;
    }
    if (!source.info) throw dataLoss(`the stream of snapshot ${first.id} carried no info`);
    reporter.set('verifying');
    const sha256 = await hash.digest();
    const expected = source.expectedSha256();
    if (sha256 !== expected) {
      throw checksumMismatch(
        `streamed artifact SHA-256 ${sha256} differs from the node's ${expected} [snapshot=${first.id}]`,
        { snapshotId: first.id, offset: 0 },
      );
    }
    succeeded = true;
    return {
      info: { ...source.info, sha256, sizeBytes: bytes, state: 'READY' },
      bytes,
      sha256,
      resumes: source.resumes,
      created,
    };
  } finally {
    hash.discard();
    sink.off('error', onSinkError);
    await reporter.close();
    if (created && !(succeeded && options.keepSnapshot)) await deleteRemoteSnapshot(conn, first.id);
  }
}

function sinkClosed(cause: Error): ShardsnapError {
  return new ShardsnapError(
    ErrorCodes.cancelled,
    `the output was closed before the artifact was complete (${cause.message})`,
    { cause },
  );
}
