import type { Mutation, SlotRange } from '../core';
import type { ArchiveInfo__Output } from '../generated/shardsnap/v1/ArchiveInfo';
import type { ArchiveProgress__Output } from '../generated/shardsnap/v1/ArchiveProgress';
import type { DigestResponse__Output } from '../generated/shardsnap/v1/DigestResponse';
import type { PullProgress__Output } from '../generated/shardsnap/v1/PullProgress';
import type { ShardStats__Output } from '../generated/shardsnap/v1/ShardStats';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { Value__Output } from '../generated/shardsnap/v1/Value';
import { mutationsToWire } from '../wire/convert';
import { fromServiceError } from '../wire/status';
import { Connection, call } from '../wire/connection';
import type { ClientSecurity } from '../wire/security';
import {
  type FetchToFileOptions,
  type FetchToFileResult,
  fetchToFile,
} from '../transfer/fetch-to-file';
import { type InstallFileOptions, installFile } from './install-file';
import { type CreateSnapshotOptions, createSnapshot } from '../transfer/remote-snapshot';

/** A typed, promise-based client of one shard node. */
export class ShardsnapClient {
  readonly connection: Connection;

  constructor(
    readonly address: string,
    options: { security?: ClientSecurity } = {},
  ) {
    this.connection = new Connection(address, { security: options.security ?? {} });
  }

  async write(mutations: readonly Mutation[], signal?: AbortSignal): Promise<number> {
    const response = await call<{ seq: number }>(
      'Write',
      (cb) => this.connection.shard.Write({ mutations: mutationsToWire(mutations) }, cb),
      signal,
    );
    return Number(response.seq);
  }

  async read(keys: readonly Buffer[]): Promise<Value__Output[]> {
    const response = await call<{ values: Value__Output[] }>('Read', (cb) =>
      this.connection.shard.Read({ keys: [...keys] }, cb),
    );
    return response.values;
  }

  stats(): Promise<ShardStats__Output> {
    return call('Stats', (cb) => this.connection.shard.Stats({}, cb));
  }

  digest(slots: readonly SlotRange[] = []): Promise<DigestResponse__Output> {
    return call('Digest', (cb) => this.connection.shard.Digest({ slots: [...slots] }, cb));
  }

  createSnapshot(options: CreateSnapshotOptions = {}): Promise<SnapshotInfo__Output> {
    return createSnapshot(this.connection, options);
  }

  getSnapshot(id: string): Promise<SnapshotInfo__Output> {
    return call('GetSnapshot', (cb) => this.connection.snapshots.GetSnapshot({ id }, cb));
  }

  async listSnapshots(): Promise<SnapshotInfo__Output[]> {
    const response = await call<{ snapshots: SnapshotInfo__Output[] }>('ListSnapshots', (cb) =>
      this.connection.snapshots.ListSnapshots({}, cb),
    );
    return response.snapshots;
  }

  /** `force`: delete although streams read it (they finish; see DeleteSnapshotRequest). */
  async deleteSnapshot(id: string, options: { force?: boolean } = {}): Promise<void> {
    await call('DeleteSnapshot', (cb) =>
      this.connection.snapshots.DeleteSnapshot({ id, force: options.force ?? false }, cb),
    );
  }

  /** Polls until the snapshot is READY (or FAILED, which throws). */
  async waitReady(id: string, signal?: AbortSignal, pollMs = 50): Promise<SnapshotInfo__Output> {
    for (;;) {
      const info = await this.getSnapshot(id);
      if (info.state === 'READY') return info;
      if (info.state === 'FAILED') throw new Error(`snapshot ${id} failed: ${info.error}`);
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
  }

  /** Fetches a snapshot into a file, resuming from `<out>.part` when present. */
  fetchToFile(options: FetchToFileOptions): Promise<FetchToFileResult> {
    return fetchToFile(this.connection, options);
  }

  installFile(path: string, options?: InstallFileOptions) {
    return installFile(this.connection, path, options);
  }

  /** Asks this node to pull a snapshot from `source` and install it; yields progress. */
  async *pull(
    request: { source: string; slots?: SlotRange[]; snapshotId?: string; force?: boolean },
    signal?: AbortSignal,
  ): AsyncGenerator<PullProgress__Output> {
    const stream = this.connection.snapshots.PullSnapshot({
      source: request.source,
      slots: request.slots ?? [],
      snapshotId: request.snapshotId ?? '',
      force: request.force ?? false,
    });
    const onAbort = (): void => stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const progress of stream as AsyncIterable<PullProgress__Output>) yield progress;
    } catch (error) {
      throw fromServiceError(error, 'PullSnapshot');
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  /**
   * Asks this node to upload a READY snapshot to its object store; yields progress, the
   * last message (`done`) with the archive's info and URI.
   */
  async *archive(
    request: { snapshotId: string; bucket: string; prefix?: string },
    signal?: AbortSignal,
  ): AsyncGenerator<ArchiveProgress__Output> {
    const stream = this.connection.snapshots.ArchiveSnapshot({
      snapshotId: request.snapshotId,
      bucket: request.bucket,
      prefix: request.prefix ?? '',
    });
    const onAbort = (): void => stream.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      for await (const progress of stream as AsyncIterable<ArchiveProgress__Output>) yield progress;
    } catch (error) {
      throw fromServiceError(error, 'ArchiveSnapshot');
    } finally {
      signal?.removeEventListener('abort', onAbort);
      stream.cancel();
    }
  }

  /** The complete archives in a bucket (under a prefix), as this node's object store sees them. */
  async listArchives(
    request: { bucket: string; prefix?: string },
    signal?: AbortSignal,
  ): Promise<ArchiveInfo__Output[]> {
    const response = await call<{ archives: ArchiveInfo__Output[] }>(
      'ListArchives',
      (cb) =>
        this.connection.snapshots.ListArchives(
          { bucket: request.bucket, prefix: request.prefix ?? '' },
          cb,
        ),
      signal,
    );
    return response.archives;
  }

  async deleteArchive(uri: string, signal?: AbortSignal): Promise<void> {
    await call(
      'DeleteArchive',
      (cb) => this.connection.snapshots.DeleteArchive({ uri }, cb),
      signal,
    );
  }

  /** Asks this node to restore an archive (`s3://bucket/<dir>/manifest.json`); yields progress. */
  restore(
    uri: string,
    signal?: AbortSignal,
    options: { force?: boolean } = {},
  ): AsyncGenerator<PullProgress__Output> {
    return this.pull({ source: uri, force: options.force ?? false }, signal);
  }

  close(): void {
    this.connection.close();
  }
}
