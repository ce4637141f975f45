import type { SnapshotChunk } from '../generated/shardsnap/v1/SnapshotChunk';

/** A chunk on its way out, with what to do once its bytes have been copied. */
export type OutgoingChunk = SnapshotChunk & { [AFTER_SERIALIZE]?: () => void };

export const AFTER_SERIALIZE = Symbol('afterSerialize');

const COMPRESSION_NUMBERS: Record<string, number> = { COMPRESSION_NONE: 0, COMPRESSION_ZSTD: 1 };

function varintLength(value: number): number {
  let n = 1;
  while (value >= 0x80) {
    value = Math.floor(value / 128);
    n++;
  }
  return n;
}

function writeVarint(out: Buffer, pos: number, value: number): number {
  while (value >= 0x80) {
    out[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  out[pos++] = value;
  return pos;
}

/**
 * Serializes SnapshotChunk messages without the general protobuf writer: into one
 * buffer reused for every chunk (gRPC copies the result into its frame at once), after
 * which the chunk's own data buffer may be reused too. Chunks that carry `info` (the
 * first of a stream) go through the general serializer.
 */
export function chunkSerializer(
  general: (value: SnapshotChunk) => Buffer,
): (value: OutgoingChunk) => Buffer {
  let scratch = Buffer.allocUnsafeSlow(1 << 20);
  return (chunk) => {
    try {
      if (chunk.info) return general(chunk);
      const id = Buffer.from(chunk.snapshotId ?? '', 'utf8');
      const data = chunk.data as Buffer;
      const sha = Buffer.from(chunk.sha256 ?? '', 'latin1');
      const offset = Number(chunk.offset ?? 0);
      const compression = COMPRESSION_NUMBERS[String(chunk.compression ?? 'COMPRESSION_NONE')] ?? 0;
      const size =
        1 +
        varintLength(id.length) +
        id.length +
        1 +
        varintLength(offset) +
        1 +
        varintLength(data.length) +
        data.length +
        1 +
        varintLength(chunk.crc32c ?? 0) +
        1 +
        varintLength(compression) +
        1 +
        varintLength(chunk.rawLength ?? 0) +
        2 +
        1 +
        varintLength(sha.length) +
        sha.length;
      if (scratch.length < size) scratch = Buffer.allocUnsafeSlow(size);
      const out = scratch;
      let pos = 0;
      out[pos++] = 0x0a;
      pos = writeVarint(out, pos, id.length);
      pos += id.copy(out, pos);
      out[pos++] = 0x10;
      pos = writeVarint(out, pos, offset);
      out[pos++] = 0x1a;
      pos = writeVarint(out, pos, data.length);
      pos += data.copy(out, pos);
      out[pos++] = 0x20;
      pos = writeVarint(out, pos, chunk.crc32c ?? 0);
      out[pos++] = 0x28;
      pos = writeVarint(out, pos, compression);
      out[pos++] = 0x30;
      pos = writeVarint(out, pos, chunk.rawLength ?? 0);
      out[pos++] = 0x38;
      out[pos++] = chunk.last ? 1 : 0;
      out[pos++] = 0x42;
      pos = writeVarint(out, pos, sha.length);
      pos += sha.copy(out, pos);
      return out.subarray(0, pos);
    } finally {
      chunk[AFTER_SERIALIZE]?.();
    }
  };
}
