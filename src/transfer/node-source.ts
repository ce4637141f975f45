import {
  ErrorCodes,
  ShardsnapError,
  abortableSleep,
  dataLoss,
  isShardsnapError,
  throwIfAborted,
} from '../core';
import type { FetchSnapshotRequest } from '../generated/shardsnap/v1/FetchSnapshotRequest';
import type { SnapshotChunk__Output } from '../generated/shardsnap/v1/SnapshotChunk';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import { type ChunkCompression, type VerifiedChunk, decodeChunk } from '../snapshot/chunk-codec';
import { H2Connection } from '../wire/h2-connection';
import { loadProto } from '../wire/proto';
import type { Connection } from '../wire/connection';
import { compressionToWire } from '../wire/convert';
import { fromServiceError } from '../wire/status';
import { readChunkMessage } from './chunk-message';
import type { ChunkSource } from './chunk-source';

export interface NodeFetchOptions {
  snapshotId: string;
  /** Where to start (bytes already received and verified); default 0. */
  offset?: number;
  /** Where to stop (exclusive); default the end of the artifact. */
  end?: number;
  chunkSize?: number;
  compression?: ChunkCompression;
  /** Streams started again after a dropped stream or a corrupt chunk; default 10. */
  maxRetries?: number;
  /** First delay before a retry, doubled each time (at most 5 s); default 100 ms. */
  retryDelayMs?: number;
  onInfo?: (info: SnapshotInfo__Output) => void;
  onRetry?: (error: ShardsnapError, offset: number, attempt: number) => void;
}

/**
 * Errors after which fetching again from the last verified offset can succeed (a node
 * that did not answer in time may answer the next stream).
 */
function isRetryable(error: ShardsnapError): boolean {
  return (
    error.code === ErrorCodes.unavailable ||
    error.code === ErrorCodes.deadlineExceeded ||
    error.code === ErrorCodes.dataLoss ||
    error.code === ErrorCodes.internal ||
    error.code === ErrorCodes.cancelled
  );
}

/**
 * A snapshot's artifact (or one byte range of it) fetched from a node with
 * FetchSnapshot: each chunk's offset and CRC32C are checked before it is yielded. A
 * dropped stream or a corrupt chunk is fetched again from the last verified offset, up
 * to `maxRetries` times with growing delays, so the consumer sees one gapless sequence.
 */
export class NodeFetch implements ChunkSource {
  info: SnapshotInfo__Output | undefined;
  resumes = 0;
  /** The next offset to receive: everything before it was yielded. */
  position: number;
  private sha256 = '';
  /** Buffers given back by consumers (see VerifiedChunk.release), reused for the next chunks. */
  private readonly spare: Buffer[] = [];

  constructor(
    private readonly conn: Connection,
    private readonly options: NodeFetchOptions,
  ) {
    this.position = options.offset ?? 0;
  }

  get origin(): string {
    return `node ${this.conn.address}`;
  }

  get snapshotId(): string {
    return this.options.snapshotId;
  }

  get totalBytes(): number {
    return this.info && this.info.state === 'READY' ? Number(this.info.sizeBytes) : 0;
  }

  expectedSha256(): string {
    if (!this.sha256) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `the SHA-256 of snapshot ${this.snapshotId} is known only once its last chunk arrived`,
      );
    }
    return this.sha256;
  }

  async *chunks(signal?: AbortSignal): AsyncGenerator<VerifiedChunk> {
    const { options } = this;
    const maxRetries = options.maxRetries ?? 10;
    const h2 = new H2Connection(this.conn.address, this.conn.security);
    try {
      for (;;) {
        throwIfAborted(signal);
        try {
          yield* this.stream(h2, signal);
          return;
        } catch (error) {
          const failure = isShardsnapError(error)
            ? error
            : fromServiceError(error, 'FetchSnapshot');
          if (signal?.aborted || !isRetryable(failure) || this.resumes >= maxRetries) throw failure;
          this.resumes++;
          options.onRetry?.(failure, this.position, this.resumes);
          await abortableSleep(
            Math.min(5_000, (options.retryDelayMs ?? 100) * 2 ** (this.resumes - 1)),
            signal,
            'fetch',
          );
        }
      }
    } finally {
      h2.close();
    }
  }

  /** `parts` as one buffer: the only part itself, else a copy into a spare buffer. */
  private join(
    parts: Buffer[],
    length: number,
  ): { data: Buffer; release: () => void; take?: VerifiedChunk['take'] } {
    if (parts.length === 1) return { data: parts[0] as Buffer, release: () => undefined };
    let buffer = this.spare.pop();
    if (!buffer || buffer.length < length)
      buffer = Buffer.allocUnsafeSlow(Math.max(length, 1 << 20));
    let at = 0;
    for (const part of parts) at += part.copy(buffer, at);
    const owned = buffer;
    let released = false;
    const giveBack = (returned: ArrayBuffer): void => {
      if (this.spare.length < MAX_SPARE) this.spare.push(Buffer.from(returned));
    };
    return {
      data: owned.subarray(0, length),
      release: () => {
        if (released) return;
        released = true;
        if (this.spare.length < MAX_SPARE) this.spare.push(owned);
      },
      take: () => {
        if (released) return undefined;
        released = true;
        return { buffer: owned.buffer as ArrayBuffer, giveBack };
      },
    };
  }

  private async *stream(
    h2: H2Connection,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<VerifiedChunk> {
    const { options } = this;
    const where = (offset: number): string => `snapshot=${this.snapshotId}, offset=${offset}`;
    const end = options.end;
    const { requestSerialize, responseDeserialize } = fetchMethod();
    const request = requestSerialize({
      snapshotId: this.snapshotId,
      offset: this.position,
      length: end === undefined ? 0 : end - this.position,
      chunkSize: options.chunkSize ?? 0,
      compression: compressionToWire(options.compression ?? 'none'),
    });
    const messages = h2.serverStream(FETCH_METHOD, request, {
      signal,
      maxMessageBytes: MAX_MESSAGE_BYTES,
    });
    for await (const parts of messages) {
      const chunk = readChunkMessage(parts, responseDeserialize);
      if (chunk.info) {
        this.info = chunk.info;
        options.onInfo?.(chunk.info);
      }
      if (chunk.offset !== this.position) {
        throw dataLoss(
          `chunk at offset ${chunk.offset}, expected ${this.position} [${where(chunk.offset)}]`,
        );
      }
      // One copy into a reused buffer: checking, hashing and writing 1 MiB at a time costs
      // far less than doing it for each ~16 KiB piece HTTP/2 delivered.
      const joined = this.join(chunk.data, chunk.dataLength);
      let raw: Buffer;
      try {
        raw = decodeChunk(
          {
            offset: chunk.offset,
            data: joined.data,
            crc32c: chunk.crc32c,
            compression: chunk.compression,
            rawLength: chunk.rawLength,
          },
          `snapshot=${this.snapshotId}`,
          this.snapshotId,
        );
      } catch (error) {
        joined.release();
        throw error;
      }
      if (raw !== joined.data) joined.release();
      const next = this.position + raw.length;
      if (end !== undefined && next > end) {
        throw dataLoss(`chunk runs past the end of the range (${end}) [${where(this.position)}]`);
      }
      if (chunk.last && end !== undefined && next !== end) {
        throw dataLoss(
          `stream ended at ${next}, before the end of the range (${end}) [${where(next)}]`,
        );
      }
      if (chunk.last && end === undefined && !chunk.sha256) {
        throw dataLoss(`the last chunk carries no SHA-256 [${where(next)}]`);
      }
      yield raw === joined.data
        ? { offset: this.position, data: raw, release: joined.release, take: joined.take }
        : { offset: this.position, data: raw };
      this.position = next;
      if (chunk.last) {
        this.sha256 = chunk.sha256 || this.sha256;
        return;
      }
    }
    throw new ShardsnapError(
      ErrorCodes.unavailable,
      `stream ended before the last chunk [${where(this.position)}]`,
    );
  }
}

const MAX_SPARE = 16;
const FETCH_METHOD = '/shardsnap.v1.Snapshots/FetchSnapshot';
/** Chunks are at most 16 MiB raw; zstd never makes them much larger. */
const MAX_MESSAGE_BYTES = 64 << 20;

function fetchMethod(): {
  requestSerialize: (value: FetchSnapshotRequest) => Buffer;
  responseDeserialize: (bytes: Buffer) => SnapshotChunk__Output;
} {
  const method = loadProto().shardsnap.v1.Snapshots.service.FetchSnapshot;
  return {
    requestSerialize: method.requestSerialize,
    responseDeserialize: method.responseDeserialize,
  };
}
