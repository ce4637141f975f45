import type { Mutation, SlotRange } from '../core';
import type { ChunkCompression } from '../snapshot/chunk-codec';
import type { FetchToFileOptions } from '../transfer/fetch-to-file';

/*
 * The requests of ShardsnapClient's methods: camelCase fields mirroring the messages of
 * shardsnap.proto, with defaults for what may be left out. A method whose message has no
 * fields takes `{}` (the default).
 */

export type EmptyRequest = Record<string, never>;

export interface WriteRequest {
  mutations: readonly Mutation[];
}

export interface ReadRequest {
  keys: readonly Buffer[];
}

export interface DigestRequest {
  /** Default: every slot. */
  slots?: readonly SlotRange[];
}

/** The slots whose sizes to report (empty or absent = every slot). */
export type SlotSizesRequest = DigestRequest;

export interface CreateSnapshotRequest {
  /** Default: every slot the node owns. */
  slots?: readonly SlotRange[];
  strategy?: string;
  compression?: ChunkCompression;
  /**
   * An incremental snapshot: only what changed after this seq. OUT_OF_RANGE when the
   * node no longer holds the changes since then (take a full one instead).
   */
  sinceSeq?: number;
  /** Carried inside the artifact and its info. */
  labels?: Record<string, string>;
}

export interface GetSnapshotRequest {
  snapshotId: string;
}

export interface DeleteSnapshotRequest {
  snapshotId: string;
  /** Delete although streams read it (they finish; see DeleteSnapshotRequest). */
  force?: boolean;
}

export interface WaitReadyRequest {
  snapshotId: string;
  /** Between two GetSnapshot calls; default 50 ms. */
  pollMs?: number;
}

export interface PullRequest {
  /** host:port of the node to pull from, or an archive's `s3://…/manifest.json`. */
  source: string;
  slots?: readonly SlotRange[];
  snapshotId?: string;
  /** Seed a node that owns no slots (it then owns the snapshot's). */
  force?: boolean;
  /** Pull only the changes after this seq; the pulling node must be at exactly this seq. */
  sinceSeq?: number;
}

export interface RestoreRequest {
  /** The archive's `s3://bucket/<dir>/manifest.json`. */
  uri: string;
  force?: boolean;
}

export interface ArchiveRequest {
  snapshotId: string;
  bucket: string;
  prefix?: string;
}

export interface ListArchivesRequest {
  bucket: string;
  prefix?: string;
}

export interface DeleteArchiveRequest {
  uri: string;
}

export interface InstallFileRequest {
  /** The artifact file to push. */
  path: string;
  /** The artifact's known SHA-256 (e.g. from its `.json` sidecar), checked before the last chunk. */
  expectedSha256?: string;
  chunkSize?: number;
  compression?: ChunkCompression;
  /** Seed a node that owns no slots (it then owns the artifact's); see InstallSnapshot. */
  force?: boolean;
  /** Progress as chunks go out. */
  onProgress?: (sent: number, total: number) => void;
}

/** fetchToFile's request: where to write, and what to fetch (see FetchToFileOptions). */
export type FetchToFileRequest = Omit<FetchToFileOptions, 'signal'>;

export interface FetchRequest {
  /** Fetch this snapshot; without it a new one of `slots` is created on the node. */
  snapshotId?: string;
  slots?: readonly SlotRange[];
  strategy?: string;
  /** A snapshot created for the fetch is incremental: the changes after this seq. */
  sinceSeq?: number;
  /** Labels of a snapshot created for the fetch. */
  labels?: Record<string, string>;
  /** Compression on the wire (and of a snapshot created for the fetch). */
  compression?: ChunkCompression;
  chunkSize?: number;
  /** Resume: the first byte to fetch (the bytes before it were received earlier). */
  offset?: number;
  /**
   * With `offset`: the bytes before it, as received earlier. They are hashed first, so
   * that the SHA-256 of the whole artifact is still checked at the end.
   */
  prefix?: Uint8Array | AsyncIterable<Uint8Array>;
  /** A SHA-256 the artifact must have besides the node's (e.g. from a sidecar). */
  expectedSha256?: string;
  /** Streams started again after a dropped stream or a corrupt chunk; default 10. */
  maxRetries?: number;
}

export interface MigrateSlotsRequest {
  /** host:port of the node that owns the slots now. */
  source: string;
  slots: readonly SlotRange[];
  /** Longest write pause the handoff may cause (default 1000 ms on the node). */
  maxPauseMs?: number;
  /**
   * The migration's id, chosen by the caller so that a retry finds the migration instead
   * of starting another (1 to 64 of A-Z a-z 0-9 . _ -); default: the node picks one.
   */
  migrationId?: string;
}

export interface MigrationRequest {
  migrationId: string;
}
