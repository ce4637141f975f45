import { type Command, InvalidArgumentError } from 'commander';
import type { Logger } from 'pino';
import { type SlotRange, invalidArgument } from '../../core';
import { parseOwnedSlots } from '../../ownership';
import { parseDuration, parseSize } from '../../server/config';
import { action, address, globals, positiveInt } from '../common';
import { emit } from '../output';
import { type S3Flags, addS3Options, s3Settings } from './archive';

interface ServeOptions extends S3Flags {
  listen: string;
  backend: string;
  dataDir: string;
  nodeId?: string;
  snapshotTtl: string;
  maxBuilds: number;
  keepRecent: number;
  restoreFrom?: string;
  logLevel: string;
  logFile?: string;
  changeLogSize?: number;
  slots?: SlotRange[];
  archiveEvery?: string;
  archiveBucket?: string;
  archivePrefix: string;
  archiveKeep: number;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  peerTlsCa?: string;
  authTokens?: string;
  peerTokenFile?: string;
  allowPeers?: string[];
  metricsListen?: string;
  maxSendRate?: number;
  maxRecvRate?: number;
  maxConcurrentSends: number;
  maxConcurrentRecvs: number;
  snapshotLatencyTargetMs?: number;
  advertise?: string;
  spoolMaxBytes?: number;
  shutdownGrace: string;
  maxSnapshots: number;
  streamIdleTimeout: string;
  walFsync: 'always' | 'everysec' | 'never';
  /** False with `--no-wal`. */
  wal: boolean;
  localSnapshotInterval: string;
  localSnapshotWalBytes: number;
  localSnapshotKeep: number;
  walSegmentSize: number;
  etcd?: string;
  cluster?: string;
  etcdLeaseTtl: number;
}

/** `--wal-fsync always|everysec|never`. */
function walFsync(value: string): 'always' | 'everysec' | 'never' {
  if (value === 'always' || value === 'everysec' || value === 'never') return value;
  throw new InvalidArgumentError(`"${value}" is not one of always, everysec, never`);
}

/** `--local-snapshot-interval 5m`. */
function duration(value: string): string {
  try {
    if (!(parseDuration(value) > 0)) throw new InvalidArgumentError(`"${value}" is not positive`);
    return value;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** `--tls-cert`, `--tls-key`, `--tls-client-ca`: all or nothing, the CA only with a cert. */
function tlsOf(options: ServeOptions) {
  if (!options.tlsCert && !options.tlsKey) {
    if (options.tlsClientCa)
      throw invalidArgument('--tls-client-ca needs --tls-cert and --tls-key');
    return {};
  }
  if (!options.tlsCert || !options.tlsKey) {
    throw invalidArgument('--tls-cert and --tls-key must be given together');
  }
  return {
    tls: {
      cert: options.tlsCert,
      key: options.tlsKey,
      ...(options.tlsClientCa ? { clientCa: options.tlsClientCa } : {}),
    },
  };
}

/** `--allow-peers a,b:7420,10.0.0.0/8`. */
function peerList(value: string): string[] {
  const list = value
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0);
  if (list.length === 0) throw new InvalidArgumentError('the list of peers is empty');
  return list;
}

/** `--max-send-rate 100MiB`: bytes per second. */
function rate(value: string): number {
  return byteSize(value.replace(/\/s$/i, ''));
}

function positiveCount(value: string): number {
  const n = positiveInt(value);
  if (n < 1) throw new InvalidArgumentError(`"${value}" is not a positive integer`);
  return n;
}

/** `--archive-every` and `--archive-bucket` go together. */
function archiveSchedule(options: ServeOptions) {
  if (!options.archiveEvery && !options.archiveBucket) return {};
  if (!options.archiveEvery || !options.archiveBucket) {
    throw invalidArgument('--archive-every and --archive-bucket must be given together');
  }
  return {
    archive: {
      everyMs: parseDuration(options.archiveEvery),
      bucket: options.archiveBucket,
      prefix: options.archivePrefix,
      keep: options.archiveKeep,
    },
  };
}

/** `--change-log-size`: `64MiB`, `512KiB` or plain bytes. */
function byteSize(value: string): number {
  try {
    const bytes = parseSize(value);
    if (bytes < 1) throw new InvalidArgumentError(`"${value}" is not a positive size`);
    return bytes;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** `--slots`: ranges, `all` or `none`. */
function ownedSlots(value: string): SlotRange[] {
  try {
    return parseOwnedSlots(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/**
 * Process warnings (deprecations, libraries' notices) become log lines: printed by
 * Node they would land in the middle of the JSON log stream.
 */
function routeProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    // An IP address as TLS server name (peers dialed by IP): see dropIpServerNameWarning.
    if (warning.code === 'DEP0123') return;
    logger.warn({ warning: warning.name, detail: warning.message }, 'process warning');
  });
}

export function registerServe(program: Command): void {
  const serve = program
    .command('serve')
    .description('run a shard node')
    .option(
      '--listen <host:port>',
      'address to listen on (port 0 picks one)',
      address,
      '127.0.0.1:7420',
    )
    .option('--backend <name>', 'storage backend', 'memory')
    .requiredOption('--data-dir <dir>', 'where snapshots are spooled')
    .option('--node-id <id>', 'name of this node in snapshots and logs')
    .option('--snapshot-ttl <duration>', 'remove unused snapshots after this long', '1h')
    .option('--max-builds <n>', 'snapshot builds allowed at once', positiveInt, 2)
    .option(
      '--keep-recent <n>',
      'keep at most N ready snapshots, removing the oldest (0 = no limit)',
      positiveInt,
      0,
    )
    .option('--restore-from <path>', 'start from a RocksDB checkpoint dir or an artifact file')
    .option('--log-level <level>', 'pino log level', 'info')
    .option(
      '--log-file <file>',
      'append the JSON logs to this file instead of stderr (keeps a terminal free for other commands)',
    )
    .option(
      '--change-log-size <size>',
      'recent changes kept for change streams, e.g. 64MiB, 512KiB or bytes (default 64MiB)',
      byteSize,
    )
    .option(
      '--slots <ranges>',
      'slots a new node owns: A-B[,C-D], all or none (default all; later starts keep what is recorded)',
      ownedSlots,
    )
    .option('--archive-every <duration>', 'archive a full snapshot this often (e.g. 1h)')
    .option('--archive-bucket <bucket>', 'bucket of the scheduled archives')
    .option('--archive-prefix <prefix>', 'key prefix of the scheduled archives', '')
    .option('--tls-cert <file>', 'serve TLS with this certificate (PEM; with --tls-key)')
    .option('--tls-key <file>', 'key of --tls-cert (PEM)')
    .option('--tls-client-ca <file>', 'require client certificates signed by this CA (mutual TLS)')
    .option(
      '--peer-tls-ca <file>',
      'dial other nodes (pulls, splits) over TLS trusting this CA; --tls-cert is the client cert',
    )
    .option('--auth-tokens <file>', 'JSON tokens and roles; calls then need a token')
    .option('--peer-token-file <file>', 'the token this node presents to other nodes')
    .option(
      '--allow-peers <list>',
      'addresses this node may dial for pulls and splits: host, host:port or CIDR, comma-separated',
      peerList,
    )
    .option('--metrics-listen <host:port>', 'serve Prometheus metrics at /metrics', address)
    .option(
      '--max-send-rate <bytes>',
      'bytes per second all outgoing transfers share, e.g. 100MiB',
      rate,
    )
    .option(
      '--max-recv-rate <bytes>',
      'bytes per second all incoming transfers share, e.g. 100MiB',
      rate,
    )
    .option('--max-concurrent-sends <n>', 'outgoing transfers at once', positiveCount, 32)
    .option('--max-concurrent-recvs <n>', 'incoming transfers at once', positiveCount, 32)
    .option(
      '--snapshot-latency-target-ms <n>',
      'slow transfers while foreground write p99 is above this many ms',
      positiveCount,
    )
    .option('--advertise <host:port>', 'address given in MOVED redirects and to peers', address)
    .option('--spool-max-bytes <size>', 'bytes stored snapshots may take, e.g. 20GiB', byteSize)
    .option('--shutdown-grace <duration>', 'on SIGTERM, how long transfers may finish', '30s')
    .option('--max-snapshots <n>', 'snapshots stored at once (0 = no cap)', positiveInt, 64)
    .option(
      '--stream-idle-timeout <duration>',
      'close an install or fetch stream that makes no progress this long',
      '60s',
    )
    .option(
      '--wal-fsync <policy>',
      'memory backend: write-ahead log in DIR/wal, synced always (a write is acknowledged once durable), everysec or never',
      walFsync,
      'everysec',
    )
    .option(
      '--no-wal',
      'memory backend: no write-ahead log, a pure cache (nothing survives a restart)',
    )
    .option(
      '--local-snapshot-interval <duration>',
      'memory backend with a WAL: snapshot the node into DIR/snapshots this often',
      duration,
      '5m',
    )
    .option(
      '--local-snapshot-wal-bytes <size>',
      '...or once the WAL grew by this much, whichever comes first (default 256MiB)',
      byteSize,
      256 * 1024 * 1024,
    )
    .option('--local-snapshot-keep <n>', 'local snapshots kept', positiveCount, 2)
    .option(
      '--wal-segment-size <size>',
      'start a new WAL segment file past this size (default 64MiB)',
      byteSize,
      64 * 1024 * 1024,
    )
    .option(
      '--etcd <endpoints>',
      'join a cluster whose topology is kept in etcd (host:port[,host:port]); needs --cluster',
    )
    .option('--cluster <name>', 'the cluster to join (with --etcd)')
    .option(
      '--etcd-lease-ttl <seconds>',
      "seconds the node's registration outlives its last keepalive",
      positiveInt,
      10,
    )
    .option(
      '--archive-keep <n>',
      "keep this node's newest N archives, deleting older ones (0 = keep all)",
      positiveInt,
      0,
    );
  addS3Options(serve).action(
    action(async (options: ServeOptions, command: Command) => {
      // Loaded here, not at start-up: the node's modules cost every other command ~0.1 s.
      const { ShardNode } = await import('../../server/node');
      const shutdownGraceMs = parseDuration(options.shutdownGrace);
      const { default: pino } = await import('pino');
      const logger = pino(
        { level: options.logLevel },
        pino.destination(
          options.logFile ? { dest: options.logFile, append: true, mkdir: true, sync: true } : 2,
        ),
      );
      routeProcessWarnings(logger);
      if (Boolean(options.etcd) !== Boolean(options.cluster)) {
        throw invalidArgument('--etcd and --cluster go together');
      }
      const node = await ShardNode.start({
        listen: options.listen,
        backend: options.backend,
        dataDir: options.dataDir,
        ...(options.nodeId ? { nodeId: options.nodeId } : {}),
        snapshotTtlMs: parseDuration(options.snapshotTtl),
        maxConcurrentBuilds: options.maxBuilds,
        keepRecent: options.keepRecent,
        ...(options.restoreFrom ? { restoreFrom: options.restoreFrom } : {}),
        logLevel: options.logLevel,
        logger,
        ...(options.changeLogSize ? { changeLogBytes: options.changeLogSize } : {}),
        ...(options.slots ? { slots: options.slots } : {}),
        s3: s3Settings(options),
        ...archiveSchedule(options),
        ...tlsOf(options),
        ...(options.peerTlsCa ? { peerTlsCa: options.peerTlsCa } : {}),
        ...(options.authTokens ? { authTokensFile: options.authTokens } : {}),
        ...(options.peerTokenFile ? { peerTokenFile: options.peerTokenFile } : {}),
        ...(options.allowPeers ? { allowPeers: options.allowPeers } : {}),
        ...(options.metricsListen ? { metricsListen: options.metricsListen } : {}),
        ...(options.maxSendRate ? { maxSendRate: options.maxSendRate } : {}),
        ...(options.maxRecvRate ? { maxRecvRate: options.maxRecvRate } : {}),
        maxConcurrentSends: options.maxConcurrentSends,
        maxConcurrentRecvs: options.maxConcurrentRecvs,
        ...(options.snapshotLatencyTargetMs
          ? { snapshotLatencyTargetMs: options.snapshotLatencyTargetMs }
          : {}),
        ...(options.advertise ? { advertise: options.advertise } : {}),
        ...(options.spoolMaxBytes ? { spoolMaxBytes: options.spoolMaxBytes } : {}),
        shutdownGraceMs,
        maxSnapshots: options.maxSnapshots,
        streamIdleTimeoutMs: parseDuration(options.streamIdleTimeout),
        walFsync: options.wal ? options.walFsync : 'off',
        localSnapshotIntervalMs: parseDuration(options.localSnapshotInterval),
        localSnapshotWalBytes: options.localSnapshotWalBytes,
        localSnapshotKeep: options.localSnapshotKeep,
        walSegmentBytes: options.walSegmentSize,
        ...(options.etcd && options.cluster
          ? {
              cluster: {
                etcd: options.etcd,
                name: options.cluster,
                leaseTtlSeconds: options.etcdLeaseTtl,
              },
            }
          : {}),
      });
      emit(
        globals(command),
        {
          ok: true,
          listening: node.address,
          backend: node.store.backend,
          nodeId: node.config.nodeId,
          ...(node.config.cluster ? { cluster: node.config.cluster.name } : {}),
        },
        () =>
          `listening on ${node.address}` +
          (node.config.cluster
            ? ` as node ${node.config.nodeId} of cluster ${node.config.cluster.name}`
            : ''),
      );
      const shutdown = (signal: string): void => {
        node.logger.info({ signal, graceMs: shutdownGraceMs }, 'stopping');
        node.stop(shutdownGraceMs).then(
          () => {
            node.logger.info('stopped');
            process.exit(0);
          },
          (err: unknown) => {
            node.logger.error({ err }, 'stop failed');
            process.exit(1);
          },
        );
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    }),
  );
}
