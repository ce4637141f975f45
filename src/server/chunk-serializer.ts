import type { SnapshotChunk } from '../generated/shardsnap/v1/SnapshotChunk';
import { GRPC_PREFIX_BYTES } from '../wire/grpc-frames';

/** A chunk on its way out, with what to do once its bytes have been copied. */
export type OutgoingChunk = SnapshotChunk & {
  [AFTER_SERIALIZE]?: () => void;
  /** Where to frame the message (see `FramePool`); a fresh buffer when absent. */
  [FRAME_BUFFER]?: Buffer;
};

export const AFTER_SERIALIZE = Symbol('afterSerialize');
export const FRAME_BUFFER = Symbol('frameBuffer');
/** On a serializer: a function that returns the whole gRPC frame (5-byte prefix included). */
export const FRAMES_ITSELF = Symbol.for('shardsnap.framesItself');

export type SelfFramingSerializer = ((value: OutgoingChunk) => Buffer) & {
  [FRAMES_ITSELF]: (value: OutgoingChunk) => Buffer;
};

/**
 * Frame buffers of one FetchSnapshot call, used in turn. grpc-js frames a stream's next
 * message only once the write of the previous one has completed (its writable calls
 * `_write` one at a time), so at most two frames of a call are alive at once: four in
 * turn leave a margin. A frame reused too early would still be caught by the receiver,
 * since the chunk's CRC32C is computed from the data before framing.
 */
export class FramePool {
  private readonly frames: Buffer[] = [];
  private next = 0;

  constructor(
    private readonly frameBytes: number,
    private readonly count = 4,
  ) {}

  take(): Buffer {
    let frame = this.frames[this.next];
    if (!frame) {
      frame = Buffer.allocUnsafeSlow(this.frameBytes);
      this.frames[this.next] = frame;
    }
    this.next = (this.next + 1) % this.count;
    return frame;
  }
}

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

/** Bytes of the protobuf encoding of a chunk without `info`. */
function encodedLength(chunk: OutgoingChunk, id: Buffer, sha: Buffer, compression: number): number {
  const data = chunk.data as Buffer;
  return (
    1 +
    varintLength(id.length) +
    id.length +
    1 +
    varintLength(Number(chunk.offset ?? 0)) +
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
    sha.length
  );
}

/** Writes the protobuf encoding of a chunk without `info` at `pos`; returns the end. */
function encodeInto(
  out: Buffer,
  pos: number,
  chunk: OutgoingChunk,
  id: Buffer,
  sha: Buffer,
  compression: number,
): number {
  const data = chunk.data as Buffer;
  out[pos++] = 0x0a;
  pos = writeVarint(out, pos, id.length);
  pos += id.copy(out, pos);
  out[pos++] = 0x10;
  pos = writeVarint(out, pos, Number(chunk.offset ?? 0));
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
  return pos;
}

/**
 * Serializes SnapshotChunk messages without the general protobuf writer. As a plain
 * serializer it writes into one buffer reused for every chunk (gRPC copies the result
 * into its frame at once). Its `FRAMES_ITSELF` form writes the whole gRPC frame into the
 * chunk's frame buffer, so no buffer is allocated per chunk (see `selfFraming.ts`).
 * Either way the chunk's own data buffer may be reused once this returns. Chunks that
 * carry `info` (the first of a stream) go through the general serializer.
 */
export function chunkSerializer(general: (value: SnapshotChunk) => Buffer): SelfFramingSerializer {
  let scratch = Buffer.allocUnsafeSlow(1 << 20);
  const fields = (chunk: OutgoingChunk): [Buffer, Buffer, number] => [
    Buffer.from(chunk.snapshotId ?? '', 'utf8'),
    Buffer.from(chunk.sha256 ?? '', 'latin1'),
    COMPRESSION_NUMBERS[String(chunk.compression ?? 'COMPRESSION_NONE')] ?? 0,
  ];
  const serialize = (chunk: OutgoingChunk): Buffer => {
    try {
      if (chunk.info) return general(chunk);
      const [id, sha, compression] = fields(chunk);
      const size = encodedLength(chunk, id, sha, compression);
      if (scratch.length < size) scratch = Buffer.allocUnsafeSlow(size);
      return scratch.subarray(0, encodeInto(scratch, 0, chunk, id, sha, compression));
    } finally {
      chunk[AFTER_SERIALIZE]?.();
    }
  };
  const frame = (chunk: OutgoingChunk): Buffer => {
    try {
      let out: Buffer;
      let end: number;
      if (chunk.info) {
        const message = general(chunk);
        out = Buffer.allocUnsafe(message.length + GRPC_PREFIX_BYTES);
        end = GRPC_PREFIX_BYTES + message.copy(out, GRPC_PREFIX_BYTES);
      } else {
        const [id, sha, compression] = fields(chunk);
        const size = encodedLength(chunk, id, sha, compression) + GRPC_PREFIX_BYTES;
        const given = chunk[FRAME_BUFFER];
        out = given && given.length >= size ? given : Buffer.allocUnsafe(size);
        end = encodeInto(out, GRPC_PREFIX_BYTES, chunk, id, sha, compression);
      }
      out[0] = 0;
      out.writeUInt32BE(end - GRPC_PREFIX_BYTES, 1);
      return out.subarray(0, end);
    } finally {
      chunk[AFTER_SERIALIZE]?.();
    }
  };
  return Object.assign(serialize, { [FRAMES_ITSELF]: frame });
}
