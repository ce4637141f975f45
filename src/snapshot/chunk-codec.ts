import { crc32c } from '@node-rs/crc32';
import { compress } from 'zstd-napi';
import { DCtx } from 'zstd-napi/binding';
import { checksumMismatch, dataLoss, invalidArgument } from '../core';

export type ChunkCompression = 'none' | 'zstd';

export const DEFAULT_CHUNK_SIZE = 1 << 20;
export const MAX_CHUNK_SIZE = 16 << 20;
export const MIN_CHUNK_SIZE = 4 << 10;

/** Raw artifact bytes at `offset` whose CRC32C has been checked. */
export interface VerifiedChunk {
  offset: number;
  data: Buffer;
  /**
   * When present, `data` lives in a buffer its source will reuse: a consumer that is
   * done with the bytes (and keeps no view of them) calls this so no buffer is allocated
   * for the next chunk. Consumers that may keep views simply never call it.
   */
  release?: () => void;
  /**
   * When present, hands the whole buffer under `data` (which starts at its byte 0) to the
   * consumer, for example to transfer it to another thread; `data` must not be used after
   * a transfer. `giveBack` returns it (or a buffer like it) for reuse. Undefined when the
   * buffer was already released or taken.
   */
  take?: () => { buffer: ArrayBuffer; giveBack: (buffer: ArrayBuffer) => void } | undefined;
}

/** A chunk as it travels: data possibly compressed, CRC32C over the raw bytes. */
export interface EncodedChunk {
  offset: number;
  data: Buffer;
  crc32c: number;
  compression: ChunkCompression;
  rawLength: number;
}

export function checksum(raw: Buffer): number {
  return crc32c(raw);
}

export function resolveChunkSize(requested: number | undefined): number {
  if (!requested) return DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(requested) || requested < MIN_CHUNK_SIZE || requested > MAX_CHUNK_SIZE) {
    throw invalidArgument(
      `chunk_size ${requested} is outside ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE} bytes`,
    );
  }
  return requested;
}

/** `knownCrc`: the CRC32C of `raw` when it is already known (stored when it was written). */
export function encodeChunk(
  offset: number,
  raw: Buffer,
  compression: ChunkCompression,
  knownCrc?: number,
): EncodedChunk {
  const crc = knownCrc ?? checksum(raw);
  if (compression === 'zstd') {
    const packed = compress(raw, { compressionLevel: 1 });
    // Incompressible data travels raw: zstd would only add its frame overhead.
    if (packed.length < raw.length) {
      return { offset, data: packed, crc32c: crc, compression, rawLength: raw.length };
    }
  }
  return { offset, data: raw, crc32c: crc, compression: 'none', rawLength: raw.length };
}

let decompressor: DCtx | undefined;

/**
 * Decompresses into a buffer of exactly `rawLength` bytes: output beyond it is an error,
 * never an allocation, so a small chunk that claims to expand to gigabytes costs nothing.
 */
function decompressBounded(data: Buffer, rawLength: number): Buffer {
  decompressor ??= new DCtx();
  const out = Buffer.allocUnsafe(rawLength);
  const written = decompressor.decompress(out, data);
  return written === rawLength ? out : out.subarray(0, written);
}

/**
 * Returns the raw bytes of a chunk after checking length and CRC32C (DATA_LOSS otherwise;
 * reason CHECKSUM_MISMATCH with `snapshotId` and the offset when the CRC32C differs).
 */
export function decodeChunk(chunk: EncodedChunk, where: string, snapshotId?: string): Buffer {
  if (!Number.isSafeInteger(chunk.rawLength) || chunk.rawLength < 0) {
    throw invalidArgument(
      `raw_length ${chunk.rawLength} is not a length [${where}, offset=${chunk.offset}]`,
    );
  }
  if (chunk.rawLength > MAX_CHUNK_SIZE) {
    throw invalidArgument(
      `raw_length ${chunk.rawLength} is over the chunk limit of ${MAX_CHUNK_SIZE} bytes [${where}, offset=${chunk.offset}]`,
    );
  }
  let raw: Buffer;
  if (chunk.compression === 'zstd') {
    try {
      raw = decompressBounded(chunk.data, chunk.rawLength);
    } catch (cause) {
      throw dataLoss(`chunk does not decompress [${where}, offset=${chunk.offset}]`, cause);
    }
  } else {
    raw = chunk.data;
  }
  if (raw.length !== chunk.rawLength) {
    throw dataLoss(
      `chunk length ${raw.length} differs from raw_length ${chunk.rawLength} [${where}, offset=${chunk.offset}]`,
    );
  }
  const crc = checksum(raw);
  if (crc !== chunk.crc32c) {
    throw checksumMismatch(
      `chunk CRC32C mismatch: got ${crc}, expected ${chunk.crc32c} [${where}, offset=${chunk.offset}]`,
      { snapshotId, offset: chunk.offset },
    );
  }
  return raw;
}
