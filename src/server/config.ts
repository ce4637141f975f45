import { hostname } from 'node:os';
import { type ArchiveSchedule, type S3Settings, validateBucket } from '../archive';
import { type SlotRange, invalidArgument } from '../core';
import { DEFAULT_CHUNK_SIZE } from '../snapshot';

export interface NodeConfig {
  /** host:port to listen on; port 0 picks a free port. */
  listen: string;
  backend: string;
  dataDir: string;
  nodeId: string;
  /** Unused snapshots are removed this long after their last use. */
  snapshotTtlMs: number;
  maxConcurrentBuilds: number;
  /** Keep at most this many READY snapshots; 0 = no limit (the TTL still applies). */
  keepRecent: number;
  chunkSize: number;
  logLevel: string;
  /** Bytes of recent changes held for change streams (`serve --change-log-size`). */
  changeLogBytes: number;
  /**
   * Start from this: a RocksDB checkpoint directory (rocksdb backend), or an artifact
   * file (records: any backend; files: rocksdb), installed before the node serves.
   */
  restoreFrom?: string;
  /** The object store of archives; what is unset comes from the AWS_* env vars. */
  s3?: S3Settings;
  /** Archive a full snapshot on a schedule (`serve --archive-every ...`). */
  archive?: ArchiveSchedule;
  /**
   * Slots this node owns when it has no ownership recorded yet (default: all; [] = none).
   * Once recorded, ownership changes only by handoffs: other slots here fail the start.
   */
  slots?: SlotRange[];
  /** Serve TLS with this certificate and key (PEM files); `clientCa` requires client certificates signed by it. */
  tls?: { cert: string; key: string; clientCa?: string };
  /** Dial other nodes over TLS, trusting this CA (PEM file); the node's own cert is the client cert. */
  peerTlsCa?: string;
  /** `--auth-tokens`: the JSON file of tokens and roles; without it every call is allowed. */
  authTokensFile?: string;
  /** `--peer-token-file`: the token this node presents to other nodes. */
  peerTokenFile?: string;
  /** Addresses this node may dial for pulls and splits (host, host:port, CIDR); default: any. */
  allowPeers?: string[];
  /** Serve Prometheus metrics at http://HOST:PORT/metrics. */
  metricsListen?: string;
  /** Bytes per second all outgoing transfers share (fetches, archives); default unlimited. */
  maxSendRate?: number;
  /** Bytes per second all incoming transfers share (installs, pulls, restores, splits). */
  maxRecvRate?: number;
  /** Outgoing transfers at once; more are refused with RESOURCE_EXHAUSTED. Default 32. */
  maxConcurrentSends: number;
  /** Incoming transfers at once; more are refused with RESOURCE_EXHAUSTED. Default 32. */
  maxConcurrentRecvs: number;
  /** Adaptive mode: slow transfers while foreground write p99 is above this. */
  snapshotLatencyTargetMs?: number;
  /** The address put in MOVED redirects and given to peers (default: the bound address). */
  advertise?: string;
  /** Bytes stored snapshots may take; builds that would exceed it are refused. */
  spoolMaxBytes?: number;
  /** An install or fetch stream that makes no progress this long is closed (UNAVAILABLE). */
  streamIdleTimeoutMs: number;
  /** Snapshots stored at once; more are refused (RESOURCE_EXHAUSTED). 0 = no cap. */
  maxSnapshots: number;
  /** On SIGTERM, how long transfers in flight may run before they are cancelled. */
  shutdownGraceMs: number;
  /**
   * Memory backend: when the write-ahead log in DIR/wal reaches the disk (`always`: before
   * a write is acknowledged), or `off` (`--no-wal`: a pure cache, nothing kept across a restart).
   */
  walFsync: WalFsync;
  /** Memory backend with a WAL: a local snapshot at least this often... */
  localSnapshotIntervalMs: number;
  /** ...or once the WAL grew by this many bytes, whichever comes first. */
  localSnapshotWalBytes: number;
  /** Local snapshots kept (the WAL is kept from the oldest on). */
  localSnapshotKeep: number;
  /** A new WAL segment file starts past this size (whole segments are what snapshots free). */
  walSegmentBytes: number;
  /**
   * Join a cluster whose topology lives in etcd (`--etcd ENDPOINTS --cluster NAME`): the
   * node registers under a lease of `leaseTtlSeconds` and follows the topology.
   */
  cluster?: { etcd: string; name: string; leaseTtlSeconds: number };
}

export type WalFsync = 'always' | 'everysec' | 'never' | 'off';
export const WAL_FSYNC_CHOICES: readonly WalFsync[] = ['always', 'everysec', 'never', 'off'];

/** The lowest rate adaptive mode goes to (see adaptive-rate.ts). */
const ADAPTIVE_FLOOR = 1 << 20;

export const DEFAULT_CONFIG: Omit<NodeConfig, 'dataDir'> = {
  listen: '127.0.0.1:7420',
  backend: 'memory',
  nodeId: `${hostname()}-${process.pid}`,
  snapshotTtlMs: 60 * 60 * 1000,
  maxConcurrentBuilds: 2,
  keepRecent: 0,
  chunkSize: DEFAULT_CHUNK_SIZE,
  logLevel: 'info',
  changeLogBytes: 64 * 1024 * 1024,
  maxConcurrentSends: 32,
  maxConcurrentRecvs: 32,
  shutdownGraceMs: 30_000,
  maxSnapshots: 64,
  streamIdleTimeoutMs: 60_000,
  walFsync: 'everysec',
  localSnapshotIntervalMs: 5 * 60_000,
  localSnapshotWalBytes: 256 * 1024 * 1024,
  localSnapshotKeep: 2,
  walSegmentBytes: 64 * 1024 * 1024,
};

export function resolveConfig(partial: Partial<NodeConfig> & { dataDir: string }): NodeConfig {
  const config = { ...DEFAULT_CONFIG, ...partial };
  parseHostPort(config.listen);
  if (config.cluster) {
    if (config.slots !== undefined) {
      throw invalidArgument(
        '--slots does not go with --etcd: in a cluster the topology assigns the slots',
      );
    }
    if (!Number.isInteger(config.cluster.leaseTtlSeconds) || config.cluster.leaseTtlSeconds < 1) {
      throw invalidArgument(`--etcd-lease-ttl must be a positive number of seconds`);
    }
  }
  if (!Number.isInteger(config.maxConcurrentBuilds) || config.maxConcurrentBuilds < 1) {
    throw invalidArgument(
      `max concurrent builds must be a positive integer, got ${config.maxConcurrentBuilds}`,
    );
  }
  if (!(config.snapshotTtlMs > 0)) throw invalidArgument('snapshot TTL must be positive');
  if (!Number.isSafeInteger(config.changeLogBytes) || config.changeLogBytes < 1) {
    throw invalidArgument(
      `the change log size must be a positive number of bytes, got ${config.changeLogBytes}`,
    );
  }
  if (config.archive) validateSchedule(config.archive);
  if (!(config.streamIdleTimeoutMs > 0 && Number.isFinite(config.streamIdleTimeoutMs))) {
    throw invalidArgument(`stream idle timeout must be a positive duration`);
  }
  if (!Number.isSafeInteger(config.maxSnapshots) || config.maxSnapshots < 0) {
    throw invalidArgument(
      `max snapshots must be a non-negative integer, got ${config.maxSnapshots}`,
    );
  }
  for (const [name, value] of [
    ['max concurrent sends', config.maxConcurrentSends],
    ['max concurrent receives', config.maxConcurrentRecvs],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw invalidArgument(`${name} must be a positive integer, got ${value}`);
    }
  }
  for (const [name, value] of [
    ['max send rate', config.maxSendRate],
    ['max receive rate', config.maxRecvRate],
    ['spool max bytes', config.spoolMaxBytes],
    ['snapshot latency target', config.snapshotLatencyTargetMs],
  ] as const) {
    if (value !== undefined && !(value > 0 && Number.isFinite(value))) {
      throw invalidArgument(`${name} must be positive, got ${value}`);
    }
  }
  if (config.snapshotLatencyTargetMs !== undefined) {
    for (const [flag, rate] of [
      ['--max-send-rate', config.maxSendRate],
      ['--max-recv-rate', config.maxRecvRate],
    ] as const) {
      if (rate !== undefined && rate < ADAPTIVE_FLOOR) {
        throw invalidArgument(
          `${flag} ${rate}: with --snapshot-latency-target-ms a cap must be at least 1MiB (the adaptive floor)`,
        );
      }
    }
  }
  if (!(config.shutdownGraceMs >= 0 && Number.isFinite(config.shutdownGraceMs))) {
    throw invalidArgument(`shutdown grace must be a duration, got ${config.shutdownGraceMs}`);
  }
  if (config.advertise !== undefined) {
    const { host, port } = parseHostPort(config.advertise);
    if (port === 0 || isWildcardHost(host)) {
      throw invalidArgument(`--advertise ${config.advertise}: give an address others can dial`);
    }
  }
  if (config.metricsListen !== undefined) parseHostPort(config.metricsListen);
  if (config.tls && (!config.tls.cert || !config.tls.key)) {
    throw invalidArgument('--tls-cert and --tls-key must be given together');
  }
  if (config.tls?.clientCa === '') throw invalidArgument('--tls-client-ca needs a file');
  validateDurability(config);
  return config;
}

function validateDurability(config: NodeConfig): void {
  if (!WAL_FSYNC_CHOICES.includes(config.walFsync)) {
    throw invalidArgument(
      `--wal-fsync must be one of always, everysec, never (or --no-wal), got "${String(config.walFsync)}"`,
    );
  }
  if (!(config.localSnapshotIntervalMs > 0 && Number.isFinite(config.localSnapshotIntervalMs))) {
    throw invalidArgument('the local snapshot interval must be a positive duration');
  }
  if (!Number.isSafeInteger(config.localSnapshotWalBytes) || config.localSnapshotWalBytes < 1) {
    throw invalidArgument(
      `--local-snapshot-wal-bytes must be a positive size, got ${config.localSnapshotWalBytes}`,
    );
  }
  if (!Number.isSafeInteger(config.walSegmentBytes) || config.walSegmentBytes < 4096) {
    throw invalidArgument(
      `--wal-segment-size must be at least 4KiB, got ${config.walSegmentBytes}`,
    );
  }
  if (!Number.isSafeInteger(config.localSnapshotKeep) || config.localSnapshotKeep < 1) {
    throw invalidArgument(
      `--local-snapshot-keep must be an integer >= 1, got ${config.localSnapshotKeep}`,
    );
  }
}

function validateSchedule(schedule: ArchiveSchedule): void {
  if (!(schedule.everyMs > 0) || !Number.isFinite(schedule.everyMs))
    throw invalidArgument('the archive interval must be a positive duration');
  validateBucket(schedule.bucket);
  if (!Number.isSafeInteger(schedule.keep) || schedule.keep < 0)
    throw invalidArgument(`archives to keep must be a non-negative integer, got ${schedule.keep}`);
}

export function parseHostPort(address: string): { host: string; port: number } {
  const match = /^(\[[^\]]+\]|[^:]+):(\d{1,5})$/.exec(address.trim());
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw invalidArgument(`"${address}" is not a HOST:PORT address`);
  return { host: match[1] as string, port };
}

/** `0.0.0.0`, `::` and friends: listen everywhere, dial nowhere. */
export function isWildcardHost(host: string): boolean {
  return ['0.0.0.0', '[::]', '::', '[::0]'].includes(host);
}

/** Parses `64MiB`, `512KiB`, `1GiB` (K, M, G are the same binary units) or plain bytes. */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(B|K|KiB|M|MiB|G|GiB)?$/i.exec(text.trim());
  if (!match) throw invalidArgument(`"${text}" is not a size (e.g. 64MiB, 512KiB, 1048576)`);
  const unit = (match[2] ?? 'b').charAt(0).toLowerCase();
  const scale = { b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[unit] ?? 1;
  return Math.round(Number(match[1]) * scale);
}

/** Parses `30s`, `15m`, `2h`, `1d` or plain milliseconds. */
export function parseDuration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (!match) throw invalidArgument(`"${text}" is not a duration (e.g. 30s, 15m, 2h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[match[2] ?? 'ms'] ?? 1;
  return Number(match[1]) * unit;
}
