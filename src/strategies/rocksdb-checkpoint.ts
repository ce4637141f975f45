import { randomBytes } from 'node:crypto';
import { crc32c } from '@node-rs/crc32';
import { open, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { failedPrecondition, internal, throwIfAborted } from '../core';
import { type ArtifactFile, END_MARKER, type FilesHeader, encodeHeader } from '../snapshot';
import type { Store } from '../store';
import type { BuildRequest, PreparedBuild, SnapshotStrategy } from './strategy';

/** What a store must offer for checkpoint snapshots (the RocksDB backend does). */
export interface CheckpointSource extends Store {
  readonly dataDir: string;
  /** Creates a checkpoint (hard links, no walk of the data) and tells its seq and keys. */
  createCheckpoint(dir: string): Promise<{ seq: number; keyCount: number }>;
}

function isCheckpointSource(store: Store): store is CheckpointSource {
  return typeof (store as Partial<CheckpointSource>).createCheckpoint === 'function';
}

const PIECE = 1 << 20;

/**
 * A full snapshot of a RocksDB store as a checkpoint: `CreateCheckpoint` hard-links the
 * live SST files (cost independent of the data size), and the checkpoint's files are
 * shipped as a files artifact. The checkpoint directory is removed when the build ends,
 * however it ends.
 */
export const rocksdbCheckpoint: SnapshotStrategy = {
  name: 'rocksdb-checkpoint',
  kind: 'files',
  unsupported(store: Store, request: BuildRequest): string | undefined {
    if (!isCheckpointSource(store))
      return `rocksdb-checkpoint needs the rocksdb backend, not ${store.backend}`;
    if (!request.full)
      return 'rocksdb-checkpoint makes full snapshots only; use rocksdb-iterator for slot ranges';
    return undefined;
  },
  async prepare(store: Store): Promise<PreparedBuild> {
    if (!isCheckpointSource(store)) throw failedPrecondition('not a checkpoint source');
    const dir = join(
      store.dataDir,
      'checkpoints',
      `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`,
    );
    let released = false;
    const release = async (): Promise<void> => {
      if (released) return;
      released = true;
      await rm(dir, { recursive: true, force: true });
    };
    try {
      const { seq, keyCount } = await store.createCheckpoint(dir);
      const names = (await readdir(dir)).sort();
      const files: ArtifactFile[] = [];
      for (const name of names) files.push({ name, size: (await stat(join(dir, name))).size });
      return {
        seq,
        keyCountHint: keyCount,
        async write(out, header, signal) {
          const filesHeader: FilesHeader = { ...header, kind: 'files', key_count: keyCount, files };
          await out.append(encodeHeader(filesHeader));
          const crcs: number[] = [];
          for (const file of files) {
            crcs.push(
              await copyFile(join(dir, file.name), file.size, (piece) => out.append(piece), signal),
            );
          }
          const trailer = Buffer.allocUnsafe(8 + 4 * crcs.length);
          trailer.writeUInt32LE(END_MARKER, 0);
          trailer.writeUInt32LE(crcs.length, 4);
          crcs.forEach((crc, i) => trailer.writeUInt32LE(crc, 8 + 4 * i));
          await out.append(trailer);
          await out.append(await out.digestSoFar());
          return { keyCount };
        },
        release,
      };
    } catch (error) {
      await release();
      throw error;
    }
  },
};

/** Appends a file's bytes through `sink` and returns their CRC32C; the size must not change. */
async function copyFile(
  path: string,
  size: number,
  sink: (piece: Buffer) => Promise<void>,
  signal: AbortSignal,
): Promise<number> {
  const file = await open(path, 'r');
  try {
    let crc = 0;
    let position = 0;
    const buffer = Buffer.allocUnsafe(PIECE);
    while (position < size) {
      throwIfAborted(signal);
      const { bytesRead } = await file.read(buffer, 0, Math.min(PIECE, size - position), position);
      if (bytesRead === 0) throw internal(`checkpoint file ${path} shrank while being read`);
      const piece = buffer.subarray(0, bytesRead);
      crc = crc32c(piece, crc);
      await sink(piece);
      position += bytesRead;
    }
    return crc;
  } finally {
    await file.close();
  }
}
