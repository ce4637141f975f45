/**
 * The keyspace section (rows 13-18 of docs/BENCHMARKS.md): for each dataset of
 * BENCH_KEYSPACE_SETS (keys × value bytes), a memory node against Redis on the same data
 * in the same run.
 *
 * Ours, on node K (`shardsnap serve`, memory backend, `--trace-gc` added to its V8 flags):
 * 13 `shardsnap load` (the CLI) into the empty node; 14 its VmRSS once the heap has
 * settled; 17 the GC pauses during a fetch of a READY full snapshot (from the node's
 * `--trace-gc` lines), per GiB; 15 create + fetch of a full snapshot to a verified file;
 * 16 `shardsnap pull` (the CLI) of the whole node into an empty second node; 18 single-key
 * write latency during a full build (the memory section's row 5 measurement).
 *
 * Redis, after node K is stopped (`redis-server` with no persistence and diskless
 * replication): 13 `redis-cli --pipe` of the same SETs; 14 `INFO memory` used_memory_rss;
 * 15 `redis-cli --rdb`; 16 a second redis-server's full sync after `REPLICAOF`, until it
 * reports master_link_status:up and DBSIZE equals the keys.
 *
 * Row 17 compares the dataset with the most keys with the one with the fewest.
 */
import { spawnSync } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import { Connection, call } from '../src/wire/connection';
import type { DigestResponse__Output } from '../src/generated/shardsnap/v1/DigestResponse';
import { isStopping, removeDir, stopTrackedProcesses } from './cleanup';
import { type BenchConfig, type KeyspaceSet, TARGETS, keyspaceStepTimeout } from './config';
import { type GcSummary, GcTrace, summarizeGc } from './gc-trace';
import { collectGarbageInNode } from './inspector';
import { createFetchRuns, measureWritesDuringBuild, rdbRuns, removeFetched } from './measure';
import {
  BIN,
  type NodeProcess,
  readRss,
  runShardsnap,
  shebangFlags,
  startNodeProcess,
} from './node-process';
import { type RedisServer, findRedis, loadRedis, startRedis } from './redis-baseline';
import { type Row, skippedRow, verdict } from './report';
import { RespConnection } from './resp';
import { buildUntilReady } from './snapshot-builds';
import {
  collectGarbage,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  mibPerSecond,
  now,
  sleep,
  withTimeout,
} from './util';

const GiB = 1024 ** 3;

export const KEYSPACE_ROWS: Record<number, [string, string]> = {
  13: ['keyspace: load (shardsnap load CLI)', `ratio ≤ ${TARGETS.keyspaceLoadRatio}`],
  14: ['keyspace: node RSS after load', `ratio ≤ ${TARGETS.keyspaceRssRatio}`],
  15: ['keyspace: create + fetch full snapshot', `ratio ≤ ${TARGETS.keyspaceFetchRatio}`],
  16: ['keyspace: pull whole node (shardsnap pull CLI)', `ratio ≤ ${TARGETS.keyspacePullRatio}`],
  17: ['keyspace: GC pause per GiB fetched', `big/small ≤ ${TARGETS.keyspaceGcFlatRatio}`],
  18: [
    'keyspace: single-key write p99 during full build',
    `p99 ≤ ${TARGETS.keyspaceWriteP99Ms} ms`,
  ],
};

/** Without a forced GC: longest wait for V8's memory reducer after the load (row 14). */
const SETTLE_WAIT_MS = 20_000;
/** After the forced (or the memory reducer's) collection: RSS read this much later. */
const SETTLE_AFTER_GC_MS = 1_000;
/** The MB of `--trace-gc` lines (V8 prints MiB as MB). */
const MB = 1024 * 1024;
/** Before a timed fetch (row 17): no GC line for this long (at most QUIET_MAX_MS). */
const QUIET_MS = 1_000;
const QUIET_MAX_MS = 10_000;
/** Replica sync polls (row 16), like the builds' GetSnapshot polls. */
const REPLICA_POLL_MS = 5;

// ------------------------------------------------------------------------------ names

/** 1000000 → 1M, 200000 → 200k. */
function compactCount(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1_000 && n % 100 === 0) return `${n / 1_000}k`;
  return String(n);
}

export function setLabel(set: KeyspaceSet): string {
  return `${compactCount(set.keys)}×${set.valueSize}`;
}

/** The row's name with the dataset: `keyspace 1M×1000: load (shardsnap load CLI)`. */
function rowName(n: number, label: string): string {
  const name = KEYSPACE_ROWS[n]?.[0] ?? `measurement ${n}`;
  return name.replace(/^keyspace:/, `keyspace ${label}:`);
}

const rowTarget = (n: number): string => KEYSPACE_ROWS[n]?.[1] ?? '-';

const ratioText = (r: number, digits = 2): string =>
  Number.isFinite(r) ? r.toFixed(digits) : r === Infinity ? '∞' : '-';

const firstLine = (error: unknown): string =>
  error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);

// ---------------------------------------------------------------------------- results

interface RssSettle {
  afterLoadBytes: number;
  settledBytes: number;
  minBytes: number;
  settleMs: number;
  /** How the full collection was forced, or why it could not be. */
  forcedGc?: string;
  forcedGcError?: string;
  /** Without a forced GC: a memory-reducing Mark-Compact was seen after the load. */
  reducerSeen: boolean;
  /** V8 heap after the last collection of the settle (from its --trace-gc line). */
  heapUsedBytes: number;
  heapCommittedBytes: number;
  gcAfterLoad: GcSummary;
}

interface GcFetchRun {
  ms: number;
  bytes: number;
  gc: GcSummary;
  msPerGiB: number;
  incrementalMsPerGiB: number;
}

interface PullRun {
  ms: number;
  keys: number;
  bytes: number;
  /** elapsedMs as the CLI reports it (from its client's call to the result). */
  cliElapsedMs: number;
}

interface PullResult {
  runs: PullRun[];
  /** Digest of node B after the first pull = node K's (undefined: not checked). */
  digestMatch?: boolean;
  digestError?: string;
  digestMs?: { target: number; source: number };
}

interface ReplicaRun {
  ms: number;
  /** From REPLICAOF to master_link_status:up. */
  linkUpMs: number;
  polls: number;
}

interface SetResult {
  set: KeyspaceSet;
  label: string;
  timeoutMs: number;
  loadavgAtStart: number;
  startedAt: number;
  /** Why a row's side failed: `ours` or `redis` per row. */
  failed: Record<number, { ours?: string; redis?: string }>;
  ours: {
    rssEmptyBytes?: number;
    load?: { ms: number; cliElapsedMs: number; bytes: number; dataBytes: number };
    rss?: RssSettle;
    gcFetch?: GcFetchRun[];
    createFetch?: { ms: number; bytes: number }[];
    pull?: PullResult;
    writes?: Row;
    nodeStderrTail?: string;
  };
  redis: {
    missing?: string;
    version?: string;
    load?: { ms: number; replies: number };
    /** used_memory_rss of the empty server, before the load. */
    emptyUsedMemoryRss?: number;
    rss?: { usedMemoryRss: number; usedMemory: number; vmRssBytes: number };
    rdb?: { ms: number; bytes: number }[];
    sync?: ReplicaRun[];
  };
  /** Start-up of the CLI alone (`shardsnap --help`), part of rows 13 and 16. */
  cliStartMs?: number;
}

// ------------------------------------------------------------------------------ steps

class SetRun {
  readonly r: SetResult;
  constructor(
    readonly config: BenchConfig,
    set: KeyspaceSet,
    readonly tmp: string,
    private readonly errors: string[],
  ) {
    this.r = {
      set,
      label: setLabel(set),
      timeoutMs: keyspaceStepTimeout(set),
      loadavgAtStart: loadavg()[0] ?? NaN,
      startedAt: now(),
      failed: {},
      ours: {},
      redis: {},
    };
  }

  get keys(): number {
    return this.r.set.keys;
  }

  fail(n: number, side: 'ours' | 'redis', why: string): void {
    const entry = (this.r.failed[n] ??= {});
    entry[side] ??= why;
  }

  /** One step of row `n`; a failure is recorded for that row's side and returns undefined. */
  async step<T>(
    n: number,
    side: 'ours' | 'redis',
    what: string,
    body: () => Promise<T>,
  ): Promise<T | undefined> {
    if (isStopping()) return undefined;
    try {
      return await body();
    } catch (error) {
      if (isStopping()) return undefined;
      log(
        `measurement ${n} (${this.r.label}, ${what}) failed: ${error instanceof Error ? error.stack : String(error)}`,
      );
      this.errors.push(`${n} (${this.r.label}) ${what}: ${firstLine(error)}`);
      this.fail(n, side, `${what}: ${firstLine(error)}`);
      return undefined;
    }
  }
}

/**
 * VmRSS after the load, then after a full collection forced through the node's inspector
 * (bench/inspector.ts); when that is not possible, after waiting up to SETTLE_WAIT_MS for
 * V8's own memory-reducing collection.
 */
async function settleRss(node: NodeProcess, trace: GcTrace, loadEnd: number): Promise<RssSettle> {
  const afterLoadBytes = readRss(node.pid);
  const started = now();
  let forcedGc: string | undefined;
  let forcedGcError: string | undefined;
  try {
    await collectGarbageInNode(node.pid, node.stderr);
    forcedGc = 'HeapProfiler.collectGarbage';
  } catch (error) {
    forcedGcError = firstLine(error);
    log(`  could not force a GC in the node (${forcedGcError}); waiting for V8's memory reducer`);
  }
  const samples: number[] = [];
  let reducerAt: number | undefined;
  const waitFrom = now();
  const limit = forcedGc ? SETTLE_AFTER_GC_MS : SETTLE_WAIT_MS;
  while (now() - waitFrom < limit && !isStopping()) {
    await sleep(250);
    samples.push(readRss(node.pid));
    if (forcedGc) continue;
    if (reducerAt === undefined) {
      const reducer = trace
        .since(loadEnd)
        .find((e) => e.kind.includes('(reduce)') || e.reason.includes('memory reducer'));
      if (reducer) reducerAt = now();
    } else if (now() - reducerAt >= SETTLE_AFTER_GC_MS) {
      break;
    }
  }
  const settledBytes = readRss(node.pid);
  const after = trace.since(loadEnd);
  const last = after[after.length - 1];
  return {
    afterLoadBytes,
    settledBytes,
    minBytes: Math.min(settledBytes, ...samples),
    settleMs: now() - started,
    forcedGc,
    forcedGcError,
    reducerSeen: reducerAt !== undefined,
    heapUsedBytes: last ? last.heapUsedMb * MB : NaN,
    heapCommittedBytes: last ? last.heapCommittedMb * MB : NaN,
    gcAfterLoad: summarizeGc(after),
  };
}

/** Waits until the node printed no GC line for QUIET_MS (at most QUIET_MAX_MS). */
async function gcQuiet(trace: GcTrace): Promise<void> {
  const started = now();
  while (now() - started < QUIET_MAX_MS) {
    const last = trace.events[trace.events.length - 1];
    if (!last || now() - last.arrivedAt >= QUIET_MS) return;
    await sleep(100);
  }
}

/** Row 17, ours: a READY full snapshot fetched to a verified file, GC pauses of the window. */
async function gcDuringFetch(
  run: SetRun,
  a: ShardsnapClient,
  trace: GcTrace,
): Promise<GcFetchRun[]> {
  const { timeoutMs } = run.r;
  const build = await buildUntilReady(a, [], { timeoutMs });
  const runs: GcFetchRun[] = [];
  try {
    for (let i = 0; i < run.config.keyspaceRuns; i++) {
      const out = join(run.tmp, `gc-fetch-${i}.snap`);
      await gcQuiet(trace);
      collectGarbage();
      const t0 = now();
      const result = await withTimeout(
        a.fetchToFile({ snapshotId: build.id, out }),
        timeoutMs,
        'fetchToFile',
      );
      const t1 = now();
      if (result.sha256 !== build.info.sha256 || result.bytes !== Number(build.info.sizeBytes))
        throw new Error(
          `fetched ${result.bytes} bytes with sha256 ${result.sha256}, expected ${build.info.sizeBytes} / ${build.info.sha256}`,
        );
      await removeFetched(out);
      // The lines of the window's last collections are on their way.
      await sleep(200);
      const gc = summarizeGc(trace.between(t0, t1));
      const gib = result.bytes / GiB;
      runs.push({
        ms: t1 - t0,
        bytes: result.bytes,
        gc,
        msPerGiB: gc.pauseMs / gib,
        incrementalMsPerGiB: gc.incrementalMs / gib,
      });
      log(
        `  fetch of READY snapshot run ${i + 1}: ${formatMs(t1 - t0)} (${formatBytes(result.bytes)}, ` +
          `${mibPerSecond(result.bytes, t1 - t0).toFixed(1)} MiB/s); GC on the node: ${gc.scavenges} scavenges ` +
          `${formatMs(gc.scavengeMs)}, ${gc.markCompacts} mark-compacts ${formatMs(gc.markCompactMs)} ` +
          `(+ ${formatMs(gc.incrementalMs)} incremental marking) = ${(gc.pauseMs / gib).toFixed(1)} ms/GiB`,
      );
    }
  } finally {
    await a.deleteSnapshot({ snapshotId: build.id });
  }
  return runs;
}

/** Row 16, ours: `shardsnap pull` of the whole node into a fresh, empty node each run. */
async function pullRuns(run: SetRun, nodeK: NodeProcess, a: ShardsnapClient): Promise<PullResult> {
  const runs: PullRun[] = [];
  let digestMatch: boolean | undefined;
  let digestError: string | undefined;
  let digestMs: { target: number; source: number } | undefined;
  for (let i = 0; i < run.config.keyspaceRuns; i++) {
    const dataDir = join(run.tmp, `node-b-${i}`);
    const before = new Set((await a.listSnapshots()).map((s) => s.id));
    const nodeB = await startNodeProcess({ name: `keyspace-b-${i}`, dataDir });
    const b = new ShardsnapClient(nodeB.address);
    try {
      await b.stats();
      const cli = await runShardsnap(
        ['pull', '--to', nodeB.address, '--from', nodeK.address],
        run.r.timeoutMs,
        'shardsnap pull',
      );
      const keys = Number(cli.output.keysInstalled);
      if (keys !== run.keys) throw new Error(`pull installed ${keys} keys, expected ${run.keys}`);
      runs.push({
        ms: cli.ms,
        keys,
        bytes: Number(cli.output.bytes),
        cliElapsedMs: Number(cli.output.elapsedMs),
      });
      log(
        `  shardsnap pull run ${i + 1}: ${formatMs(cli.ms)} (${formatCount(keys)} keys, ` +
          `${formatBytes(Number(cli.output.bytes))}; the CLI's own figure ${formatMs(Number(cli.output.elapsedMs))})`,
      );
      if (i === 0) {
        // Not timed: node B holds exactly node K's data. One node after the other, each on
        // a channel without keepalive pings (see quietDigest).
        try {
          const db = await quietDigest(nodeB.address, run.r.timeoutMs);
          const dk = await quietDigest(nodeK.address, run.r.timeoutMs);
          digestMs = { target: db.ms, source: dk.ms };
          digestMatch = dk.digest === db.digest && dk.keyCount === db.keyCount;
          log(
            `  digests: B ${formatMs(db.ms)}, K ${formatMs(dk.ms)}: ${digestMatch ? 'equal' : 'DIFFERENT'}`,
          );
          if (!digestMatch)
            log(`  WARNING: digest after the pull differs (${dk.digest} vs ${db.digest})`);
        } catch (error) {
          digestError = firstLine(error);
          log(`  WARNING: the digest check after the pull did not complete: ${digestError}`);
        }
      }
    } finally {
      b.close();
      await nodeB.stop();
      await removeDir(dataDir);
      // The pull's snapshot stays READY on node K: remove it (disk, and the next run's build).
      for (const s of await a.listSnapshots().catch(() => []))
        if (!before.has(s.id)) await a.deleteSnapshot({ snapshotId: s.id }).catch(() => undefined);
    }
  }
  return { runs, digestMatch, digestError, digestMs };
}

/**
 * Digest of a whole node on a channel of its own without keepalive pings: the client's
 * usual channel pings every 30 s and drops the connection when a node busy computing a
 * digest does not answer within 20 s (seen with 10,000,000 keys).
 */
async function quietDigest(
  address: string,
  timeoutMs: number,
): Promise<{ digest: string; keyCount: number; ms: number }> {
  const conn = new Connection(address, {
    channelOptions: { 'grpc.max_receive_message_length': 64 << 20 },
  });
  try {
    const t0 = now();
    const result = await withTimeout(
      call<DigestResponse__Output>('Digest', (cb) => conn.shard.Digest({ slots: [] }, cb)),
      timeoutMs,
      `Digest of ${address}`,
    );
    return { digest: result.digest, keyCount: Number(result.keyCount), ms: now() - t0 };
  } finally {
    conn.close();
  }
}

async function oursSide(run: SetRun): Promise<void> {
  const { config, tmp, r } = run;
  const trace = new GcTrace();
  const dataDir = join(tmp, 'node-k');
  const node = await startNodeProcess({
    name: `keyspace-k-${r.label}`,
    dataDir,
    // --inspect-port=0 only chooses the port the inspector opens on at SIGUSR1 (row 14).
    nodeFlags: ['--trace-gc', '--inspect-port=0'],
    onStdout: trace.push,
  });
  const a = new ShardsnapClient(node.address);
  try {
    await a.stats();
    r.ours.rssEmptyBytes = readRss(node.pid);
    log(`  node K (memory, pid ${node.pid}, --trace-gc) on ${node.address}`);
    r.ours.load = await run.step(13, 'ours', 'shardsnap load', async () => {
      const cli = await runShardsnap(
        [
          'load',
          '--to',
          node.address,
          '--keys',
          String(r.set.keys),
          '--value-size',
          String(r.set.valueSize),
          '--types',
          'string',
          '--seed',
          String(config.seed),
          '--concurrency',
          '4',
        ],
        r.timeoutMs,
        'shardsnap load',
      );
      const stats = await a.stats();
      if (Number(stats.keyCount) !== r.set.keys)
        throw new Error(`the node holds ${stats.keyCount} keys after loading ${r.set.keys}`);
      return {
        ms: cli.ms,
        cliElapsedMs: Number(cli.output.elapsedMs),
        bytes: Number(cli.output.bytes),
        dataBytes: Number(stats.dataBytes),
      };
    });
    const loadEnd = now();
    if (!r.ours.load) {
      for (const n of [14, 15, 16, 17, 18]) run.fail(n, 'ours', 'the load failed');
      return;
    }
    log(
      `  shardsnap load: ${formatMs(r.ours.load.ms)} (${formatCount(r.set.keys / (r.ours.load.ms / 1000))} keys/s; ` +
        `the CLI's own figure ${formatMs(r.ours.load.cliElapsedMs)})`,
    );
    r.ours.rss = await run.step(14, 'ours', 'RSS after the load', () =>
      settleRss(node, trace, loadEnd),
    );
    if (r.ours.rss)
      log(
        `  node K RSS: ${formatBytes(r.ours.rss.afterLoadBytes)} after the load, ${formatBytes(r.ours.rss.settledBytes)} ` +
          `after ${r.ours.rss.forcedGc ? 'a forced full GC' : `${formatMs(r.ours.rss.settleMs)} (memory-reducing GC ${r.ours.rss.reducerSeen ? 'seen' : 'not seen'})`}; ` +
          `V8 heap ${formatBytes(r.ours.rss.heapUsedBytes)} used, ${formatBytes(r.ours.rss.heapCommittedBytes)} committed`,
      );
    r.ours.gcFetch = await run.step(17, 'ours', 'GC during a fetch', () =>
      gcDuringFetch(run, a, trace),
    );
    r.ours.createFetch = await run.step(15, 'ours', 'create + fetch', () =>
      createFetchRuns(a, {
        runs: config.keyspaceRuns,
        tmp,
        keys: r.set.keys,
        timeoutMs: r.timeoutMs,
      }),
    );
    r.ours.pull = await run.step(16, 'ours', 'shardsnap pull', () => pullRuns(run, node, a));
    // Last: it overwrites keys (same sizes).
    r.ours.writes = await run.step(18, 'ours', 'writes during a build', async () => {
      const measured = await measureWritesDuringBuild(
        {
          config: {
            ...config,
            keys: r.set.keys,
            valueSize: r.set.valueSize,
            stepTimeoutMs: r.timeoutMs,
          },
          a,
          nodeA: node,
        },
        { n: 18, name: rowName(18, r.label), targetP99Ms: TARGETS.keyspaceWriteP99Ms },
      );
      return measured.row;
    });
    const stderr = node.stderr.toString().trim();
    if (stderr) r.ours.nodeStderrTail = stderr.slice(-4000);
  } finally {
    a.close();
    await node.stop();
    await removeDir(dataDir);
  }
}

/** `INFO <section>` as key → value. */
async function redisInfo(conn: RespConnection, section: string): Promise<Record<string, string>> {
  const text = await conn.text(['INFO', section]);
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

/** Row 16, Redis: a fresh redis-server per run syncs the whole master after `REPLICAOF`. */
async function replicaRuns(run: SetRun, master: RedisServer): Promise<ReplicaRun[]> {
  const runs: ReplicaRun[] = [];
  for (let i = 0; i < run.config.keyspaceRuns; i++) {
    const dir = join(run.tmp, `redis-replica-${i}`);
    await mkdir(dir, { recursive: true });
    // Diskless on both sides: the master streams the RDB (repl-diskless-sync) and the
    // empty replica loads it from the socket (repl-diskless-load on-empty-db).
    const replica = await startRedis(dir, ['--repl-diskless-load', 'on-empty-db']);
    let conn: RespConnection | undefined;
    try {
      conn = await RespConnection.connect(replica.port);
      const t0 = now();
      await conn.ok(['REPLICAOF', '127.0.0.1', String(master.port)]);
      let polls = 0;
      let linkUpMs = NaN;
      for (;;) {
        const info = await redisInfo(conn, 'replication');
        polls++;
        if (info.master_link_status === 'up') {
          if (!Number.isFinite(linkUpMs)) linkUpMs = now() - t0;
          if ((await conn.call(['DBSIZE'])) === run.keys) break;
        }
        if (now() - t0 > run.r.timeoutMs)
          throw new Error(
            `the replica did not sync within ${Math.round(run.r.timeoutMs / 1000)} s (master_link_status ${info.master_link_status})`,
          );
        await sleep(REPLICA_POLL_MS);
      }
      const ms = now() - t0;
      runs.push({ ms, linkUpMs, polls });
      log(
        `  redis replica full sync run ${i + 1}: ${formatMs(ms)} (link up at ${formatMs(linkUpMs)})`,
      );
    } finally {
      conn?.close();
      await replica.stop();
      await removeDir(dir);
    }
  }
  return runs;
}

async function redisSide(run: SetRun): Promise<void> {
  const { config, tmp, r } = run;
  const tools = findRedis();
  if ('missing' in tools) {
    r.redis.missing = tools.missing;
    return;
  }
  r.redis.version = tools.version;
  const dir = join(tmp, 'redis-master');
  await mkdir(dir, { recursive: true });
  const server = await run.step(13, 'redis', 'starting redis-server', () => startRedis(dir));
  if (!server) {
    for (const n of [14, 15, 16]) run.fail(n, 'redis', 'redis-server did not start');
    return;
  }
  let conn: RespConnection | undefined;
  try {
    conn = await RespConnection.connect(server.port);
    const c = conn;
    r.redis.emptyUsedMemoryRss = Number((await redisInfo(c, 'memory')).used_memory_rss);
    log(`  loading ${formatCount(r.set.keys)} keys into redis-server on port ${server.port}`);
    r.redis.load = await run.step(13, 'redis', 'redis-cli --pipe', async () => {
      const loaded = await loadRedis(
        server,
        { keys: r.set.keys, valueSize: r.set.valueSize, seed: config.seed },
        r.timeoutMs,
      );
      const dbsize = await c.call(['DBSIZE']);
      if (dbsize !== r.set.keys)
        throw new Error(`redis DBSIZE answered ${String(dbsize)}, expected ${r.set.keys}`);
      return loaded;
    });
    if (!r.redis.load) {
      for (const n of [14, 15, 16]) run.fail(n, 'redis', 'the redis load failed');
      return;
    }
    log(`  redis-cli --pipe: ${formatMs(r.redis.load.ms)}`);
    r.redis.rss = await run.step(14, 'redis', 'INFO memory', async () => {
      // used_memory_rss is refreshed by the server's cron; give it a few ticks.
      await sleep(1_000);
      const info = await redisInfo(c, 'memory');
      const usedMemoryRss = Number(info.used_memory_rss);
      if (!(usedMemoryRss > 0)) throw new Error(`INFO memory has no used_memory_rss`);
      return {
        usedMemoryRss,
        usedMemory: Number(info.used_memory),
        vmRssBytes: readRss(server.pid),
      };
    });
    r.redis.rdb = await run.step(15, 'redis', 'redis-cli --rdb', () =>
      rdbRuns(server, dir, config.keyspaceRuns, r.timeoutMs),
    );
    r.redis.sync = await run.step(16, 'redis', 'replica full sync', () => replicaRuns(run, server));
  } finally {
    conn?.close();
    await server.stop();
    await removeDir(dir);
  }
}

// ------------------------------------------------------------------------------- rows

/** A row comparing ours with Redis (ratio = ours / Redis; PASS when ≤ `limit`). */
function compareRow(
  n: number,
  r: SetResult,
  ours: number | undefined,
  redis: number | undefined,
  limit: number,
  text: (v: number) => string,
  note: string,
  details: Record<string, unknown>,
): Row {
  const name = rowName(n, r.label);
  const target = rowTarget(n);
  const failed = r.failed[n] ?? {};
  const oursText = ours === undefined ? '-' : text(ours);
  if (ours === undefined || failed.ours) {
    const row = skippedRow(n, name, target, `ERROR: ${failed.ours ?? 'did not run'}`, 'ERROR');
    return { ...row, details };
  }
  if (r.redis.missing || redis === undefined || failed.redis) {
    const row = r.redis.missing
      ? skippedRow(n, name, target, `SKIPPED: ${r.redis.missing}; ${note}`)
      : skippedRow(
          n,
          name,
          target,
          `ERROR (baseline): ${failed.redis ?? 'did not run'}; ${note}`,
          'ERROR',
        );
    return { ...row, value: ours, valueText: oursText, details };
  }
  const ratio = ours / redis;
  return {
    n,
    name,
    value: ours,
    valueText: oursText,
    baseline: redis,
    baselineText: text(redis),
    ratio,
    ratioText: ratioText(ratio),
    target,
    verdict: verdict(ratio <= limit),
    note,
    details,
  };
}

const perRun = (list: readonly { ms: number }[]): string =>
  list.map((x) => formatMs(x.ms)).join('/');

function digestText(pull: PullResult | undefined): string {
  if (!pull) return 'n/a';
  if (pull.digestError) return `not checked (${pull.digestError})`;
  if (pull.digestMatch === undefined) return 'n/a';
  const took = pull.digestMs
    ? ` (Digest took ${formatMs(pull.digestMs.target)} on B, ${formatMs(pull.digestMs.source)} on K)`
    : '';
  return `${pull.digestMatch ? 'yes' : 'NO'}${took}`;
}

/** Bytes per key above the empty process, or '-'. */
function perKey(loaded: number | undefined, empty: number | undefined, keys: number): string {
  if (loaded === undefined || empty === undefined || !Number.isFinite(loaded - empty)) return '-';
  return `${formatCount((loaded - empty) / keys)} B`;
}

function rssNote(r: SetResult, rss: RssSettle): string {
  const { ours, redis } = r;
  const how = rss.forcedGc
    ? `after a full GC forced through the inspector (${rss.forcedGc})`
    : `${formatMs(rss.settleMs)} after the load, no GC could be forced (${rss.forcedGcError ?? '-'}), ` +
      `memory-reducing GC ${rss.reducerSeen ? 'seen' : 'not seen'}`;
  return (
    `ours = VmRSS of the node ${how}; right after the load ${formatBytes(rss.afterLoadBytes)}, empty ` +
    `${formatBytes(ours.rssEmptyBytes ?? NaN)}, V8 heap ${formatBytes(rss.heapUsedBytes)} used / ` +
    `${formatBytes(rss.heapCommittedBytes)} committed; baseline = INFO memory used_memory_rss (empty ` +
    `${formatBytes(redis.emptyUsedMemoryRss ?? NaN)}, used_memory ${formatBytes(redis.rss?.usedMemory ?? NaN)}, ` +
    `VmRSS ${formatBytes(redis.rss?.vmRssBytes ?? NaN)}); per key above empty: ours ` +
    `${perKey(rss.settledBytes, ours.rssEmptyBytes, r.set.keys)}, redis ` +
    `${perKey(redis.rss?.usedMemoryRss, redis.emptyUsedMemoryRss, r.set.keys)}; key + value bytes ` +
    `${formatBytes(ours.load?.dataBytes ?? NaN)}`
  );
}

function setRows(r: SetResult): Row[] {
  const rows: Row[] = [];
  const { ours, redis } = r;
  const cli = r.cliStartMs === undefined ? '' : `; CLI start-up alone ${formatMs(r.cliStartMs)}`;
  rows.push(
    compareRow(
      13,
      r,
      ours.load?.ms,
      redis.load?.ms,
      TARGETS.keyspaceLoadRatio,
      formatMs,
      `${formatCount(r.set.keys)} SETs of ${r.set.valueSize} B; ours = bin/shardsnap load (spawn to exit; the CLI's own figure ` +
        `${ours.load ? formatMs(ours.load.cliElapsedMs) : '-'}${cli}) into an empty node; ` +
        `baseline = redis-cli --pipe of the same SETs (spawn to exit, 0 errors, DBSIZE checked)`,
      { ours: ours.load, redis: redis.load, cliStartMs: r.cliStartMs },
    ),
  );
  const rss = ours.rss;
  rows.push(
    compareRow(
      14,
      r,
      rss?.settledBytes,
      redis.rss?.usedMemoryRss,
      TARGETS.keyspaceRssRatio,
      formatBytes,
      rss ? rssNote(r, rss) : '',
      { ours: { ...rss, rssEmptyBytes: ours.rssEmptyBytes }, redis: redis.rss },
    ),
  );
  const cf = ours.createFetch;
  rows.push(
    compareRow(
      15,
      r,
      cf ? median(cf.map((x) => x.ms)) : undefined,
      redis.rdb ? median(redis.rdb.map((x) => x.ms)) : undefined,
      TARGETS.keyspaceFetchRatio,
      formatMs,
      `ours = fetchToFile({out}) as row 2 (CreateSnapshot, fetch while building, verify, fsync), ` +
        `${formatBytes(cf?.[0]?.bytes ?? NaN)}; baseline = redis-cli --rdb, RDB ${formatBytes(redis.rdb?.[0]?.bytes ?? NaN)}` +
        (cf && redis.rdb ? `; per run ours ${perRun(cf)}, redis ${perRun(redis.rdb)}` : ''),
      { ours: cf, redis: redis.rdb },
    ),
  );
  const pull = ours.pull;
  const pullRow = compareRow(
    16,
    r,
    pull ? median(pull.runs.map((x) => x.ms)) : undefined,
    redis.sync ? median(redis.sync.map((x) => x.ms)) : undefined,
    TARGETS.keyspacePullRatio,
    formatMs,
    `ours = bin/shardsnap pull --to B --from K (spawn to exit) into an empty node B, ` +
      `${formatBytes(pull?.runs[0]?.bytes ?? NaN)}; the CLI's own figure ${pull ? perRun(pull.runs.map((x) => ({ ms: x.cliElapsedMs }))) : '-'}` +
      `${cli}; digest K = B: ${digestText(pull)}; ` +
      `baseline = REPLICAOF on an empty redis-server (diskless sync and load) until master_link_status:up and DBSIZE = keys` +
      (redis.sync ? ` (link up at ${redis.sync.map((x) => formatMs(x.linkUpMs)).join('/')})` : '') +
      (pull && redis.sync
        ? `; per run ours ${perRun(pull.runs)}, redis ${perRun(redis.sync)}`
        : ''),
    { ours: pull, redis: redis.sync },
  );
  // A pull that installed different data does not pass.
  if (pull?.digestMatch === false && pullRow.verdict === 'PASS') pullRow.verdict = 'MISS';
  rows.push(pullRow);
  if (ours.writes) {
    rows.push(ours.writes);
  } else {
    const row = skippedRow(
      18,
      rowName(18, r.label),
      rowTarget(18),
      `ERROR: ${r.failed[18]?.ours ?? 'did not run'}`,
      'ERROR',
    );
    rows.push(row);
  }
  for (const row of rows) {
    row.details = {
      ...row.details,
      dataset: r.set,
      loadavg1mAtStart: r.loadavgAtStart,
      wallMs: now() - r.startedAt,
    };
  }
  return rows;
}

/** Row 17: ms of GC pause per GiB fetched, the dataset with most keys over the one with fewest. */
function gcRow(results: readonly SetResult[]): Row {
  const target = rowTarget(17);
  const sorted = [...results].sort((x, y) => x.set.keys - y.set.keys);
  const small = sorted[0];
  const big = sorted[sorted.length - 1];
  const perSet = results.map((r) => {
    const runs = r.ours.gcFetch;
    return {
      label: r.label,
      set: r.set,
      msPerGiB: runs ? median(runs.map((x) => x.msPerGiB)) : NaN,
      incrementalMsPerGiB: runs ? median(runs.map((x) => x.incrementalMsPerGiB)) : NaN,
      runs,
      error: r.failed[17]?.ours,
    };
  });
  const describe = perSet
    .map((p) => {
      const run = p.runs?.[0];
      if (!run) return `${p.label}: ${p.error ?? 'did not run'}`;
      return (
        `${p.label}: ${p.msPerGiB.toFixed(1)} ms/GiB (${formatBytes(run.bytes)} in ${formatMs(run.ms)}; ` +
        `${run.gc.scavenges} scavenges ${formatMs(run.gc.scavengeMs)}, ${run.gc.markCompacts} mark-compacts ` +
        `${formatMs(run.gc.markCompactMs)}, max ${formatMs(run.gc.maxPauseMs)}; + incremental marking ` +
        `${p.incrementalMsPerGiB.toFixed(1)} ms/GiB)`
      );
    })
    .join('; ');
  const note =
    `pauses of the node's --trace-gc Scavenge and Mark-Compact lines that ended during fetchToFile of a READY full snapshot; ` +
    describe;
  const details = { perSet };
  if (!small || !big) return skippedRow(17, KEYSPACE_ROWS[17]?.[0] ?? '', target, 'no dataset');
  const name = `keyspace ${big.label} vs ${small.label}: GC pause per GiB fetched`;
  const failed = perSet.find((p) => p.error !== undefined || !p.runs);
  if (failed)
    return {
      ...skippedRow(
        17,
        name,
        target,
        `ERROR: ${failed.label}: ${failed.error ?? 'did not run'}`,
        'ERROR',
      ),
      details,
    };
  const value = perSet.find((p) => p.label === big.label)?.msPerGiB ?? NaN;
  const baseline = perSet.find((p) => p.label === small.label)?.msPerGiB ?? NaN;
  const valueText = `${value.toFixed(1)} ms/GiB`;
  if (small === big)
    return {
      ...skippedRow(17, name, target, `SKIPPED: one dataset only; ${note}`),
      value,
      valueText,
      details,
    };
  // Both zero is flat; a pause on the big set only is not.
  const ratio = baseline > 0 ? value / baseline : value > 0 ? Infinity : 1;
  return {
    n: 17,
    name,
    value,
    valueText,
    baseline,
    baselineText: `${baseline.toFixed(1)} ms/GiB`,
    ratio: Number.isFinite(ratio) ? ratio : null,
    ratioText: ratioText(ratio),
    target,
    verdict: verdict(ratio <= TARGETS.keyspaceGcFlatRatio),
    note,
    details,
  };
}

// ---------------------------------------------------------------------------- section

/** Time to start the CLI and exit (`shardsnap --help`), for the notes of rows 13 and 16. */
function cliStartMs(): number | undefined {
  const t0 = now();
  const result = spawnSync(process.execPath, [...shebangFlags(), BIN, '--help'], {
    stdio: 'ignore',
    timeout: 30_000,
  });
  return result.status === 0 ? now() - t0 : undefined;
}

/** Rows 13-18: every dataset in turn, ours then Redis, each side's processes stopped after it. */
export async function keyspaceSuite(
  config: BenchConfig,
  tmp: string,
  rows: Row[],
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  const done: SetResult[] = [];
  try {
    const startup = cliStartMs();
    for (const [i, set] of config.keyspaceSets.entries()) {
      if (isStopping()) return;
      const dir = join(tmp, `set-${i}`);
      await mkdir(dir, { recursive: true });
      const run = new SetRun(config, set, dir, errors);
      run.r.cliStartMs = startup;
      log(
        `measurements 13-18, dataset ${i + 1}/${config.keyspaceSets.length}: ${formatCount(set.keys)} keys × ${set.valueSize} B ` +
          `(step timeout ${formatMs(run.r.timeoutMs)})`,
      );
      try {
        try {
          await oursSide(run);
        } catch (error) {
          if (isStopping()) return;
          log(
            `keyspace ${run.r.label}: node K failed: ${error instanceof Error ? error.stack : String(error)}`,
          );
          errors.push(`13-18 (${run.r.label}) node K: ${firstLine(error)}`);
          for (const n of [13, 14, 15, 16, 17, 18])
            run.fail(n, 'ours', `node K: ${firstLine(error)}`);
        }
        await stopTrackedProcesses();
        try {
          await redisSide(run);
        } catch (error) {
          if (isStopping()) return;
          log(
            `keyspace ${run.r.label}: redis failed: ${error instanceof Error ? error.stack : String(error)}`,
          );
          errors.push(`13-16 (${run.r.label}) redis: ${firstLine(error)}`);
          for (const n of [13, 14, 15, 16]) run.fail(n, 'redis', `redis: ${firstLine(error)}`);
        }
      } finally {
        await stopTrackedProcesses();
        await removeDir(dir);
      }
      rows.push(...setRows(run.r));
      done.push(run.r);
    }
    if (done.length > 0) rows.push(gcRow(done));
    results.keyspace = {
      sets: done.map((r) => ({
        dataset: r.set,
        label: r.label,
        timeoutMs: r.timeoutMs,
        cliStartMs: r.cliStartMs,
        failed: r.failed,
        ours: { ...r.ours, writes: undefined },
        redis: r.redis,
      })),
      runs: config.keyspaceRuns,
    };
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}
