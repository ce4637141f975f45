import { ErrorCodes, ErrorReasons, ShardsnapError, abortableSleep } from '../core';
import type { ArchiveProgress__Output } from '../generated/shardsnap/v1/ArchiveProgress';
import type { PullProgress__Output } from '../generated/shardsnap/v1/PullProgress';
import type { MigrationStatus } from '../migration/status';
import { type FetchToFileResult, fetchToFile } from '../transfer/fetch-to-file';
import { createSnapshot } from '../transfer/remote-snapshot';
import { type CallOptions, runCall } from '../wire/call-options';
import { Connection } from '../wire/connection';
import { mutationsToWire } from '../wire/convert';
import type { ClientSecurity } from '../wire/security';
import { grpcStream, serverStream } from '../wire/server-stream';
import { unary } from '../wire/unary';
import { fetchChunks } from './fetch';
import { installFile } from './install-file';
import { cancelMigration, getMigration, migrationEvents } from './migrate';
import type {
  ArchiveRequest,
  CreateSnapshotRequest,
  DeleteArchiveRequest,
  DeleteSnapshotRequest,
  DigestRequest,
  EmptyRequest,
  FetchRequest,
  FetchToFileRequest,
  GetSnapshotRequest,
  InstallFileRequest,
  ListArchivesRequest,
  MigrateSlotsRequest,
  MigrationRequest,
  PullRequest,
  ReadRequest,
  RestoreRequest,
  SlotSizesRequest,
  WaitReadyRequest,
  WriteRequest,
} from './requests';
import type {
  ArchiveInfo,
  ArchiveProgress,
  DigestResult,
  FetchedChunk,
  InstallResult,
  PullProgress,
  ReadValue,
  ShardStats,
  SlotSize,
  SnapshotInfo,
  Topology,
} from './responses';

export interface ClientOptions {
  security?: ClientSecurity;
  /**
   * How long a call waits for the connection to the node before it fails with
   * UNAVAILABLE naming the address; without it a call to an unreachable node fails at once.
   */
  connectTimeoutMs?: number;
}

/**
 * A typed client of one shard node. Every method takes a request object (fields as in
 * shardsnap.proto) and CallOptions (`signal`, `deadlineMs`); unary calls return promises,
 * streams are async iterables that cancel the call when the iteration stops early.
 */
export class ShardsnapClient {
  readonly connection: Connection;

  constructor(
    readonly address: string,
    options: ClientOptions = {},
  ) {
    this.connection = new Connection(address, {
      security: options.security ?? {},
      connectTimeoutMs: options.connectTimeoutMs,
    });
  }

  /** Waits until the node is connected (see Connection.ready). */
  ready(options: CallOptions = {}): Promise<void> {
    return this.connection.ready(options);
  }

  /** Applies the mutations as one batch; resolves with its sequence number. */
  async write(request: WriteRequest, options: CallOptions = {}): Promise<number> {
    const response = await unary<{ seq: number }>(
      this.connection,
      'Write',
      (callOptions, cb) =>
        this.connection.shard.Write(
          { mutations: mutationsToWire(request.mutations) },
          callOptions,
          cb,
        ),
      options,
    );
    return Number(response.seq);
  }

  async read(request: ReadRequest, options: CallOptions = {}): Promise<ReadValue[]> {
    const response = await unary<{ values: ReadValue[] }>(
      this.connection,
      'Read',
      (callOptions, cb) => this.connection.shard.Read({ keys: [...request.keys] }, callOptions, cb),
      options,
    );
    return response.values;
  }

  stats(_request: EmptyRequest = {}, options: CallOptions = {}): Promise<ShardStats> {
    return unary(
      this.connection,
      'Stats',
      (callOptions, cb) => this.connection.shard.Stats({}, callOptions, cb),
      options,
    );
  }

  digest(request: DigestRequest = {}, options: CallOptions = {}): Promise<DigestResult> {
    return unary(
      this.connection,
      'Digest',
      (callOptions, cb) =>
        this.connection.shard.Digest({ slots: [...(request.slots ?? [])] }, callOptions, cb),
      options,
    );
  }

  /**
   * The node's slot map: who owns which slots and where to dial them, as the cluster's
   * topology says (version > 0) or, outside a cluster, as the node itself knows (version 0).
   */
  topology(_request: EmptyRequest = {}, options: CallOptions = {}): Promise<Topology> {
    return unary<Topology>(
      this.connection,
      'Topology',
      (callOptions, cb) => this.connection.shard.Topology({}, callOptions, cb),
      options,
    );
  }

  /** Bytes per slot on this node (memory backend; UNIMPLEMENTED on RocksDB). */
  async slotSizes(request: SlotSizesRequest = {}, options: CallOptions = {}): Promise<SlotSize[]> {
    const answer = await unary<{ sizes: SlotSize[] }>(
      this.connection,
      'SlotSizes',
      (callOptions, cb) =>
        this.connection.shard.SlotSizes({ slots: [...(request.slots ?? [])] }, callOptions, cb),
      options,
    );
    return answer.sizes.map(({ slot, bytes }) => ({ slot, bytes }));
  }

  createSnapshot(
    request: CreateSnapshotRequest = {},
    options: CallOptions = {},
  ): Promise<SnapshotInfo> {
    return createSnapshot(this.connection, request, options);
  }

  getSnapshot(request: GetSnapshotRequest, options: CallOptions = {}): Promise<SnapshotInfo> {
    return unary(
      this.connection,
      'GetSnapshot',
      (callOptions, cb) =>
        this.connection.snapshots.GetSnapshot({ snapshotId: request.snapshotId }, callOptions, cb),
      options,
    );
  }

  async listSnapshots(
    _request: EmptyRequest = {},
    options: CallOptions = {},
  ): Promise<SnapshotInfo[]> {
    const response = await unary<{ snapshots: SnapshotInfo[] }>(
      this.connection,
      'ListSnapshots',
      (callOptions, cb) => this.connection.snapshots.ListSnapshots({}, callOptions, cb),
      options,
    );
    return response.snapshots;
  }

  async deleteSnapshot(request: DeleteSnapshotRequest, options: CallOptions = {}): Promise<void> {
    await unary(
      this.connection,
      'DeleteSnapshot',
      (callOptions, cb) =>
        this.connection.snapshots.DeleteSnapshot(
          { snapshotId: request.snapshotId, force: request.force ?? false },
          callOptions,
          cb,
        ),
      options,
    );
  }

  /** Polls until the snapshot is READY; a FAILED build rejects with SNAPSHOT_FAILED. */
  waitReady(request: WaitReadyRequest, options: CallOptions = {}): Promise<SnapshotInfo> {
    const { snapshotId } = request;
    return runCall('waitReady', options, async (scope) => {
      for (;;) {
        const info = await this.getSnapshot({ snapshotId }, scope.inner());
        if (info.state === 'READY') return info;
        if (info.state === 'FAILED') {
          throw new ShardsnapError(
            ErrorCodes.failedPrecondition,
            `snapshot ${snapshotId} failed: ${info.error}`,
            { reason: ErrorReasons.snapshotFailed, metadata: { snapshot_id: snapshotId } },
          );
        }
        await abortableSleep(request.pollMs ?? 50, scope.signal, 'waitReady');
      }
    });
  }

  /**
   * A snapshot's artifact as verified chunks (`{ offset, data }`, each CRC32C-checked, in
   * order). Without `snapshotId` a snapshot of `slots` is created for the fetch (deleted
   * once it completed). With `offset` (and `prefix`, the bytes before it) the fetch resumes.
   * After the last chunk the SHA-256 of the whole artifact is checked: the iteration then
   * throws CHECKSUM_MISMATCH instead of ending when it differs.
   */
  fetch(request: FetchRequest = {}, options: CallOptions = {}): AsyncGenerator<FetchedChunk> {
    return fetchChunks(this.connection, request, options);
  }

  /** Fetches a snapshot into a file, resuming from `<out>.part` when present. */
  fetchToFile(request: FetchToFileRequest, options: CallOptions = {}): Promise<FetchToFileResult> {
    return runCall('fetchToFile', options, async (scope) => {
      await this.connection.whenReady(scope.signal);
      return fetchToFile(this.connection, { ...request, signal: scope.signal });
    });
  }

  /** Pushes an artifact file into the node (InstallSnapshot). */
  installFile(request: InstallFileRequest, options: CallOptions = {}): Promise<InstallResult> {
    return installFile(this.connection, request, options);
  }

  /** Asks this node to pull a snapshot from `source` and install it; yields progress. */
  pull(request: PullRequest, options: CallOptions = {}): AsyncGenerator<PullProgress> {
    return serverStream<PullProgress__Output>(
      this.connection,
      'PullSnapshot',
      (callOptions) =>
        grpcStream(
          this.connection.snapshots.PullSnapshot(
            {
              source: request.source,
              slots: [...(request.slots ?? [])],
              snapshotId: request.snapshotId ?? '',
              force: request.force ?? false,
              ...(request.sinceSeq !== undefined ? { sinceSeq: request.sinceSeq } : {}),
            },
            callOptions,
          ),
        ),
      options,
    );
  }

  /** Asks this node to restore an archive (`s3://bucket/<dir>/manifest.json`); yields progress. */
  restore(request: RestoreRequest, options: CallOptions = {}): AsyncGenerator<PullProgress> {
    return this.pull({ source: request.uri, force: request.force ?? false }, options);
  }

  /**
   * Asks this node to upload a READY snapshot to its object store; yields progress, the
   * last message (`done`) with the archive's info and URI.
   */
  archive(request: ArchiveRequest, options: CallOptions = {}): AsyncGenerator<ArchiveProgress> {
    return serverStream<ArchiveProgress__Output>(
      this.connection,
      'ArchiveSnapshot',
      (callOptions) =>
        grpcStream(
          this.connection.snapshots.ArchiveSnapshot(
            {
              snapshotId: request.snapshotId,
              bucket: request.bucket,
              prefix: request.prefix ?? '',
            },
            callOptions,
          ),
        ),
      options,
    );
  }

  /** The complete archives in a bucket (under a prefix), as this node's object store sees them. */
  async listArchives(
    request: ListArchivesRequest,
    options: CallOptions = {},
  ): Promise<ArchiveInfo[]> {
    const response = await unary<{ archives: ArchiveInfo[] }>(
      this.connection,
      'ListArchives',
      (callOptions, cb) =>
        this.connection.snapshots.ListArchives(
          { bucket: request.bucket, prefix: request.prefix ?? '' },
          callOptions,
          cb,
        ),
      options,
    );
    return response.archives;
  }

  async deleteArchive(request: DeleteArchiveRequest, options: CallOptions = {}): Promise<void> {
    await unary(
      this.connection,
      'DeleteArchive',
      (callOptions, cb) =>
        this.connection.snapshots.DeleteArchive({ uri: request.uri }, callOptions, cb),
      options,
    );
  }

  /**
   * Runs a migration of `slots` from `source` to this node; yields its status as it
   * goes, the last one DONE. A FAILED or CANCELLED migration is yielded, then thrown as the
   * node's error. Stopping the iteration (or the signal) cancels the migration.
   */
  migrateSlots(
    request: MigrateSlotsRequest,
    options: CallOptions = {},
  ): AsyncGenerator<MigrationStatus> {
    return migrationEvents(this.connection, request, options);
  }

  getMigration(request: MigrationRequest, options: CallOptions = {}): Promise<MigrationStatus> {
    return getMigration(this.connection, request, options);
  }

  cancelMigration(request: MigrationRequest, options: CallOptions = {}): Promise<MigrationStatus> {
    return cancelMigration(this.connection, request, options);
  }

  close(): void {
    this.connection.close();
  }
}
