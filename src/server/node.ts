import { randomBytes } from 'node:crypto';
import { mkdir, stat } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import {
  type ArchiveSchedule,
  ArchiveScheduler,
  type ArchiveTargets,
  S3Targets,
  resolveS3Settings,
} from '../archive';
import { ChangeLog } from '../changes';
import { MAX_SLOT, invalidArgument } from '../core';
import { MigrationRegistry, type MigrationTuning, SourceHandoffs } from '../migration';
import { Ownership, recoverOwnership } from '../ownership';
import { startBuild } from '../build';
import { SnapshotCatalog, installArtifactFile } from '../snapshot';
import { type Store, openStore } from '../store';
import { type StrategyRegistry, defaultStrategies } from '../strategies';
import { SERVER_OPTIONS, loadProto } from '../wire/proto';
import { widenReceiveWindows } from './receive-windows';
import { enableSelfFraming } from './self-framing';
import { type NodeConfig, parseHostPort, resolveConfig } from './config';
import type { NodeContext } from './node-context';
import { shardService } from './shard-service';
import { chunkSerializer } from './chunk-serializer';
import { addIntrospection } from './introspection';
import { migrationService } from './migration-service';
import { snapshotService } from './snapshot-service';

export interface StartOptions extends Partial<NodeConfig> {
  dataDir: string;
  logger?: Logger;
  strategies?: StrategyRegistry;
  /** Where archives go; default: an S3 client from `s3` and the env (closed with the node). */
  archiveTargets?: ArchiveTargets;
  /** Retry counts and buffer sizes of migrations (tests shrink them). */
  migrationTuning?: Partial<MigrationTuning>;
}

/** A running shard node: a store, its snapshot catalog and the gRPC server in front. */
export class ShardNode implements NodeContext {
  readonly startedAtMs = Date.now();
  readonly incarnation = randomBytes(8).toString('hex');
  private stopped = false;
  /** Cleanup left by a crash (see recoverOwnership); stop() waits for it before closing the store. */
  private recovery: Promise<void> = Promise.resolve();
  private scheduler: ArchiveScheduler | undefined;
  /** Migrations this node runs as the target, and handoffs it serves as the source. */
  migrations!: MigrationRegistry;
  handoffs!: SourceHandoffs;

  private introspection: { notServing: () => void } | undefined;

  private constructor(
    readonly config: NodeConfig,
    readonly store: Store,
    readonly ownership: Ownership,
    readonly catalog: SnapshotCatalog,
    readonly strategies: StrategyRegistry,
    readonly logger: Logger,
    private readonly server: grpc.Server,
    /** The address clients use, with the port actually bound. */
    readonly address: string,
    /** The object store of archives. */
    readonly archives: ArchiveTargets,
    private readonly ownsArchives: boolean,
    readonly changeLog: ChangeLog,
    private readonly unsubscribeChanges: () => void,
  ) {}

  /** The archive schedule of `serve --archive-every`, when configured. */
  get archiveScheduler(): ArchiveScheduler | undefined {
    return this.scheduler;
  }

  static async start(options: StartOptions): Promise<ShardNode> {
    const config = resolveConfig(options);
    const logger = options.logger ?? pino({ level: config.logLevel }, pino.destination(2));
    await mkdir(config.dataDir, { recursive: true });
    const restore = config.restoreFrom ? await restoreKind(config.restoreFrom) : undefined;
    const store = await openStore(config.backend, {
      dataDir: config.dataDir,
      ...(restore === 'dir' ? { restoreDir: config.restoreFrom } : {}),
    });
    if (restore === 'file' && config.restoreFrom) {
      try {
        const outcome = await installArtifactFile(store, config.restoreFrom);
        logger.info({ ...outcome, from: config.restoreFrom }, 'restored from artifact');
      } catch (error) {
        await store.close();
        throw error;
      }
    }
    const catalog = new SnapshotCatalog({
      dataDir: config.dataDir,
      ttlMs: config.snapshotTtlMs,
      maxConcurrentBuilds: config.maxConcurrentBuilds,
      keepRecent: config.keepRecent,
      onError: (err, context) => logger.warn({ err }, context),
    });
    const ownsArchives = !options.archiveTargets;
    let archives: ArchiveTargets | undefined;
    try {
      archives =
        options.archiveTargets ??
        new S3Targets(resolveS3Settings(config.s3), (message, err) =>
          logger.warn({ err }, message),
        );
      const ownership = await Ownership.load(config.dataDir, config.slots);
      await catalog.load();
      const strategies = options.strategies ?? defaultStrategies();
      // Before anything can write: the log must see every change after its start seq.
      const changeLog = new ChangeLog({
        maxBytes: config.changeLogBytes,
        startSeq: (await store.stats()).seq,
      });
      const unsubscribeChanges = store.onChange((change) => changeLog.append(change));
      const server = new grpc.Server(SERVER_OPTIONS);
      const { host } = parseHostPort(config.listen);
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(config.listen, grpc.ServerCredentials.createInsecure(), (error, bound) =>
          error ? reject(error) : resolve(bound),
        );
      });
      if (!widenReceiveWindows(server)) {
        logger.warn('could not size the HTTP/2 receive windows; uploads to this node will be slow');
      }
      if (!enableSelfFraming()) {
        logger.warn(
          'could not frame snapshot chunks in place; fetches from this node allocate per chunk',
        );
      }
      const node = new ShardNode(
        config,
        store,
        ownership,
        catalog,
        strategies,
        logger,
        server,
        `${host}:${port}`,
        archives,
        ownsArchives,
        changeLog,
        unsubscribeChanges,
      );
      const hooks = {
        onError: (error: unknown, method: string) =>
          logger.debug({ err: error, method }, 'call failed'),
      };
      node.handoffs = new SourceHandoffs({
        store,
        ownership,
        onError: (err, context) => logger.warn({ err }, context),
        onInfo: (context, message) => logger.info(context, message),
      });
      node.migrations = new MigrationRegistry({
        store,
        ownership,
        address: node.address,
        logger,
        ...(options.migrationTuning ? { tuning: options.migrationTuning } : {}),
      });
      const proto = loadProto().shardsnap.v1;
      server.addService(proto.Shard.service, shardService(node, hooks));
      const snapshots = proto.Snapshots.service;
      server.addService(
        {
          ...snapshots,
          FetchSnapshot: {
            ...snapshots.FetchSnapshot,
            responseSerialize: chunkSerializer(snapshots.FetchSnapshot.responseSerialize),
          },
        },
        snapshotService(node, hooks, archives),
      );
      server.addService(proto.Migration.service, migrationService(node, hooks));
      node.introspection = addIntrospection(server);
      if (config.archive) node.startArchiving(config.archive);
      logger.info(
        {
          address: node.address,
          backend: config.backend,
          dataDir: config.dataDir,
          snapshots: catalog.list().length,
        },
        'node started',
      );
      node.migrations.recover();
      node.recovery = recoverOwnership({
        store,
        ownership,
        logger,
        stopping: () => node.stopped,
      });
      return node;
    } catch (error) {
      if (ownsArchives) archives?.close();
      await catalog.close();
      await store.close();
      throw error;
    }
  }

  private startArchiving(schedule: ArchiveSchedule): void {
    const full = [{ start: 0, end: MAX_SLOT }];
    this.scheduler = new ArchiveScheduler(schedule, {
      catalog: this.catalog,
      targets: this.archives,
      nodeId: this.config.nodeId,
      currentSeq: async () => (await this.store.stats()).seq,
      createFullSnapshot: () =>
        startBuild(
          {
            store: this.store,
            catalog: this.catalog,
            nodeId: this.config.nodeId,
            onError: (err, context) => this.logger.warn({ err }, context),
          },
          {
            strategy: this.strategies.choose(this.store, { slots: full, full: true }),
            slots: full,
            full: true,
            compression: 'none',
            chunkSize: this.config.chunkSize,
          },
        ),
      log: this.logger,
    });
    this.scheduler.start();
  }

  /** Stops accepting calls, waits up to `graceMs` for running ones, then closes everything. */
  async stop(graceMs = 2_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.introspection?.notServing();
    // An upload in flight is aborted (and its multipart upload with it) before anything closes.
    await this.scheduler?.stop(graceMs);
    // Running migrations are cancelled (the source keeps their slots); pauses served end.
    await this.migrations.close();
    await this.handoffs.close();
    const builds = this.catalog.close();
    // Change streams never end by themselves: ended here, they do not hold up the shutdown.
    this.changeLog.close();
    this.unsubscribeChanges();
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await builds;
    await this.recovery;
    await this.store.close();
    if (this.ownsArchives) this.archives.close();
  }
}

async function restoreKind(path: string): Promise<'dir' | 'file'> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw invalidArgument(`--restore-from ${path}: no such file or directory`);
  return info.isDirectory() ? 'dir' : 'file';
}
