import { mkdir, stat } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import pino, { type Logger } from 'pino';
import { invalidArgument } from '../core';
import { SnapshotCatalog, installArtifactFile } from '../snapshot';
import { type Store, openStore } from '../store';
import { type StrategyRegistry, defaultStrategies } from '../strategies';
import { SERVER_OPTIONS, loadProto } from '../wire/proto';
import { type NodeConfig, parseHostPort, resolveConfig } from './config';
import type { NodeContext } from './node-context';
import { shardService } from './shard-service';
import { chunkSerializer } from './chunk-serializer';
import { snapshotService } from './snapshot-service';

export interface StartOptions extends Partial<NodeConfig> {
  dataDir: string;
  logger?: Logger;
  strategies?: StrategyRegistry;
}

/** A running shard node: a store, its snapshot catalog and the gRPC server in front. */
export class ShardNode implements NodeContext {
  readonly startedAtMs = Date.now();
  private stopped = false;

  private constructor(
    readonly config: NodeConfig,
    readonly store: Store,
    readonly catalog: SnapshotCatalog,
    readonly strategies: StrategyRegistry,
    readonly logger: Logger,
    private readonly server: grpc.Server,
    /** The address clients use, with the port actually bound. */
    readonly address: string,
  ) {}

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
    try {
      await catalog.load();
      const strategies = options.strategies ?? defaultStrategies();
      const server = new grpc.Server(SERVER_OPTIONS);
      const { host } = parseHostPort(config.listen);
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(config.listen, grpc.ServerCredentials.createInsecure(), (error, bound) =>
          error ? reject(error) : resolve(bound),
        );
      });
      const node = new ShardNode(
        config,
        store,
        catalog,
        strategies,
        logger,
        server,
        `${host}:${port}`,
      );
      const hooks = {
        onError: (error: unknown, method: string) =>
          logger.debug({ err: error, method }, 'call failed'),
      };
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
        snapshotService(node, hooks),
      );
      logger.info(
        {
          address: node.address,
          backend: config.backend,
          dataDir: config.dataDir,
          snapshots: catalog.list().length,
        },
        'node started',
      );
      return node;
    } catch (error) {
      await catalog.close();
      await store.close();
      throw error;
    }
  }

  /** Stops accepting calls, waits up to `graceMs` for running ones, then closes everything. */
  async stop(graceMs = 2_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const builds = this.catalog.close();
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
    await this.store.close();
  }
}

async function restoreKind(path: string): Promise<'dir' | 'file'> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw invalidArgument(`--restore-from ${path}: no such file or directory`);
  return info.isDirectory() ? 'dir' : 'file';
}
