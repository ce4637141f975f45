import { randomBytes } from 'node:crypto';
import { hostname, totalmem } from 'node:os';
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
import { MAX_SLOT, invalidArgument, shuttingDown } from '../core';
import type { ClientSecurity } from '../wire/security';
import { MigrationRegistry, type MigrationTuning, SourceHandoffs } from '../migration';
import { Ownership, recoverOwnership } from '../ownership';
import { buildOn } from './build-context';
import { SnapshotCatalog, installArtifactFile } from '../snapshot';
import type { Store } from '../store';
import { openNodeStore } from '../durability';
import { type StrategyRegistry, defaultStrategies } from '../strategies';
import { SERVER_OPTIONS, loadProto } from '../wire/proto';
import { widenReceiveWindows } from './receive-windows';
import { enableSelfFraming } from './self-framing';
import { type NodeConfig, isWildcardHost, parseHostPort, resolveConfig } from './config';
import type { CallHooks } from './calls';
import { logCallFailure } from './call-log';
import { NodeMetrics } from './metrics';
import { type MetricsEndpoint, serveMetrics } from './metrics-http';
import type { PeerPolicy } from './security/peer-policy';
import { type NodeSecurity, loadNodeSecurity } from './security/node-security';
import { type TransferLimits, transferLimits } from './transfer-limits';
import type { Transfers } from './transfers';
import type { NodeContext } from './node-context';
import { shardService } from './shard-service';
import { type ClusterIdentity, ClusterMember, checkFirstJoin, clusterIdentity } from '../cluster';
import { type TopologyAnswer, standaloneTopology } from './topology-answer';
import { chunkSerializer } from './chunk-serializer';
import { addIntrospection } from './introspection';
import { migrationService } from './migration-service';
import { snapshotService } from './snapshot-service';

/** After the transfers' grace, how long the rest of a shutdown waits for calls to end. */
const CLOSE_WAIT_MS = 2_000;

/** Calls that start a snapshot build: refused once the node is stopping. */
const BUILDS = new Set(['CreateSnapshot', 'FetchSnapshot', 'PullSnapshot', 'MigrateSlots']);

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
  stopped = false;
  private stopping: Promise<void> | undefined;
  /** Cleanup left by a crash (see recoverOwnership); stop() waits for it before closing the store. */
  private recovery: Promise<void> = Promise.resolve();
  private scheduler: ArchiveScheduler | undefined;
  /** Migrations this node runs as the target, and handoffs it serves as the source. */
  migrations!: MigrationRegistry;
  handoffs!: SourceHandoffs;

  private introspection: { notServing: () => void } | undefined;
  /** The node's Prometheus metrics (served when `metricsListen` is set). */
  metrics!: NodeMetrics;
  private metricsEndpoint: MetricsEndpoint | undefined;
  private member: ClusterMember | undefined;

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
    private readonly security: NodeSecurity,
    private readonly limits: TransferLimits,
  ) {}

  get transfers(): Transfers {
    return this.limits.transfers;
  }

  get peer(): ClientSecurity {
    return this.security.peer;
  }

  get peers(): PeerPolicy | undefined {
    return this.security.peers;
  }

  /** host:port the metrics endpoint is bound to (when `metricsListen` is set). */
  get metricsAddress(): string | undefined {
    return this.metricsEndpoint?.address;
  }

  recordWrite(seconds: number): void {
    this.metrics.writeLatency(seconds);
    this.limits.writeLatencies?.record(seconds * 1000);
  }

  topology(): TopologyAnswer {
    const own = standaloneTopology({
      nodeId: this.config.nodeId,
      address: this.address,
      ownership: this.ownership,
    });
    // Before etcd has answered (a restart while it is down), the node's own view is the best.
    if (!this.member || this.member.version === 0) return own;
    // In a cluster the map is the topology's; what this node serves right now is its own.
    const view = this.member.view();
    return { ...own, version: view.version, cluster: view.cluster, slots: view.slots };
  }

  /** The node's membership of a cluster (`--etcd`), when it has one. */
  get cluster(): ClusterMember | undefined {
    return this.member;
  }

  /** The archive schedule of `serve --archive-every`, when configured. */
  get archiveScheduler(): ArchiveScheduler | undefined {
    return this.scheduler;
  }

  static async start(options: StartOptions): Promise<ShardNode> {
    const config = resolveConfig(options);
    let identity: ClusterIdentity | undefined;
    if (config.cluster) {
      // The topology names nodes by id: in a cluster the id is the data dir's, for good.
      await mkdir(config.dataDir, { recursive: true });
      identity = await clusterIdentity(config.dataDir, config.cluster.name, options.nodeId);
      config.nodeId = identity.nodeId;
    }
    const logger = (options.logger ?? pino({ level: config.logLevel }, pino.destination(2))).child({
      nodeId: config.nodeId,
    });
    // Bad certificate, key or token files fail the start before anything is opened.
    // Refusals are counted here and logged with the call's failure (see logCallFailure).
    const security = await loadNodeSecurity(config, (reason) => node?.metrics?.rejected(reason));
    // Assigned once the node exists; the callbacks above and below only run after that.
    let node: ShardNode | undefined;
    await mkdir(config.dataDir, { recursive: true });
    const restore = config.restoreFrom ? await restoreKind(config.restoreFrom) : undefined;
    const store = await openNodeStore(config.backend, {
      dataDir: config.dataDir,
      ...(restore === 'dir' ? { restoreDir: config.restoreFrom } : {}),
      ...(config.walFsync === 'off'
        ? {}
        : {
            durability: {
              fsync: config.walFsync,
              localSnapshots: {
                intervalMs: config.localSnapshotIntervalMs,
                walBytes: config.localSnapshotWalBytes,
                keep: config.localSnapshotKeep,
              },
              log: logger,
              nodeId: config.nodeId,
              segmentBytes: config.walSegmentBytes,
            },
          }),
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
      maxSnapshots: config.maxSnapshots,
      keepRecent: config.keepRecent,
      onError: (err, context) => logger.warn({ err }, context),
      onRemoved: (entry, reason) =>
        logger.info(
          {
            snapshot: entry.meta.id,
            reason,
            state: entry.meta.state,
            bytes: entry.meta.bytesWritten,
            durationMs: Date.now() - entry.meta.createdAtMs,
          },
          reason === 'deleted' ? 'snapshot deleted' : `snapshot removed (${reason})`,
        ),
    });
    const ownsArchives = !options.archiveTargets;
    let boundServer: grpc.Server | undefined;
    let archives: ArchiveTargets | undefined;
    try {
      archives =
        options.archiveTargets ??
        new S3Targets(resolveS3Settings(config.s3), (message, err) =>
          logger.warn({ err }, message),
        );
      const ownership = await Ownership.load(config.dataDir, config.slots, {
        inCluster: config.cluster !== undefined,
      });
      if (identity && config.cluster) {
        if (identity.firstJoin && !ownership.isBlank()) {
          await checkFirstJoin(
            config.cluster.etcd,
            config.cluster.name,
            identity.nodeId,
            ownership.owned(),
          );
        }
        await identity.record();
      }
      await catalog.load();
      const strategies = options.strategies ?? defaultStrategies();
      // Before anything can write: the log must see every change after its start seq.
      const changeLog = new ChangeLog({
        maxBytes: config.changeLogBytes,
        startSeq: (await store.stats()).seq,
      });
      const unsubscribeChanges = store.onChange((change) => changeLog.append(change));
      const server = new grpc.Server(SERVER_OPTIONS);
      boundServer = server;
      const { host } = parseHostPort(config.listen);
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(config.listen, security.server, (error, bound) =>
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
      const limits = transferLimits(config, () => node?.metrics);
      node = new ShardNode(
        config,
        store,
        ownership,
        catalog,
        strategies,
        logger,
        server,
        config.advertise ?? `${isWildcardHost(host) ? hostname() : host}:${port}`,
        archives,
        ownsArchives,
        changeLog,
        unsubscribeChanges,
        security,
        limits,
      );
      const started = node;
      node.metrics = new NodeMetrics({
        nodeId: config.nodeId,
        store,
        catalogStats: () => ({ spoolBytes: catalog.storedBytes, stored: catalog.list().length }),
        changeLogBytes: () => changeLog.bytes,
      });
      // What the buckets run at now (adaptive mode sets them before the metrics exist).
      for (const direction of ['send', 'recv'] as const) {
        const rate = limits.buckets[direction].rate;
        node.metrics.rateLimit(direction, Number.isFinite(rate) ? rate : undefined);
      }
      if (config.metricsListen) {
        node.metricsEndpoint = await serveMetrics(config.metricsListen, node.metrics, (err) =>
          logger.warn({ err }, 'metrics scrape failed'),
        );
      }
      const hooks: CallHooks = {
        onError: (error: unknown, method: string) => logCallFailure(logger, error, method),
        admit: (method, metadata) => {
          const caller = security.access.admit(method, metadata);
          if (started.stopped && BUILDS.has(method)) {
            throw shuttingDown(`${method}: the node is shutting down`);
          }
          return caller;
        },
      };
      const handoffs = new SourceHandoffs({
        store,
        ownership,
        onError: (err, context) => logger.warn({ err }, context),
        onInfo: (context, message) => logger.info(context, message),
        onPause: (ms) => started.metrics.writePause(ms / 1000),
      });
      node.handoffs = handoffs;
      node.migrations = new MigrationRegistry({
        store,
        ownership,
        address: node.address,
        security: security.peer,
        onInstalled: (keys) => started.metrics.installedKeys(keys),
        cleanupsDone: (slots) => handoffs.cleanupsDone(slots),
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
          ...(node.metricsEndpoint
            ? { metrics: `http://${node.metricsEndpoint.address}/metrics` }
            : {}),
          tls: Boolean(config.tls),
          clientCertificates: Boolean(config.tls?.clientCa),
          tokens: security.access.enabled,
          backend: config.backend,
          dataDir: config.dataDir,
          snapshots: catalog.list().length,
        },
        'node started',
      );
      if (config.cluster) {
        node.member = new ClusterMember({
          endpoints: config.cluster.etcd,
          cluster: config.cluster.name,
          node: {
            id: config.nodeId,
            address: node.address,
            backend: config.backend,
            capacityBytes: totalmem(),
            startedAtMs: node.startedAtMs,
            pid: process.pid,
          },
          ownership,
          logger,
          leaseTtlSeconds: config.cluster.leaseTtlSeconds,
        });
        node.member.start();
      }
      node.migrations.recover();
      node.recovery = recoverOwnership({
        store,
        ownership,
        logger,
        stopping: () => started.stopped,
      });
      return node;
    } catch (error) {
      boundServer?.forceShutdown();
      await node?.metricsEndpoint?.close();
      node?.metrics?.close();
      node?.limits.close();
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
      beginUpload: () => {
        const transfer = this.transfers.begin('send', 'scheduled archive');
        return { throttle: transfer, signal: transfer.signal, end: () => transfer.end() };
      },
      createFullSnapshot: () =>
        buildOn(this, {
          strategy: this.strategies.choose(this.store, { slots: full, full: true }),
          slots: full,
          full: true,
          compression: 'none',
          chunkSize: this.config.chunkSize,
        }),
      log: this.logger,
    });
    this.scheduler.start();
  }

  /**
   * Stops the node: NOT_SERVING at once, no new builds or transfers; transfers in flight
   * get `graceMs` to finish and are then cancelled; then everything closes.
   */
  stop(graceMs = 2_000): Promise<void> {
    // A second stop (SIGINT after SIGTERM) waits for the first rather than returning early.
    this.stopping ??= this.shutdown(graceMs);
    return this.stopping;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.stopped = true;
    this.introspection?.notServing();
    // Deregistered first: a controller must not pick a stopping node as a target.
    await this.member?.close();
    // A scheduled upload already running is a transfer like any other: it gets the grace.
    this.scheduler?.hold();
    const drained = await this.transfers.drain(graceMs);
    if (drained.finished + drained.cancelled > 0) {
      this.logger.info({ ...drained, graceMs }, 'transfers in flight at shutdown');
    }
    this.limits.close();
    // An upload still in flight is aborted (and its multipart upload with it) before anything closes.
    await this.scheduler?.stop(Math.min(graceMs, CLOSE_WAIT_MS));
    // Running migrations are cancelled (the source keeps their slots); pauses served end.
    await this.migrations.close();
    await this.handoffs.close();
    const builds = this.catalog.close();
    // Change streams never end by themselves: ended here, they do not hold up the shutdown.
    this.changeLog.close();
    this.unsubscribeChanges();
    await new Promise<void>((resolve) => {
      // Transfers have had their grace: what is left are short calls and cancelled streams.
      const timer = setTimeout(
        () => {
          this.server.forceShutdown();
          resolve();
        },
        Math.min(graceMs, CLOSE_WAIT_MS),
      );
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await builds;
    await this.recovery;
    await this.store.close();
    if (this.ownsArchives) this.archives.close();
    await this.metricsEndpoint?.close();
    this.metrics.close();
  }
}

async function restoreKind(path: string): Promise<'dir' | 'file'> {
  const info = await stat(path).catch(() => undefined);
  if (!info) throw invalidArgument(`--restore-from ${path}: no such file or directory`);
  return info.isDirectory() ? 'dir' : 'file';
}
