/**
 * The durability section (rows 32-35): memory nodes with a write-ahead log against Redis
 * with an append-only file, in the same run.
 *
 * - 32-33, write throughput: BENCH_DURABILITY_WRITE_KEYS SETs of
 *   BENCH_DURABILITY_VALUE_SIZE bytes into an empty node through `shardsnap load`
 *   (batches of the synthetic generator, 4 in flight), once per configuration and run:
 *   `--no-wal`, `--wal-fsync everysec`, `--wal-fsync always`. Redis gets the same batches
 *   as MSETs, 4 connections each with one in flight, with `appendonly no`, `appendfsync
 *   everysec` and `appendfsync always`. A fresh process on a fresh dir for every load.
 * - 34, restart: BENCH_DURABILITY_KEYS keys loaded into a node that takes a local snapshot
 *   every SNAPSHOT_INTERVAL_S; once one covers the whole load, 1% of the keys are written
 *   again (the WAL tail), the node is killed with SIGKILL and started again on its dir:
 *   spawn until Stats reports the recovery done. Redis: the same load and tail around a
 *   BGREWRITEAOF (so the AOF is an RDB preamble plus the tail), SIGKILL, restart: spawn
 *   until PING answers and INFO says loading:0.
 * - 35, delta: on the restarted node, the seq is read, 1% of the keys change, then create
 *   + fetch of a full snapshot against create + fetch of a delta since that seq.
 */
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import { loadSynthetic } from '../src/client/load';
import { syntheticBatches } from '../src/client/synthetic';
import { isStopping, removeDir, stopTrackedProcesses } from './cleanup';
import { type BenchConfig, TARGETS } from './config';
import {
  type DurabilitySupport,
  type LocalSnapshotFile,
  type Recovery,
  durabilitySupport,
  killNode,
  localSnapshotFiles,
  waitLocalSnapshot,
  waitRecovered,
} from './durable-node';
import { type NodeProcess, runShardsnap, startNodeProcess } from './node-process';
import {
  type AppendFsync,
  type TimedRedis,
  aofArgs,
  msetLoad,
  redisInfo,
  rewriteAof,
  startTimedRedis,
} from './redis-aof';
import { findRedis } from './redis-baseline';
import { type Row, skippedRow, verdict } from './report';
import { RespConnection } from './resp';
import {
  collectGarbage,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  now,
  sleep,
  withTimeout,
} from './util';

type Attempt = (n: number, body: () => Promise<Row>) => Promise<void>;

/** `shardsnap load` of `keys` string keys into `address`, as every row loads them. */
function loadArgs(address: string, keys: number, config: BenchConfig): string[] {
  return [
    'load',
    '--to',
    address,
    '--keys',
    String(keys),
    '--value-size',
    String(config.durabilityValueSize),
    '--types',
    'string',
    '--seed',
    String(config.seed),
    '--concurrency',
    String(CONCURRENCY),
  ];
}

export const DURABILITY_ROWS: Record<number, [string, string]> = {
  32: [
    'durability: write keys/s, --wal-fsync everysec vs --no-wal',
    `ratio ≥ ${TARGETS.durabilityEverysecRatio}`,
  ],
  33: [
    'durability: write keys/s, --wal-fsync always vs Redis appendfsync always',
    `ratio ≥ ${TARGETS.durabilityAlwaysRatio}`,
  ],
  34: [
    'durability: restart (local snapshot + WAL tail) vs Redis AOF+RDB load',
    `ratio ≤ ${TARGETS.durabilityRestartRatio}`,
  ],
  35: [
    'durability: delta of 1% of keys vs full snapshot (bytes, time)',
    `both ratios ≤ ${TARGETS.durabilityDeltaRatio}`,
  ],
};

/** Batches in flight of every writer of rows 32-33 (`shardsnap load --concurrency`). */
const CONCURRENCY = 4;
/** Row 34: `--local-snapshot-interval` of the restarted node. */
const SNAPSHOT_INTERVAL_S = 10;
/** Row 34: a WAL-bytes threshold never reached, so that only the interval triggers. */
const NEVER_BY_BYTES = '64GiB';
/** Both sides of row 34 wait this long after the tail, so an everysec sync has happened. */
const AFTER_TAIL_MS = 1_500;
/** Row 35: the changed keys (and row 34's tail), as a fraction of the keys. */
const CHANGED_FRACTION = 0.01;

const firstLine = (error: unknown): string =>
  error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);

const keysPerSec = (v: number): string => `${formatCount(v)} keys/s`;

/** 1000000 → 1M, 200000 → 200k. */
function compact(n: number): string {
  if (n >= 1_000_000 && n % 100_000 === 0) return `${n / 1_000_000}M`;
  if (n >= 1_000 && n % 100 === 0) return `${n / 1_000}k`;
  return String(n);
}

function rowName(n: number, label: string): string {
  const name = DURABILITY_ROWS[n]?.[0] ?? `measurement ${n}`;
  return name.replace(/^durability:/, `durability ${label}:`);
}

const rowTarget = (n: number): string => DURABILITY_ROWS[n]?.[1] ?? '-';

// ------------------------------------------------------------------- rows 32-33: writes

type OursMode = 'no-wal' | 'everysec' | 'always';
type RedisMode = 'off' | AppendFsync;

const OURS_MODES: readonly OursMode[] = ['no-wal', 'everysec', 'always'];
const REDIS_MODES: readonly RedisMode[] = ['off', 'everysec', 'always'];

interface LoadRun {
  keysPerSec: number;
  /** Timed part: the CLI's own figure (connect to done) / the MSET writer's. */
  ms: number;
  /** Ours: spawn of `shardsnap load` to its exit. */
  spawnToExitMs?: number;
  batches: number;
}

interface WriteResults {
  keys: number;
  valueSize: number;
  ours: Partial<Record<OursMode, LoadRun[]>>;
  redis: Partial<Record<RedisMode, LoadRun[]>>;
  /** Why a configuration has no figure. */
  failed: Partial<Record<string, string>>;
}

function oursFlags(mode: OursMode, support: DurabilitySupport): string[] {
  // Without WAL flags in this build, a plain node is the no-WAL configuration.
  if (!support.wal) return [];
  return mode === 'no-wal' ? ['--no-wal'] : ['--wal-fsync', mode];
}

async function oursLoad(
  config: BenchConfig,
  tmp: string,
  mode: OursMode,
  run: number,
  support: DurabilitySupport,
): Promise<LoadRun> {
  const dataDir = join(tmp, `w-${mode}-${run}`);
  const keys = config.durabilityWriteKeys;
  const node = await startNodeProcess({
    name: `dur-w-${mode}-${run}`,
    dataDir,
    extraArgs: oursFlags(mode, support),
  });
  const client = new ShardsnapClient(node.address);
  try {
    await client.stats();
    const cli = await runShardsnap(
      loadArgs(node.address, keys, config),
      config.durabilityStepTimeoutMs,
      'shardsnap load',
    );
    const stats = await client.stats();
    if (Number(stats.keyCount) !== keys)
      throw new Error(`the node holds ${stats.keyCount} keys after loading ${keys}`);
    const ms = Number(cli.output.elapsedMs);
    return {
      keysPerSec: keys / (ms / 1000),
      ms,
      spawnToExitMs: cli.ms,
      batches: Number(cli.output.batches),
    };
  } finally {
    client.close();
    await node.stop();
    await removeDir(dataDir);
  }
}

async function redisLoad(
  config: BenchConfig,
  tmp: string,
  mode: RedisMode,
  run: number,
): Promise<LoadRun> {
  const dir = join(tmp, `redis-w-${mode}-${run}`);
  await mkdir(dir, { recursive: true });
  const keys = config.durabilityWriteKeys;
  const server = await startTimedRedis(dir, aofArgs(mode), 30_000);
  let conn: RespConnection | undefined;
  try {
    const loaded = await msetLoad(
      server.port,
      {
        keys,
        valueSize: config.durabilityValueSize,
        seed: config.seed,
        concurrency: CONCURRENCY,
      },
      config.durabilityStepTimeoutMs,
    );
    conn = await RespConnection.connect(server.port);
    const dbsize = await conn.integer(['DBSIZE']);
    if (dbsize !== keys) throw new Error(`redis DBSIZE answered ${dbsize}, expected ${keys}`);
    return { keysPerSec: keys / (loaded.ms / 1000), ms: loaded.ms, batches: loaded.batches };
  } finally {
    conn?.close();
    await server.stop();
    await removeDir(dir);
  }
}

async function writeRuns(
  config: BenchConfig,
  tmp: string,
  support: DurabilitySupport,
  redisMissing: string | undefined,
): Promise<WriteResults> {
  const results: WriteResults = {
    keys: config.durabilityWriteKeys,
    valueSize: config.durabilityValueSize,
    ours: {},
    redis: {},
    failed: {},
  };
  const oursModes = support.wal ? OURS_MODES : OURS_MODES.filter((m) => m === 'no-wal');
  for (const mode of OURS_MODES)
    if (!oursModes.includes(mode))
      results.failed[`ours ${mode}`] =
        `this build of shardsnap serve has no ${support.missing.join(', ')}`;
  if (redisMissing) for (const mode of REDIS_MODES) results.failed[`redis ${mode}`] = redisMissing;
  // Configurations interleaved run by run, so a busier minute of the machine hits all.
  for (let run = 0; run < config.durabilityRuns; run++) {
    for (const mode of oursModes) {
      if (isStopping() || results.failed[`ours ${mode}`]) continue;
      try {
        const r = await oursLoad(config, tmp, mode, run, support);
        (results.ours[mode] ??= []).push(r);
        log(
          `  run ${run + 1} ours ${mode}: ${keysPerSec(r.keysPerSec)} (${formatMs(r.ms)}, spawn to exit ${formatMs(r.spawnToExitMs ?? NaN)})`,
        );
      } catch (error) {
        if (isStopping()) return results;
        log(`  ours ${mode} failed: ${error instanceof Error ? error.stack : String(error)}`);
        results.failed[`ours ${mode}`] = firstLine(error);
      }
    }
    if (redisMissing) continue;
    for (const mode of REDIS_MODES) {
      if (isStopping() || results.failed[`redis ${mode}`]) continue;
      try {
        const r = await redisLoad(config, tmp, mode, run);
        (results.redis[mode] ??= []).push(r);
        log(`  run ${run + 1} redis ${mode}: ${keysPerSec(r.keysPerSec)} (${formatMs(r.ms)})`);
      } catch (error) {
        if (isStopping()) return results;
        log(`  redis ${mode} failed: ${error instanceof Error ? error.stack : String(error)}`);
        results.failed[`redis ${mode}`] = firstLine(error);
      }
    }
  }
  return results;
}

const medianRate = (runs: LoadRun[] | undefined): number | undefined =>
  runs && runs.length > 0 ? median(runs.map((r) => r.keysPerSec)) : undefined;

const perRunRates = (runs: LoadRun[] | undefined): string =>
  runs ? runs.map((r) => formatCount(r.keysPerSec)).join('/') : '-';

function writesDescription(w: WriteResults): string {
  const batch = Math.max(1, Math.min(1000, Math.floor((1 << 20) / w.valueSize)));
  return (
    `${formatCount(w.keys)} SETs of ${w.valueSize} B into an empty process, batches of ${batch} keys, ` +
    `${CONCURRENCY} in flight; ours = bin/shardsnap load --concurrency ${CONCURRENCY} (keys/s from the CLI's ` +
    `own elapsedMs, connect to done), Redis = the same batches as MSET on ${CONCURRENCY} connections ` +
    `(one MSET = one AOF write, as one Write = one WAL record); median of ${perRunCount(w)} run(s)`
  );
}

const perRunCount = (w: WriteResults): number =>
  Math.max(0, ...Object.values(w.ours).map((r) => r.length));

/** A keys/s row: value / baseline, PASS when ≥ `limit`. */
function rateRow(
  n: number,
  w: WriteResults,
  value: { what: string; runs: LoadRun[] | undefined },
  baseline: { what: string; runs: LoadRun[] | undefined },
  limit: number,
  note: string,
): Row {
  const name = rowName(n, `${compact(w.keys)}×${w.valueSize}`);
  const target = rowTarget(n);
  const details = { writes: w };
  const v = medianRate(value.runs);
  const b = medianRate(baseline.runs);
  if (v === undefined) {
    const why = w.failed[value.what] ?? 'did not run';
    const kind = why.startsWith('this build') ? 'SKIPPED' : 'ERROR';
    return {
      ...skippedRow(n, name, target, `${kind}: ${value.what}: ${why}; ${note}`, kind),
      ...(b !== undefined ? { baseline: b, baselineText: keysPerSec(b) } : {}),
      details,
    };
  }
  if (b === undefined) {
    const why = w.failed[baseline.what] ?? 'did not run';
    const kind = why.includes('not found') ? 'SKIPPED' : 'ERROR';
    return {
      ...skippedRow(n, name, target, `${kind} (baseline ${baseline.what}): ${why}; ${note}`, kind),
      value: v,
      valueText: keysPerSec(v),
      details,
    };
  }
  const ratio = v / b;
  return {
    n,
    name,
    value: v,
    valueText: keysPerSec(v),
    baseline: b,
    baselineText: keysPerSec(b),
    ratio,
    ratioText: ratio.toFixed(2),
    target,
    verdict: verdict(ratio >= limit),
    note,
    details,
  };
}

function everysecRow(w: WriteResults): Row {
  const redisOff = medianRate(w.redis.off);
  const redisEverysec = medianRate(w.redis.everysec);
  const redisInfoText =
    redisOff !== undefined && redisEverysec !== undefined
      ? `Redis for information: appendfsync everysec ${keysPerSec(redisEverysec)} vs appendonly no ` +
        `${keysPerSec(redisOff)} (${(redisEverysec / redisOff).toFixed(2)})`
      : 'Redis for information: -';
  const note =
    `${writesDescription(w)}; per run everysec ${perRunRates(w.ours.everysec)}, --no-wal ` +
    `${perRunRates(w.ours['no-wal'])}; ${redisInfoText}`;
  return rateRow(
    32,
    w,
    { what: 'ours everysec', runs: w.ours.everysec },
    { what: 'ours no-wal', runs: w.ours['no-wal'] },
    TARGETS.durabilityEverysecRatio,
    note,
  );
}

function alwaysRow(w: WriteResults): Row {
  const note =
    `${writesDescription(w)}; per run ours ${perRunRates(w.ours.always)}, Redis ` +
    `${perRunRates(w.redis.always)}; both sync before acknowledging (group commit of the ` +
    `batches in flight on our side, of the MSETs of one event loop turn on Redis's)`;
  return rateRow(
    33,
    w,
    { what: 'ours always', runs: w.ours.always },
    { what: 'redis always', runs: w.redis.always },
    TARGETS.durabilityAlwaysRatio,
    note,
  );
}

// ------------------------------------------------------------------ row 34: restarts

interface OursRestart {
  keys: number;
  loadMs: number;
  loadSeq: number;
  snapshot: LocalSnapshotFile & { waitedMs: number };
  tailKeys: number;
  tailSeq: number;
  /** The newest local snapshot at the kill (the tail must not be in it). */
  snapshotAtKill?: LocalSnapshotFile;
  walBytes: number;
  /** Medians of `runs`. */
  listeningMs: number;
  restartMs: number;
  runs: OursRestartRun[];
  /** Of the last run. */
  recovery: Recovery | undefined;
}

interface OursRestartRun {
  /** Spawn until `listening on`, and until Stats reported the recovery. */
  listeningMs: number;
  ms: number;
  recovery: Recovery | undefined;
  keyCount: number;
  seq: number;
  /** The newest local snapshot's seq after the run (a newer one would shorten the replay). */
  newestSnapshotSeq?: number;
}

interface RedisRestartRun {
  ms: number;
  loadedSeconds?: number;
}

interface RedisRestart {
  keys: number;
  loadMs: number;
  rewriteMs: number;
  tailKeys: number;
  aofBytes: number;
  aofFiles: Record<string, number>;
  /** Median of `runs`. */
  restartMs: number;
  runs: RedisRestartRun[];
}

/** The value the tail writes to key 0 (the first SET of the tail's batches). */
function firstTailValue(config: BenchConfig, tailKeys: number, seed: number): Buffer {
  const first = syntheticBatches({
    keys: Math.min(tailKeys, 1),
    valueSize: config.durabilityValueSize,
    types: 'string',
    seed,
  }).next();
  const m = first.done ? undefined : first.value[0];
  if (!m || m.op !== 'set') throw new Error('the synthetic tail has no SET');
  return Buffer.from(m.value);
}

/** Sizes of the files under `dir`, by path relative to it. */
async function bytesUnder(dir: string, prefix = ''): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) Object.assign(out, await bytesUnder(dir, path));
    else if (entry.isFile()) out[path] = (await stat(join(dir, path))).size;
  }
  return out;
}

const restartFlags = (): string[] => [
  '--wal-fsync',
  'everysec',
  '--local-snapshot-interval',
  `${SNAPSHOT_INTERVAL_S}s`,
  '--local-snapshot-wal-bytes',
  NEVER_BY_BYTES,
];

/**
 * Ours of row 34; the restarted node stays up (returned) for row 35, its caller stops it.
 */
async function oursRestart(
  config: BenchConfig,
  tmp: string,
  tailKeys: number,
): Promise<{ result: OursRestart; node: NodeProcess; client: ShardsnapClient }> {
  const dataDir = join(tmp, 'restart-node');
  const keys = config.durabilityKeys;
  const timeoutMs = config.durabilityStepTimeoutMs;
  const first = await startNodeProcess({
    name: 'dur-restart-1',
    dataDir,
    extraArgs: restartFlags(),
  });
  let loadMs: number;
  let loadSeq: number;
  let snapshot: LocalSnapshotFile & { waitedMs: number };
  let tailSeq: number;
  let snapshotAtKill: LocalSnapshotFile | undefined;
  const client1 = new ShardsnapClient(first.address);
  try {
    log(`  ours: loading ${formatCount(keys)} keys into node pid ${first.pid} (${first.address})`);
    const loaded = await runShardsnap(
      loadArgs(first.address, keys, config),
      timeoutMs,
      'shardsnap load',
    );
    loadMs = Number(loaded.output.elapsedMs);
    const stats = await client1.stats();
    if (Number(stats.keyCount) !== keys)
      throw new Error(`the node holds ${stats.keyCount} keys after loading ${keys}`);
    loadSeq = Number(stats.seq);
    log(`  ours: loaded in ${formatMs(loadMs)}; waiting for a local snapshot at seq ${loadSeq}`);
    snapshot = await waitLocalSnapshot(dataDir, loadSeq, SNAPSHOT_INTERVAL_S * 1000 + timeoutMs);
    log(
      `  ours: local snapshot ${formatBytes(snapshot.bytes)} at seq ${snapshot.seq} (waited ${formatMs(snapshot.waitedMs)}); writing the tail`,
    );
    await withTimeout(
      loadSynthetic(client1, {
        keys: tailKeys,
        valueSize: config.durabilityValueSize,
        types: 'string',
        seed: config.seed + 1,
        concurrency: CONCURRENCY,
      }),
      timeoutMs,
      'the WAL tail',
    );
    tailSeq = Number((await client1.stats()).seq);
    await sleep(AFTER_TAIL_MS);
    snapshotAtKill = (await localSnapshotFiles(dataDir)).pop();
  } finally {
    client1.close();
    await killNode(first.pid);
  }
  const walBytes = Object.entries(await bytesUnder(dataDir))
    .filter(([path]) => path.split('/').includes('wal'))
    .reduce((sum, [, size]) => sum + size, 0);
  log(`  ours: killed (SIGKILL) at seq ${tailSeq}; restarting on ${dataDir}`);
  const runs: OursRestartRun[] = [];
  const expected = firstTailValue(config, tailKeys, config.seed + 1);
  for (let run = 0; ; run++) {
    const started = now();
    const node = await startNodeProcess({
      name: `dur-restart-${run + 2}`,
      dataDir,
      extraArgs: restartFlags(),
      startTimeoutMs: timeoutMs,
    });
    const listeningMs = now() - started;
    const client = new ShardsnapClient(node.address);
    try {
      const recovered = await waitRecovered(client, started, timeoutMs);
      if (recovered.keyCount !== keys)
        throw new Error(`the restarted node holds ${recovered.keyCount} keys, expected ${keys}`);
      const [value] = await client.read({ keys: [Buffer.from('key:000000000')] });
      const got = value?.found ? value.string : undefined;
      if (!(Buffer.isBuffer(got) && got.equals(expected)))
        throw new Error('the restarted node lost the WAL tail: key 0 does not hold its tail value');
      runs.push({
        listeningMs,
        ms: recovered.ms,
        recovery: recovered.recovery,
        keyCount: recovered.keyCount,
        seq: recovered.seq,
        newestSnapshotSeq: (await localSnapshotFiles(dataDir)).pop()?.seq,
      });
      log(
        `  ours: restart ${run + 1} recovered in ${formatMs(recovered.ms)} (listening at ${formatMs(listeningMs)}); ` +
          `recovery ${JSON.stringify(recovered.recovery)}`,
      );
      if (run + 1 < config.durabilityRuns && !isStopping()) {
        // Crash it again at once: the next restart finds the same snapshot and tail.
        client.close();
        await killNode(node.pid);
        continue;
      }
      return {
        result: {
          keys,
          loadMs,
          loadSeq,
          snapshot,
          tailKeys,
          tailSeq,
          snapshotAtKill,
          walBytes,
          listeningMs: median(runs.map((r) => r.listeningMs)),
          restartMs: median(runs.map((r) => r.ms)),
          runs,
          recovery: runs.at(-1)?.recovery,
        },
        node,
        client,
      };
    } catch (error) {
      client.close();
      await node.stop();
      throw error;
    }
  }
}

async function redisRestart(
  config: BenchConfig,
  tmp: string,
  tailKeys: number,
): Promise<RedisRestart> {
  const dir = join(tmp, 'redis-restart');
  await mkdir(dir, { recursive: true });
  const keys = config.durabilityKeys;
  const timeoutMs = config.durabilityStepTimeoutMs;
  const args = aofArgs('everysec');
  let server: TimedRedis | undefined = await startTimedRedis(dir, args, 30_000);
  let conn: RespConnection | undefined;
  try {
    log(`  redis: loading ${formatCount(keys)} keys (MSET batches) on port ${server.port}`);
    const load = { keys, valueSize: config.durabilityValueSize, concurrency: CONCURRENCY };
    const loaded = await msetLoad(server.port, { ...load, seed: config.seed }, timeoutMs);
    conn = await RespConnection.connect(server.port);
    const rewriteMs = await rewriteAof(conn, timeoutMs);
    log(`  redis: loaded in ${formatMs(loaded.ms)}, BGREWRITEAOF ${formatMs(rewriteMs)}; tail`);
    await msetLoad(server.port, { ...load, keys: tailKeys, seed: config.seed + 1 }, timeoutMs);
    const persistence = await redisInfo(conn, 'persistence');
    if (persistence.aof_enabled !== '1') throw new Error('redis reports aof_enabled:0');
    conn.close();
    conn = undefined;
    await sleep(AFTER_TAIL_MS);
    await server.kill();
    server = undefined;
    const aofFiles = await bytesUnder(dir);
    const aofBytes = Object.values(aofFiles).reduce((a, b) => a + b, 0);
    log(`  redis: killed (SIGKILL); restarting on ${formatBytes(aofBytes)} of AOF`);
    const runs: RedisRestartRun[] = [];
    const expected = firstTailValue(config, tailKeys, config.seed + 1);
    for (let run = 0; run < config.durabilityRuns && !isStopping(); run++) {
      if (server) await server.kill();
      server = await startTimedRedis(dir, args, timeoutMs);
      conn = await RespConnection.connect(server.port);
      const dbsize = await conn.integer(['DBSIZE']);
      if (dbsize !== keys) throw new Error(`restarted redis DBSIZE ${dbsize}, expected ${keys}`);
      const got = await conn.ok(['GET', 'key:000000000']);
      if (!(Buffer.isBuffer(got) && got.equals(expected)))
        throw new Error('restarted redis lost the tail: key 0 differs');
      conn.close();
      conn = undefined;
      runs.push({ ms: server.readyMs, loadedSeconds: server.loadedSeconds });
      log(
        `  redis: restart ${run + 1} loaded in ${formatMs(server.readyMs)} (its log: ${server.loadedSeconds ?? '-'} s)`,
      );
    }
    return {
      keys,
      loadMs: loaded.ms,
      rewriteMs,
      tailKeys,
      aofBytes,
      aofFiles,
      restartMs: median(runs.map((r) => r.ms)),
      runs,
    };
  } finally {
    conn?.close();
    await server?.stop();
    await removeDir(dir);
  }
}

interface RestartResults {
  ours?: OursRestart;
  oursError?: string;
  oursSkipped?: string;
  redis?: RedisRestart;
  redisError?: string;
  redisSkipped?: string;
}

function restartRow(config: BenchConfig, r: RestartResults): Row {
  const n = 34;
  const name = rowName(n, `${compact(config.durabilityKeys)}×${config.durabilityValueSize}`);
  const target = rowTarget(n);
  const { ours, redis } = r;
  const rec = ours?.recovery;
  const recText = rec
    ? `node's own recovery.duration_ms ${formatMs(Number(rec.durationMs))}, snapshot_seq ${String(rec.snapshotSeq)}, ` +
      `records_replayed ${String(rec.recordsReplayed)}`
    : 'no recovery in Stats';
  const oursText = ours
    ? `ours = spawn of bin/shardsnap serve on the killed node's dir until Stats reported the recovery ` +
      `(listening at ${formatMs(ours.listeningMs)}), per run ${ours.runs.map((x) => formatMs(x.ms)).join('/')}; ` +
      `${recText}; local snapshot ${formatBytes(ours.snapshot.bytes)} ` +
      `at seq ${ours.snapshot.seq}, then a tail of ${formatCount(ours.tailKeys)} SETs (seq ${ours.loadSeq} → ` +
      `${ours.tailSeq}), WAL files ${formatBytes(ours.walBytes)} at the kill` +
      (ours.snapshotAtKill && ours.snapshotAtKill.seq >= ours.tailSeq
        ? ' (WARNING: a newer snapshot already held the tail)'
        : '')
    : `ours: ${r.oursSkipped ?? r.oursError ?? 'did not run'}`;
  const redisText = redis
    ? `baseline = spawn of redis-server on its dir until PING answers and INFO loading:0, per run ` +
      `${redis.runs.map((x) => formatMs(x.ms)).join('/')} (its log: "DB loaded from append only file: ` +
      `${redis.runs.map((x) => x.loadedSeconds ?? '-').join('/')} seconds"); AOF after BGREWRITEAOF ` +
      `(RDB preamble) + the same tail, ${formatBytes(redis.aofBytes)}`
    : `baseline: ${r.redisSkipped ?? r.redisError ?? 'did not run'}`;
  const note =
    `${formatCount(config.durabilityKeys)} keys × ${config.durabilityValueSize} B loaded, then 1% rewritten; ` +
    `both killed with SIGKILL ${formatMs(AFTER_TAIL_MS)} after the tail (everysec on both), then restarted ` +
    `${config.durabilityRuns} time(s), killed again right after each but the last (median shown); key count and ` +
    `key 0 checked after each restart; ${oursText}; ${redisText}`;
  const details = { ours, redis };
  if (!ours) {
    const kind = r.oursSkipped ? 'SKIPPED' : 'ERROR';
    return {
      ...skippedRow(n, name, target, `${kind}: ${note}`, kind),
      ...(redis ? { baseline: redis.restartMs, baselineText: formatMs(redis.restartMs) } : {}),
      details,
    };
  }
  if (!redis) {
    const kind = r.redisSkipped ? 'SKIPPED' : 'ERROR';
    return {
      ...skippedRow(n, name, target, `${kind} (baseline): ${note}`, kind),
      value: ours.restartMs,
      valueText: formatMs(ours.restartMs),
      details,
    };
  }
  const ratio = ours.restartMs / redis.restartMs;
  return {
    n,
    name,
    value: ours.restartMs,
    valueText: formatMs(ours.restartMs),
    baseline: redis.restartMs,
    baselineText: formatMs(redis.restartMs),
    ratio,
    ratioText: ratio.toFixed(2),
    target,
    verdict: verdict(ratio <= TARGETS.durabilityRestartRatio),
    note,
    details,
  };
}

// --------------------------------------------------------------------- row 35: delta

interface SnapshotRun {
  ms: number;
  bytes: number;
  keys: number;
}

interface DeltaResults {
  keys: number;
  changedKeys: number;
  sinceSeq: number;
  full: SnapshotRun[];
  delta: SnapshotRun[];
  /** Restarted node of row 34, or a fresh one (no WAL flags needed). */
  node: string;
}

/** create + fetch to a file (the snapshot deleted after); the file removed. */
async function createFetch(
  client: ShardsnapClient,
  out: string,
  timeoutMs: number,
  sinceSeq?: number,
): Promise<SnapshotRun & { baseSeq?: number }> {
  collectGarbage();
  const t0 = now();
  const result = await withTimeout(
    client.fetchToFile(sinceSeq === undefined ? { out } : { out, sinceSeq }),
    timeoutMs,
    sinceSeq === undefined ? 'create + fetch full' : 'create + fetch delta',
  );
  const ms = now() - t0;
  await rm(out, { force: true });
  const baseSeq = (result.info as { baseSeq?: number | null }).baseSeq ?? undefined;
  return { ms, bytes: result.bytes, keys: Number(result.info.keyCount), baseSeq };
}

async function deltaRuns(
  config: BenchConfig,
  tmp: string,
  client: ShardsnapClient,
  nodeName: string,
): Promise<DeltaResults> {
  const keys = config.durabilityKeys;
  const timeoutMs = config.durabilityStepTimeoutMs;
  const changedKeys = Math.max(1, Math.round(keys * CHANGED_FRACTION));
  const sinceSeq = Number((await client.stats()).seq);
  await withTimeout(
    loadSynthetic(client, {
      keys: changedKeys,
      valueSize: config.durabilityValueSize,
      types: 'string',
      seed: config.seed + 2,
      concurrency: CONCURRENCY,
    }),
    timeoutMs,
    'changing 1% of the keys',
  );
  const result: DeltaResults = {
    keys,
    changedKeys,
    sinceSeq,
    full: [],
    delta: [],
    node: nodeName,
  };
  for (let run = 0; run < config.durabilityRuns; run++) {
    if (isStopping()) break;
    const full = await createFetch(client, join(tmp, 'full.snap'), timeoutMs);
    if (full.keys !== keys) throw new Error(`full snapshot holds ${full.keys} keys, not ${keys}`);
    result.full.push(full);
    const delta = await createFetch(client, join(tmp, 'delta.snap'), timeoutMs, sinceSeq);
    if (delta.baseSeq === undefined)
      throw new Error(
        'the node ignored since_seq (its SnapshotInfo has no base_seq): no incremental snapshots in this build',
      );
    if (delta.baseSeq !== sinceSeq)
      throw new Error(`delta snapshot has base_seq ${delta.baseSeq}, asked since ${sinceSeq}`);
    if (delta.keys !== changedKeys)
      throw new Error(`delta snapshot holds ${delta.keys} keys, ${changedKeys} changed`);
    result.delta.push(delta);
    log(
      `  run ${run + 1}: full ${formatBytes(full.bytes)} in ${formatMs(full.ms)}, delta ` +
        `${formatBytes(delta.bytes)} in ${formatMs(delta.ms)}`,
    );
  }
  return result;
}

/** A fresh node with the dataset of row 34, when row 34's node is not there. */
async function freshLoadedNode(
  config: BenchConfig,
  tmp: string,
): Promise<{ node: NodeProcess; client: ShardsnapClient }> {
  const node = await startNodeProcess({ name: 'dur-delta', dataDir: join(tmp, 'delta-node') });
  const client = new ShardsnapClient(node.address);
  try {
    await withTimeout(
      loadSynthetic(client, {
        keys: config.durabilityKeys,
        valueSize: config.durabilityValueSize,
        types: 'string',
        seed: config.seed,
        concurrency: CONCURRENCY,
      }),
      config.durabilityStepTimeoutMs,
      'loading the delta node',
    );
    return { node, client };
  } catch (error) {
    client.close();
    await node.stop();
    throw error;
  }
}

function deltaRow(config: BenchConfig, d: DeltaResults): Row {
  const n = 35;
  const name = rowName(n, `${compact(config.durabilityKeys)}×${config.durabilityValueSize}`);
  const fullMs = median(d.full.map((r) => r.ms));
  const fullBytes = median(d.full.map((r) => r.bytes));
  const deltaMs = median(d.delta.map((r) => r.ms));
  const deltaBytes = median(d.delta.map((r) => r.bytes));
  const bytesRatio = deltaBytes / fullBytes;
  const timeRatio = deltaMs / fullMs;
  const ratio = Math.max(bytesRatio, timeRatio);
  const perRun = (runs: SnapshotRun[]): string => runs.map((r) => formatMs(r.ms)).join('/');
  return {
    n,
    name,
    value: deltaMs,
    valueText: `${formatBytes(deltaBytes)}, ${formatMs(deltaMs)}`,
    baseline: fullMs,
    baselineText: `${formatBytes(fullBytes)}, ${formatMs(fullMs)}`,
    ratio,
    ratioText: `${bytesRatio.toFixed(4)} / ${timeRatio.toFixed(3)}`,
    target: rowTarget(n),
    verdict: verdict(ratio <= TARGETS.durabilityDeltaRatio),
    note:
      `${formatCount(d.changedKeys)} of ${formatCount(d.keys)} keys rewritten after seq ${d.sinceSeq} on the ${d.node}; ` +
      `both = fetchToFile({out}) (CreateSnapshot, fetch while building, verify, fsync), the delta with sinceSeq; ` +
      `ratio = bytes / time; per run full ${perRun(d.full)}, delta ${perRun(d.delta)}`,
    details: { delta: d },
  };
}

// ---------------------------------------------------------------------------- section

/**
 * Rows 32-35; a side that failed to run goes into `errors` (its row is an ERROR row with
 * the other side's figure). Everything started is stopped and every dir removed at the end.
 */
export async function durabilitySuite(
  config: BenchConfig,
  tmp: string,
  attempt: Attempt,
  errors: string[],
): Promise<void> {
  try {
    const support = durabilitySupport();
    const redisTools = findRedis();
    const redisMissing = 'missing' in redisTools ? redisTools.missing : undefined;
    if (support.missing.length > 0)
      log(`  this build of shardsnap serve lacks ${support.missing.join(', ')}`);

    log(
      `measurements 32-33: ${formatCount(config.durabilityWriteKeys)} SETs × ${config.durabilityValueSize} B, ` +
        `${config.durabilityRuns} run(s) per configuration`,
    );
    const writes = await writeRuns(config, tmp, support, redisMissing);
    for (const [what, why] of Object.entries(writes.failed))
      if (why && !why.startsWith('this build') && why !== redisMissing)
        errors.push(`32-33 ${what}: ${why}`);
    await attempt(32, () => Promise.resolve(everysecRow(writes)));
    await attempt(33, () => Promise.resolve(alwaysRow(writes)));
    if (isStopping()) return;

    log(
      `measurements 34-35: ${formatCount(config.durabilityKeys)} keys × ${config.durabilityValueSize} B`,
    );
    const tailKeys = Math.max(1, Math.round(config.durabilityKeys * CHANGED_FRACTION));
    const restart: RestartResults = {};
    let deltaNode: { node: NodeProcess; client: ShardsnapClient; name: string } | undefined;
    if (!support.wal || !support.localSnapshots) {
      restart.oursSkipped = `this build of shardsnap serve has no ${support.missing.join(', ')}`;
    } else {
      try {
        const ours = await oursRestart(config, tmp, tailKeys);
        restart.ours = ours.result;
        deltaNode = { node: ours.node, client: ours.client, name: 'node restarted in row 34' };
      } catch (error) {
        if (isStopping()) return;
        log(`  ours restart failed: ${error instanceof Error ? error.stack : String(error)}`);
        restart.oursError = firstLine(error);
        errors.push(`34 ours: ${restart.oursError}`);
        await stopTrackedProcesses();
      }
    }
    let delta: DeltaResults | undefined;
    let deltaError: unknown;
    try {
      if (!deltaNode) {
        const fresh = await freshLoadedNode(config, tmp);
        deltaNode = { ...fresh, name: 'freshly loaded node' };
      }
      delta = await deltaRuns(config, tmp, deltaNode.client, deltaNode.name);
    } catch (error) {
      if (isStopping()) return;
      log(`  delta failed: ${error instanceof Error ? error.stack : String(error)}`);
      deltaError = error;
    } finally {
      deltaNode?.client.close();
      await deltaNode?.node.stop();
      await stopTrackedProcesses();
    }
    if (redisMissing) {
      restart.redisSkipped = redisMissing;
    } else {
      try {
        restart.redis = await redisRestart(config, tmp, tailKeys);
      } catch (error) {
        if (isStopping()) return;
        log(`  redis restart failed: ${error instanceof Error ? error.stack : String(error)}`);
        restart.redisError = firstLine(error);
        errors.push(`34 redis: ${restart.redisError}`);
      }
    }
    await attempt(34, () => Promise.resolve(restartRow(config, restart)));
    await attempt(35, () => {
      if (delta) return Promise.resolve(deltaRow(config, delta));
      const why = firstLine(deltaError);
      // A build without incremental snapshots is not an error of the benchmark.
      if (why.includes('in this build'))
        return Promise.resolve(
          skippedRow(35, DURABILITY_ROWS[35]?.[0] ?? '', rowTarget(35), `SKIPPED: ${why}`),
        );
      return Promise.reject(deltaError instanceof Error ? deltaError : new Error(why));
    });
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}
