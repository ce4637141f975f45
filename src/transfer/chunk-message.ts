import type { SnapshotChunk__Output } from '../generated/shardsnap/v1/SnapshotChunk';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { ChunkCompression } from '../snapshot';
import { PieceReader, joinPieces } from '../wire/piece-reader';

/** A SnapshotChunk whose data is still the list of buffers it arrived in (unchecked). */
export interface ChunkMessage {
  offset: number;
  data: Buffer[];
  dataLength: number;
  crc32c: number;
  compression: ChunkCompression;
  rawLength: number;
  last: boolean;
  sha256: string;
  info: SnapshotInfo__Output | null;
}

const INFO_FIELD = 9;

/**
 * Decodes a SnapshotChunk held as several buffers, field by field, so its data is not
 * copied here; a message that carries `info` (the first of a stream) goes to `general`.
 */
export function readChunkMessage(
  parts: Buffer[],
  general: (bytes: Buffer) => SnapshotChunk__Output,
): ChunkMessage {
  const length = parts.reduce((sum, p) => sum + p.length, 0);
  const reader = new PieceReader(parts, length);
  let offset = 0;
  let data: Buffer[] = [];
  let crc = 0;
  let compression = 0;
  let rawLength = 0;
  let last = false;
  let sha256 = '';
  while (!reader.done) {
    const tag = reader.varint();
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === INFO_FIELD) return fromGeneral(general(joinPieces(parts)));
    if (field === 2 && wireType === 0) offset = reader.varint();
    else if (field === 3 && wireType === 2) data = reader.bytes(reader.varint());
    else if (field === 4 && wireType === 0) crc = reader.varint();
    else if (field === 5 && wireType === 0) compression = reader.varint();
    else if (field === 6 && wireType === 0) rawLength = reader.varint();
    else if (field === 7 && wireType === 0) last = reader.varint() !== 0;
    else if (field === 8 && wireType === 2)
      sha256 = joinPieces(reader.bytes(reader.varint())).toString('latin1');
    else reader.skip(wireType);
  }
  return {
    offset,
    data,
    dataLength: data.reduce((sum, p) => sum + p.length, 0),
    crc32c: crc,
    compression: compression === 1 ? 'zstd' : 'none',
    rawLength,
    last,
    sha256,
    info: null,
  };
}

function fromGeneral(chunk: SnapshotChunk__Output): ChunkMessage {
  return {
    offset: Number(chunk.offset),
    data: [chunk.data],
    dataLength: chunk.data.length,
    crc32c: chunk.crc32c,
    compression: chunk.compression === 'COMPRESSION_ZSTD' ? 'zstd' : 'none',
    rawLength: chunk.rawLength,
    last: chunk.last,
    sha256: chunk.sha256,
    info: chunk.info,
  };
}
