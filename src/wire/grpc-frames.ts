import { dataLoss } from '../core';

/** gRPC's message prefix: a compressed flag and a big-endian length. */
export const GRPC_PREFIX_BYTES = 5;

/** `message` with gRPC's 5-byte prefix in front (uncompressed). */
export function frameMessage(message: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(GRPC_PREFIX_BYTES + message.length);
  frame[0] = 0;
  frame.writeUInt32BE(message.length, 1);
  message.copy(frame, GRPC_PREFIX_BYTES);
  return frame;
}

/**
 * Splits the bytes of a gRPC response body into messages without joining them: each
 * message comes out as the list of views into the buffers it arrived in, so a large
 * message costs no allocation and no copy.
 */
export class GrpcFrameReader {
  private readonly prefix = Buffer.alloc(GRPC_PREFIX_BYTES);
  private prefixFill = 0;
  private left = 0;
  private parts: Buffer[] = [];

  constructor(private readonly maxMessageBytes: number) {}

  /** Feeds one received buffer; returns the messages it completed, in order. */
  push(data: Buffer): Buffer[][] {
    const done: Buffer[][] = [];
    let at = 0;
    while (at < data.length) {
      if (this.left === 0 && this.prefixFill < GRPC_PREFIX_BYTES) {
        const take = Math.min(GRPC_PREFIX_BYTES - this.prefixFill, data.length - at);
        data.copy(this.prefix, this.prefixFill, at, at + take);
        this.prefixFill += take;
        at += take;
        if (this.prefixFill < GRPC_PREFIX_BYTES) break;
        if (this.prefix[0] !== 0) throw dataLoss('compressed gRPC messages are not expected here');
        this.left = this.prefix.readUInt32BE(1);
        if (this.left > this.maxMessageBytes) {
          throw dataLoss(`gRPC message of ${this.left} bytes exceeds ${this.maxMessageBytes}`);
        }
        this.parts = [];
        if (this.left === 0) {
          this.prefixFill = 0;
          done.push([]);
        }
        continue;
      }
      const take = Math.min(this.left, data.length - at);
      this.parts.push(data.subarray(at, at + take));
      at += take;
      this.left -= take;
      if (this.left === 0) {
        this.prefixFill = 0;
        done.push(this.parts);
        this.parts = [];
      }
    }
    return done;
  }

  /** True between messages (nothing of a next message received yet). */
  get idle(): boolean {
    return this.prefixFill === 0 && this.left === 0;
  }
}
