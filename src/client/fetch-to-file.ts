import { createReadStream } from 'node:fs';
import { open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { type SlotRange, dataLoss } from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, type Sha256Stream, sha256Stream } from '../snapshot';
import type { Connection } from './connection';
import { fetchLoop } from './fetch-stream';
import { createSnapshot } from './snapshots';

export interface FetchToFileOptions {
  out: string;
  /** Fetch this snapshot; otherwise a new one of `slots` is created on the node. */
  snapshotId?: string;
  slots?: SlotRange[];
  strategy?: string;
  compression?: ChunkCompression;
  chunkSize?: number;
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
}

interface PartState {
  snapshotId: string;
  address: string;
}

const partPath = (out: string): string => `${out}.part`;
const partStatePath = (out: string): string => `${out}.part.json`;
/** The sidecar with the snapshot's info (seq, slots, sha256), written next to the artifact. */
export const infoPath = (out: string): string => `${out}.json`;

/** A hash stream that has already seen the first `length` bytes of `path`. */
async function hashFile(path: string, length: number): Promise<Sha256Stream> {
  const hash = sha256Stream();
  if (length === 0) return hash;
  for await (const piece of createReadStream(path, { start: 0, end: length - 1 })) {
    hash.update(piece as Buffer);
  }
  return hash;
}

/**
 * Fetches a snapshot into `out`: bytes go to `<out>.part` (with `<out>.part.json`
 * naming the snapshot), which survives a crash of either side; running again with the
 * same `out` resumes from the end of the part file. The file is fsynced and renamed into
 * place only once the SHA-256 of the whole artifact matches.
 */
export async function fetchToFile(
  conn: Connection,
  options: FetchToFileOptions,
): Promise<FetchToFileResult> {
  const part = partPath(options.out);
  const previous = await readPartState(options.out);
  let snapshotId: string;
  let resumedFrom = 0;
  if (previous && (!options.snapshotId || options.snapshotId === previous.snapshotId)) {
    snapshotId = previous.snapshotId;
    resumedFrom = await stat(part).then(
      (s) => s.size,
      () => 0,
    );
  } else {
    snapshotId =
      options.snapshotId ??
      (
        await createSnapshot(conn, {
          slots: options.slots ?? [],
          strategy: options.strategy,
          compression: options.compression,
        })
      ).id;
    await rm(part, { force: true });
    const state: PartState = { snapshotId, address: conn.address };
    await writeFile(partStatePath(options.out), JSON.stringify(state));
  }
  const hash = await hashFile(part, resumedFrom);
  const file = await open(part, resumedFrom > 0 ? 'r+' : 'w');
  let info: SnapshotInfo__Output | undefined;
  let corrupt = false;
  try {
    const result = await fetchLoop(conn, {
      snapshotId,
      offset: resumedFrom,
      chunkSize: options.chunkSize,
      compression: options.compression,
      signal: options.signal,
      maxRetries: options.maxRetries,
      onInfo: (i) => {
        info = i;
      },
      onChunk: async (offset, raw) => {
        let written = 0;
        while (written < raw.length) {
          const r = await file.write(raw, written, raw.length - written, offset + written);
          written += r.bytesWritten;
        }
        hash.update(raw);
        if (info) options.onProgress?.(offset + raw.length, Number(info.sizeBytes), info);
      },
    });
    const sha256 = await hash.digest();
    if (sha256 !== result.sha256) {
      corrupt = true;
      throw dataLoss(
        `fetched artifact SHA-256 ${sha256} differs from the node's ${result.sha256} [snapshot=${snapshotId}]`,
      );
    }
    await file.truncate(result.bytes);
    await file.sync();
    await file.close();
    await rename(part, options.out);
    const finalInfo = { ...result.info, sha256, sizeBytes: result.bytes, state: 'READY' as const };
    await writeFile(infoPath(options.out), JSON.stringify(finalInfo, null, 2));
    await rm(partStatePath(options.out), { force: true });
    return {
      info: finalInfo,
      path: options.out,
      bytes: result.bytes,
      sha256,
      resumedFrom,
      resumes: result.resumes,
    };
  } catch (error) {
    hash.discard();
    await file.close().catch(() => undefined);
    if (corrupt) {
      // The part file cannot be trusted: the next run starts over.
      await rm(part, { force: true });
      await rm(partStatePath(options.out), { force: true });
    }
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
