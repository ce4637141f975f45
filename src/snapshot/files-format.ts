import { crc32c } from '@node-rs/crc32';
import { createHash, type Hash } from 'node:crypto';
import { checksumMismatch, dataLoss } from '../core';
import { type ArtifactHeader, END_MARKER, tryDecodeHeader } from './format';

/**
 * The files artifact, version 1 (docs/FORMAT.md): a RocksDB checkpoint as one byte
 * stream.
 *
 *   magic "SSNAPv1\n" | u32 header_len | header JSON with `files: [{name, size}]`
 *   the bytes of every file, in header order
 *   trailer: u32 0xFFFFFFFF | u32 file_count | file_count × u32 crc32c | 32-byte SHA-256
 *            of every byte before it
 */
export interface ArtifactFile {
  name: string;
  size: number;
}

export interface FilesHeader extends ArtifactHeader {
  kind: 'files';
  files: ArtifactFile[];
}

export const filesTrailerBytes = (fileCount: number): number => 4 + 4 + 4 * fileCount + 32;

const SAFE_NAME = /^[A-Za-z0-9._-]{1,255}$/;

export function checkFileList(files: unknown): ArtifactFile[] {
  if (!Array.isArray(files)) throw dataLoss('files artifact header has no file list');
  return files.map((f: unknown, i) => {
    const { name, size } = (f ?? {}) as { name?: unknown; size?: unknown };
    if (typeof name !== 'string' || !SAFE_NAME.test(name) || name === '.' || name === '..') {
      throw dataLoss(`files artifact entry ${i} has an unsafe name`);
    }
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw dataLoss(`files artifact entry ${i} (${name}) has a bad size`);
    }
    return { name, size };
  });
}

/**
 * Incremental parser of a files artifact. `push` hands each piece of each file to
 * `onData` in order; `finish` checks the per-file CRC32Cs, the trailer and the inner
 * SHA-256.
 */
export class FilesDecoder {
  private buffered: Buffer = Buffer.alloc(0);
  private headerValue: FilesHeader | undefined;
  private files: ArtifactFile[] = [];
  private fileIndex = 0;
  private fileOffset = 0;
  private crcs: number[] = [];
  private readonly hash: Hash = createHash('sha256');
  private trailer: Buffer | undefined;

  constructor(
    private readonly onData: (file: ArtifactFile, index: number, data: Buffer) => Promise<void>,
  ) {}

  get header(): FilesHeader | undefined {
    return this.headerValue;
  }

  async push(bytes: Buffer): Promise<void> {
    let piece = bytes;
    if (!this.headerValue) {
      this.buffered = Buffer.concat([this.buffered, piece]);
      const parsed = tryDecodeHeader(this.buffered);
      if (!parsed) return;
      if (parsed.header.kind !== 'files')
        throw dataLoss(`expected a files artifact, got ${parsed.header.kind}`);
      this.headerValue = parsed.header as FilesHeader;
      this.files = checkFileList(this.headerValue.files);
      this.crcs = this.files.map(() => 0);
      this.hash.update(this.buffered.subarray(0, parsed.length));
      piece = this.buffered.subarray(parsed.length);
      this.buffered = Buffer.alloc(0);
      this.skipEmptyFiles();
    }
    while (piece.length > 0 && this.fileIndex < this.files.length) {
      const file = this.files[this.fileIndex] as ArtifactFile;
      const take = Math.min(piece.length, file.size - this.fileOffset);
      const data = piece.subarray(0, take);
      this.hash.update(data);
      this.crcs[this.fileIndex] = crc32c(data, this.crcs[this.fileIndex]);
      await this.onData(file, this.fileIndex, data);
      this.fileOffset += take;
      piece = piece.subarray(take);
      if (this.fileOffset === file.size) {
        this.fileIndex++;
        this.fileOffset = 0;
        this.skipEmptyFiles();
      }
    }
    if (piece.length > 0) {
      this.trailer = this.trailer ? Buffer.concat([this.trailer, piece]) : Buffer.from(piece);
      if (this.trailer.length > filesTrailerBytes(this.files.length)) {
        throw dataLoss('bytes after the files artifact trailer');
      }
    }
  }

  private skipEmptyFiles(): void {
    while (this.fileIndex < this.files.length && this.files[this.fileIndex]?.size === 0)
      this.fileIndex++;
  }

  finish(): FilesHeader {
    const header = this.headerValue;
    if (!header) throw dataLoss('files artifact ended before its header');
    const expected = filesTrailerBytes(this.files.length);
    const trailer = this.trailer;
    if (this.fileIndex < this.files.length || !trailer || trailer.length !== expected) {
      throw dataLoss('files artifact ended early');
    }
    if (trailer.readUInt32LE(0) !== END_MARKER || trailer.readUInt32LE(4) !== this.files.length) {
      throw dataLoss('files artifact trailer is malformed');
    }
    this.files.forEach((file, i) => {
      if (trailer.readUInt32LE(8 + 4 * i) !== this.crcs[i]) {
        throw checksumMismatch(`CRC32C mismatch in file ${file.name} of the files artifact`, {
          snapshotId: header.snapshot_id,
          offset: 0,
        });
      }
    });
    this.hash.update(trailer.subarray(0, expected - 32));
    if (!this.hash.digest().equals(trailer.subarray(expected - 32))) {
      throw dataLoss('files artifact inner SHA-256 does not match its contents');
    }
    return header;
  }
}
