import type { VerifiedChunk } from '../snapshot';

/**
 * One artifact as verified chunks in order from offset 0, wherever it comes from (a node,
 * an archive). Every chunk has passed its CRC32C before it is yielded; the SHA-256 of the
 * whole is checked by whoever consumes it, against `expectedSha256` once the iteration
 * has ended.
 */
export interface ChunkSource {
  /** Where the chunks come from, for messages: `node 10.0.0.5:7420` or an archive URI. */
  readonly origin: string;
  /** The snapshot the artifact belongs to; empty until the first chunk for a new one. */
  readonly snapshotId: string;
  /** Size of the whole artifact; 0 while it is unknown (a build still running). */
  readonly totalBytes: number;
  /** Streams started again after a failure so far. */
  readonly resumes: number;
  chunks(signal?: AbortSignal): AsyncIterable<VerifiedChunk>;
  /** The hex SHA-256 of the whole artifact; known once `chunks` has ended. */
  expectedSha256(): string;
}
