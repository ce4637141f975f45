import { performance } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { ErrorReasons, hasReason } from '../core';
import type { Store, StoreStats } from '../store';

export type TransferDirection = 'send' | 'recv';
export type SnapshotKind = 'full' | 'slots';
export type SnapshotStatus = 'ready' | 'failed' | 'cancelled';

/**
 * Why a request was turned away. A closed set, so that the label cannot grow with client
 * input; every reason is exported at 0 from the start, so that alerts on `increase()` see
 * the first rejection.
 */
export const REJECT_REASONS = [
  'unauthenticated',
  'permission_denied',
  'peer_not_allowed',
  'too_many_transfers',
  'too_many_builds',
  'too_many_snapshots',
  'spool_full',
] as const;
export type RejectReason = (typeof REJECT_REASONS)[number];

const DIRECTIONS: readonly TransferDirection[] = ['send', 'recv'];

/** What the node's gauges are read from, at every scrape (never cached between scrapes). */
export interface NodeMetricsOptions {
  /** Exported as the `node` label of every series. */
  nodeId: string;
  /** Keys and data bytes (`stats()`), and backend gauges (`properties()`) when it has them. */
  store: Store;
  /** Bytes of the snapshots in the spool and how many are stored. */
  catalogStats: () => { spoolBytes: number; stored: number };
  /** Bytes the change log holds. */
  changeLogBytes: () => number;
}

/** RocksDB properties (as `Store.properties()` names them) and the gauges that export them. */
const ROCKSDB_GAUGES = [
  {
    name: 'shardsnap_rocksdb_estimate_num_keys',
    property: 'rocksdb.estimate-num-keys',
    help: 'Keys RocksDB estimates it holds (overwrites and deletes count until compacted).',
  },
  {
    name: 'shardsnap_rocksdb_live_sst_bytes',
    property: 'rocksdb.live-sst-files-size',
    help: 'Bytes of the SST files of the current RocksDB version.',
  },
  {
    name: 'shardsnap_rocksdb_l0_files',
    property: 'rocksdb.num-files-at-level0',
    help: 'SST files at level 0; RocksDB slows and then stops writes as they pile up.',
  },
  {
    name: 'shardsnap_rocksdb_pending_compaction_bytes',
    property: 'rocksdb.estimate-pending-compaction-bytes',
    help: 'Bytes compaction estimates it must rewrite to bring every level under its target.',
  },
  {
    name: 'shardsnap_rocksdb_memtable_bytes',
    property: 'rocksdb.cur-size-all-mem-tables',
    help: 'Bytes of the active and not yet flushed memtables.',
  },
] as const;

/** Whole builds: from a fraction of a second (a few slots) to half an hour (a large full). */
const BUILD_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];
/** Whole transfers: up to an hour for a large store over a slow or throttled link. */
const TRANSFER_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Write pauses of slot handoffs: milliseconds when healthy, seconds when something is wrong. */
const PAUSE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Foreground writes: tens of microseconds in memory, so the low end is fine-grained. */
const WRITE_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
  5,
];

let processRegistry: Registry | undefined;

/**
 * The process's default metrics (CPU, memory, handles, event loop delay, GC), collected
 * once per process and exported by every node in it. `collectDefaultMetrics` starts an
 * event loop delay monitor and a GC observer that cannot be stopped, and the observer
 * keeps its registry reachable: collected per node, each node started in a process would
 * leave them behind (with the node's registry and the store its gauges read). One shared
 * set costs one monitor for the life of the process, however many nodes come and go.
 */
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** A value that may be added to a counter: finite and positive (a counter never goes down). */
function increment(value: number): number | undefined {
  return Number.isFinite(value) && value > 0 ? value : undefined;
}

/** A duration that may be observed: finite and not negative. */
function duration(seconds: number): number | undefined {
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

/**
 * The Prometheus metrics of one shard node. Each node owns its registry (never the
 * process-global one), so several nodes in one process export separate, non-colliding
 * series, each labelled with its `node`. Services record events through the methods
 * below; levels (keys, bytes, RocksDB state) are read from their owners at scrape time,
 * so an idle node costs nothing between scrapes. Recording never throws: a bad value is
 * dropped rather than failing the transfer or write that reported it.
 */
export class NodeMetrics {
  /** The Content-Type of `text()`. */
  readonly contentType: string = Registry.PROMETHEUS_CONTENT_TYPE;
  private readonly nodeId: string;
  private readonly store: Store;
  private readonly registry = new Registry();
  private closed = false;
  /** One `stats()` call serves every gauge of a scrape. */
  private pendingStats: Promise<StoreStats | undefined> | undefined;
  /** One `properties()` call serves every RocksDB gauge of a scrape. */
  private scrapedProperties: Record<string, number> | undefined;

  private readonly snapshots: Counter<'strategy' | 'kind' | 'status'>;
  private readonly buildSeconds: Histogram<'strategy' | 'kind'>;
  private readonly transferBytes: Counter<'direction'>;
  private readonly transfersInProgress: Gauge<'direction'>;
  private readonly transferSeconds: Histogram<'direction'>;
  private readonly throttledSeconds: Counter<'direction'>;
  private readonly installKeys: Counter;
  private readonly writePauseSeconds: Histogram;
  private readonly writeSeconds: Histogram;
  private readonly rateLimitBytes: Gauge<'direction'>;
  private readonly rejections: Counter<'reason'>;

  constructor(options: NodeMetricsOptions) {
    this.nodeId = options.nodeId;
    this.store = options.store;
    const registers = [this.registry];

    this.snapshots = new Counter({
      name: 'shardsnap_snapshots_total',
      help: 'Snapshot builds finished, by strategy, kind (full or slots) and outcome.',
      labelNames: ['strategy', 'kind', 'status'],
      registers,
    });
    this.buildSeconds = new Histogram({
      name: 'shardsnap_snapshot_build_seconds',
      help: 'Duration of snapshot builds that became ready.',
      labelNames: ['strategy', 'kind'],
      buckets: BUILD_BUCKETS,
      registers,
    });
    this.transferBytes = new Counter({
      name: 'shardsnap_transfer_bytes_total',
      help: 'Snapshot bytes sent to or received from other nodes.',
      labelNames: ['direction'],
      registers,
    });
    this.transfersInProgress = new Gauge({
      name: 'shardsnap_transfers_in_progress',
      help: 'Snapshot transfers running now.',
      labelNames: ['direction'],
      registers,
    });
    this.transferSeconds = new Histogram({
      name: 'shardsnap_transfer_seconds',
      help: 'Duration of whole snapshot transfers, whatever their outcome.',
      labelNames: ['direction'],
      buckets: TRANSFER_BUCKETS,
      registers,
    });
    this.throttledSeconds = new Counter({
      name: 'shardsnap_transfer_throttled_seconds_total',
      help: 'Time transfers waited for the transfer rate limit.',
      labelNames: ['direction'],
      registers,
    });
    this.installKeys = new Counter({
      name: 'shardsnap_install_keys_total',
      help: 'Keys installed into the store from snapshots.',
      registers,
    });
    this.writePauseSeconds = new Histogram({
      name: 'shardsnap_write_pause_seconds',
      help: 'How long slot handoffs paused writes to the slots they moved.',
      buckets: PAUSE_BUCKETS,
      registers,
    });
    this.writeSeconds = new Histogram({
      name: 'shardsnap_write_seconds',
      help: 'Latency of foreground Write calls.',
      buckets: WRITE_BUCKETS,
      registers,
    });
    this.rateLimitBytes = new Gauge({
      name: 'shardsnap_transfer_rate_limit_bytes',
      help: 'Current transfer rate limit in bytes per second; 0 means unlimited.',
      labelNames: ['direction'],
      registers,
    });
    this.rejections = new Counter({
      name: 'shardsnap_rejected_total',
      help: 'Requests turned away, by reason.',
      labelNames: ['reason'],
      registers,
    });

    // Every known series exists from the start: rate() and absent() need no first event.
    for (const direction of DIRECTIONS) {
      this.transferBytes.inc({ direction }, 0);
      this.transfersInProgress.set({ direction }, 0);
      this.transferSeconds.zero({ direction });
      this.throttledSeconds.inc({ direction }, 0);
      this.rateLimitBytes.set({ direction }, 0);
    }
    for (const reason of REJECT_REASONS) this.rejections.inc({ reason }, 0);

    this.scrapeGauge('shardsnap_keys', 'Keys in the store.', async () => {
      return (await this.storeStats())?.keyCount;
    });
    this.scrapeGauge('shardsnap_data_bytes', 'Bytes of keys and values in the store.', async () => {
      return (await this.storeStats())?.dataBytes;
    });
    this.scrapeGauge(
      'shardsnap_spool_bytes',
      'Bytes of the snapshots stored in the spool.',
      () => options.catalogStats().spoolBytes,
    );
    this.scrapeGauge(
      'shardsnap_stored_snapshots',
      'Snapshots stored in the spool.',
      () => options.catalogStats().stored,
    );
    this.scrapeGauge(
      'shardsnap_change_log_bytes',
      'Bytes the change log holds for change streams.',
      options.changeLogBytes,
    );
    if (typeof this.store.properties === 'function') {
      for (const gauge of ROCKSDB_GAUGES) {
        this.scrapeGauge(gauge.name, gauge.help, () => this.storeProperties()[gauge.property]);
      }
    }
  }

  /** A build ended; its duration is observed only when it became ready. */
  snapshotFinished(
    strategy: string,
    kind: SnapshotKind,
    status: SnapshotStatus,
    seconds: number,
  ): void {
    this.snapshots.inc({ strategy, kind, status });
    const observed = duration(seconds);
    if (status === 'ready' && observed !== undefined) {
      this.buildSeconds.observe({ strategy, kind }, observed);
    }
  }

  /**
   * A transfer began: counts it in progress until the returned function is called, which
   * observes its whole duration. Call it once the transfer ends in any way; later calls do
   * nothing, so it can sit in a `finally` and in a cancellation handler both.
   */
  transferStarted(direction: TransferDirection): () => void {
    const startedAt = performance.now();
    this.transfersInProgress.inc({ direction });
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.transfersInProgress.dec({ direction });
      this.transferSeconds.observe({ direction }, (performance.now() - startedAt) / 1000);
    };
  }

  /** Bytes of snapshot data sent or received (counted as they pass, not when a transfer ends). */
  transferred(direction: TransferDirection, bytes: number): void {
    const value = increment(bytes);
    if (value !== undefined) this.transferBytes.inc({ direction }, value);
  }

  /** Time a transfer waited for the rate limit. */
  throttled(direction: TransferDirection, seconds: number): void {
    const value = increment(seconds);
    if (value !== undefined) this.throttledSeconds.inc({ direction }, value);
  }

  /** Keys an install put into the store. */
  installedKeys(count: number): void {
    const value = increment(count);
    if (value !== undefined) this.installKeys.inc(value);
  }

  /** How long a slot handoff held writes to its slots. */
  writePause(seconds: number): void {
    const value = duration(seconds);
    if (value !== undefined) this.writePauseSeconds.observe(value);
  }

  /** Latency of one foreground Write call. */
  writeLatency(seconds: number): void {
    const value = duration(seconds);
    if (value !== undefined) this.writeSeconds.observe(value);
  }

  /** The current rate limit of a direction; `undefined` (or 0, or Infinity) is unlimited. */
  rateLimit(direction: TransferDirection, bytesPerSecond: number | undefined): void {
    const value = bytesPerSecond === undefined ? undefined : increment(bytesPerSecond);
    this.rateLimitBytes.set({ direction }, value ?? 0);
  }

  /** A request was turned away. */
  rejected(reason: RejectReason): void {
    this.rejections.inc({ reason });
  }

  /**
   * The exposition of this node's series and the process's, in the Prometheus text
   * format. Rejects when a level cannot be read (say, the store's stats fail): a failed
   * scrape is visible to Prometheus, a silently stale value is not. Empty after `close()`.
   */
  async text(): Promise<string> {
    if (this.closed) return '';
    const scrape = Registry.merge([this.registry, processMetrics()]);
    scrape.setDefaultLabels({ node: this.nodeId });
    return scrape.metrics();
  }

  /**
   * Drops this node's series and stops reading the store, catalog and change log, which
   * may be closed next. Idempotent; recording afterwards is harmless and goes nowhere.
   * The process's default metrics stay: other nodes of the process export them too.
   */
  close(): void {
    this.closed = true;
    this.registry.clear();
    this.pendingStats = undefined;
    this.scrapedProperties = undefined;
  }

  /** A gauge whose value is read when scraped; `undefined` leaves the previous value. */
  private scrapeGauge(
    name: string,
    help: string,
    read: () => number | undefined | Promise<number | undefined>,
  ): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        const value = await read();
        if (value !== undefined && Number.isFinite(value)) this.set(value);
      },
    });
  }

  /** Undefined once the store is closed (a node stopping): a scrape then skips the gauges. */
  private storeStats(): Promise<StoreStats | undefined> {
    this.pendingStats ??= Promise.resolve()
      .then(() => this.store.stats())
      .catch((error: unknown) => {
        if (hasReason(error, ErrorReasons.storeClosed)) return undefined;
        throw error;
      })
      .finally(() => {
        this.pendingStats = undefined;
      });
    return this.pendingStats;
  }

  /** Read once per scrape: the gauges of one scrape are collected in one synchronous pass. */
  private storeProperties(): Record<string, number> {
    if (this.scrapedProperties === undefined) {
      this.scrapedProperties = this.store.properties?.() ?? {};
      queueMicrotask(() => {
        this.scrapedProperties = undefined;
      });
    }
    return this.scrapedProperties;
  }
}
