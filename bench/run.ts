/**
 * shardsnap benchmark harness (`make bench`). See docs/BENCHMARKS.md.
 *
 * Nine sections, chosen with BENCH_SUITES or `--only` (default all nine):
 *
 * - memory (rows 1-6): starts a memory node as a separate process, loads BENCH_KEYS string
 *   keys of BENCH_VALUE_SIZE random bytes, and measures fetch throughput, create + fetch vs
 *   Redis, slot-range build time, server RSS during a build, write latency during a build,
 *   and install by pull.
 * - rocksdb (rows 7-10, bench/rocksdb.ts): a `--backend rocksdb` node with
 *   BENCH_ROCKSDB_KEYS keys: checkpoint creation, checkpoint fetch, slot-range build, and
 *   slot-range install by SST ingest vs batched puts.
 * - split (rows 11-12, bench/split.ts): slots 0-8191 of BENCH_SPLIT_KEYS keys moved from a
 *   source node to an empty one under a steady writer, memory and rocksdb, against
 *   `redis-cli --cluster reshard` of the same data in a two-node Redis Cluster.
 * - keyspace (rows 13-18, bench/keyspace.ts): for each dataset of BENCH_KEYSPACE_SETS
 *   (keys × value bytes), a memory node against Redis on the same data: load through the
 *   CLI vs `redis-cli --pipe`, RSS vs used_memory_rss, create + fetch vs `redis-cli --rdb`,
 *   `shardsnap pull` vs a replica's full sync, GC pauses per GiB fetched (most keys vs
 *   fewest), write p99 during a full build.
 * - transfer (rows 19-24, bench/transfer.ts): BENCH_TRANSFER_KEYS keys on a memory node
 *   and on a RocksDB node; `shardsnap fetch --id` and `shardsnap pull` as users run them
 *   against a raw file→socket→file copy of the same artifact, the same over a proxy that
 *   adds 20 ms of round trip (one stream, four ranged streams), and the first byte of a
 *   fetch right after CreateSnapshot.
 * - limits (rows 25-30, bench/limits.ts): BENCH_LIMITS_KEYS keys in one READY snapshot:
 *   `--max-send-rate` / `--max-recv-rate` accuracy, `--snapshot-latency-target-ms` against
 *   fixed receive rates under steady writes, and a fetch over TLS against plaintext.
 * - decode (row 31, bench/decode.ts): the records decoder on one record frame of 25, 50,
 *   100 and 200 MiB fed in 1 MiB pieces: time per MiB must not grow with the frame.
 * - durability (rows 32-35, bench/durability.ts): write throughput with the write-ahead
 *   log (everysec vs none; always vs Redis `appendfsync always`), restart of a
 *   BENCH_DURABILITY_KEYS node from its local snapshot and WAL tail vs Redis loading an
 *   AOF with an RDB preamble, and a delta of 1% of the keys vs a full snapshot.
 * - rebalance (rows 36-38, bench/rebalance.ts): BENCH_REBALANCE_KEYS keys on the first of
 *   BENCH_REBALANCE_NODES memory nodes clustered through a local etcd, spread over all of
 *   them by `shardsnap cluster rebalance` under a steady writer, against `redis-cli
 *   --cluster rebalance` of the same data in a Redis Cluster of as many masters.
 *
 * `node ... dist/bench/run.js --only split` runs only the split section.
 *
 * Prints a table on stdout and writes bench/out/results-<date>.json. Everything it starts
 * is stopped by pid and every temp dir removed, on success, failure or Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import {
  cleanupAll,
  installCleanupHandlers,
  isStopping,
  removeDir,
  stopTrackedProcesses,
  trackDir,
} from './cleanup';
import { type BenchConfig, readConfig } from './config';
import {
  type Context,
  artifactSize,
  measureCreateFetch,
  measureFetch,
  measurePull,
  measureSlotRange,
  measureWritesDuringBuild,
  rssRow,
} from './measure';
import { type NodeProcess, readRss, shebangFlags, startNodeProcess } from './node-process';
import { type Row, renderTable, skippedRow, writeResults } from './report';
import { findRedis } from './redis-baseline';
import {
  ROCKSDB_ROWS,
  type RocksContext,
  measureCheckpoint,
  measureCheckpointFetch,
  measureRangeInstall,
  measureRocksSlotRange,
  setupRocksDb,
} from './rocksdb';
import { type SampledBuild, sampledBuild } from './snapshot-builds';
import { SPLIT_ROWS, splitSuite } from './split';
import { KEYSPACE_ROWS, keyspaceSuite, setLabel } from './keyspace';
import { TRANSFER_ROWS, transferSuite } from './transfer';
import { LIMITS_ROWS, limitsSuite } from './limits';
import { DECODE_ROWS, decodeSuite } from './decode';
import { DURABILITY_ROWS, durabilitySuite } from './durability';
import { REBALANCE_ROWS, rebalanceSuite } from './rebalance';
import { REPO_ROOT, formatBytes, formatCount, formatMs, log } from './util';
import { loadLogged } from './load-logged';

const ROW_NAMES: Record<number, [string, string]> = {
  1: ['fetch READY full snapshot → verified file', 'ratio ≥ 0.35'],
  2: ['create + fetch full snapshot (end to end)', 'ratio ≤ 0.5'],
  3: ['build slots 0-2047 (1/8) until READY', 'ratio ≤ 0.2'],
  4: ['server peak RSS during a full build', 'ratio ≤ 1.25'],
  5: ['single-key write latency during full build', 'p99 ≤ 20 ms'],
  6: ['install by pull into a second node', '≥ 500,000 keys/s'],
  ...ROCKSDB_ROWS,
  ...SPLIT_ROWS,
  ...KEYSPACE_ROWS,
  ...TRANSFER_ROWS,
  ...LIMITS_ROWS,
  ...DECODE_ROWS,
  ...DURABILITY_ROWS,
  ...REBALANCE_ROWS,
};

function errorRow(n: number, error: unknown): Row {
  const [name, target] = ROW_NAMES[n] ?? [`measurement ${n}`, '-'];
  const message = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
  return skippedRow(n, name, target, `ERROR: ${message}`, 'ERROR');
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return undefined;
  }
}

function machine(): Record<string, unknown> {
  const cpu = cpus();
  return {
    cpus: cpu.length,
    cpuModel: cpu[0]?.model,
    memoryBytes: totalmem(),
    loadavg: loadavg(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
  };
}

/** One measurement; a failure becomes an ERROR row and the others still run. */
async function attempt(
  n: number,
  rows: Row[],
  errors: string[],
  body: () => Promise<Row>,
): Promise<void> {
  if (isStopping()) return;
  log(`measurement ${n}: ${ROW_NAMES[n]?.[0] ?? ''}`);
  const load = loadavg()[0];
  const started = performance.now();
  try {
    const row = await body();
    // The machine is shared: keep how busy it was next to each figure.
    row.details = { ...row.details, loadavg1mAtStart: load, wallMs: performance.now() - started };
    rows.push(row);
  } catch (error) {
    if (isStopping()) return;
    log(`measurement ${n} failed: ${error instanceof Error ? error.stack : String(error)}`);
    errors.push(`${n}: ${error instanceof Error ? error.message : String(error)}`);
    rows.push(errorRow(n, error));
  }
}

async function setup(
  config: BenchConfig,
  tmp: string,
): Promise<{
  nodeA: NodeProcess;
  a: ShardsnapClient;
  load: Record<string, unknown>;
  fullBuilds: SampledBuild[];
}> {
  const nodeA = await startNodeProcess({ name: 'bench-a', dataDir: join(tmp, 'node-a') });
  log(
    `node A (memory, pid ${nodeA.pid}, flags ${shebangFlags().join(' ') || 'none'}) on ${nodeA.address}`,
  );
  const a = new ShardsnapClient(nodeA.address);
  await a.stats();
  const rssEmpty = readRss(nodeA.pid);
  const loaded = await loadLogged(a, {
    keys: config.keys,
    valueSize: config.valueSize,
    seed: config.seed,
    timeoutMs: config.stepTimeoutMs,
    what: 'loading the dataset',
    logPrefix: `  `,
  });
  const stats = await a.stats();
  if (Number(stats.keyCount) !== config.keys)
    throw new Error(`node A holds ${stats.keyCount} keys after loading ${config.keys}`);
  const rssLoaded = readRss(nodeA.pid);
  log(
    `loaded ${formatCount(loaded.keys)} keys (${formatBytes(loaded.bytes)}) in ${formatMs(loaded.elapsedMs)}: ` +
      `${formatCount(loaded.keys / (loaded.elapsedMs / 1000))} keys/s; node RSS ${formatBytes(rssEmpty)} → ${formatBytes(rssLoaded)}`,
  );
  const fullBuilds: SampledBuild[] = [];
  for (let run = 0; run < config.runs; run++) {
    const build = await sampledBuild(a, nodeA.pid, [], { timeoutMs: config.stepTimeoutMs });
    fullBuilds.push(build);
    log(
      `  full build run ${run + 1}: ${formatMs(build.ms)}, ${formatBytes(Number(build.info.sizeBytes))}, ` +
        `RSS ${formatBytes(build.rss.beforeBytes)} → peak ${formatBytes(build.rss.peakBytes)}`,
    );
    // The first stays READY for measurements 1 and 6; the rest are removed.
    if (run > 0) await a.deleteSnapshot({ snapshotId: build.id });
  }
  return {
    nodeA,
    a,
    fullBuilds,
    load: {
      keys: loaded.keys,
      bytes: loaded.bytes,
      ms: loaded.elapsedMs,
      keysPerSec: loaded.keys / (loaded.elapsedMs / 1000),
      rssEmptyBytes: rssEmpty,
      rssLoadedBytes: rssLoaded,
      dataBytes: Number(stats.dataBytes),
    },
  };
}

/** Rows 1-6: node A (memory) and the measurements against it. */
async function memorySuite(
  config: BenchConfig,
  tmp: string,
  rows: Row[],
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  let a: ShardsnapClient | undefined;
  try {
    let ctx: Context | undefined;
    try {
      const ready = await setup(config, tmp);
      a = ready.a;
      const full = ready.fullBuilds[0] as SampledBuild;
      const artifactPath = join(ready.nodeA.dataDir, 'snapshots', full.id, 'artifact.bin');
      const artifactBytes = await artifactSize(artifactPath);
      if (artifactBytes !== Number(full.info.sizeBytes)) {
        throw new Error(
          `${artifactPath} has ${artifactBytes} bytes, the snapshot says ${full.info.sizeBytes}`,
        );
      }
      results.dataset = { ...ready.load, artifactBytes, snapshotKeys: Number(full.info.keyCount) };
      ctx = {
        config,
        tmp,
        nodeA: ready.nodeA,
        a: ready.a,
        full,
        artifactPath,
        artifactBytes,
        fullBuilds: ready.fullBuilds,
      };
    } catch (error) {
      if (isStopping()) return;
      log(`setup failed: ${error instanceof Error ? error.stack : String(error)}`);
      errors.push(`setup: ${error instanceof Error ? error.message : String(error)}`);
      for (const n of [1, 2, 3, 4, 5, 6]) rows.push(errorRow(n, error));
    }
    if (ctx) {
      const c = ctx;
      await attempt(1, rows, errors, () => measureFetch(c));
      await attempt(2, rows, errors, () => measureCreateFetch(c));
      await attempt(3, rows, errors, () => measureSlotRange(c));
      await attempt(4, rows, errors, () => Promise.resolve(rssRow(c)));
      // Pull before the write-latency build: that one overwrites keys on node A.
      await attempt(6, rows, errors, () => measurePull(c));
      await attempt(5, rows, errors, async () => (await measureWritesDuringBuild(c)).row);
      const stderr = c.nodeA.stderr.toString().trim();
      if (stderr) results.nodeAStderrTail = stderr.slice(-4000);
    }
  } finally {
    a?.close();
    // Free the memory node's RAM and disk before the next section.
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}

/** Rows 7-10: node R (rocksdb) and the measurements against it (bench/rocksdb.ts). */
async function rocksdbSuite(
  config: BenchConfig,
  tmp: string,
  rows: Row[],
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  let ctx: RocksContext | undefined;
  try {
    try {
      const ready = await setupRocksDb(config, tmp);
      ctx = ready.ctx;
      results.rocksdbDataset = ready.dataset;
    } catch (error) {
      if (isStopping()) return;
      log(`rocksdb setup failed: ${error instanceof Error ? error.stack : String(error)}`);
      errors.push(`rocksdb setup: ${error instanceof Error ? error.message : String(error)}`);
      for (const n of [7, 8, 9, 10]) rows.push(errorRow(n, error));
    }
    if (ctx) {
      const c = ctx;
      await attempt(7, rows, errors, () => measureCheckpoint(c));
      await attempt(8, rows, errors, () => measureCheckpointFetch(c));
      await attempt(9, rows, errors, () => measureRocksSlotRange(c));
      await attempt(10, rows, errors, () => measureRangeInstall(c));
      const stderr = c.node.stderr.toString().trim();
      if (stderr) results.nodeRStderrTail = stderr.slice(-4000);
    }
  } finally {
    ctx?.client.close();
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const date = new Date();
  const config = readConfig();
  const startedLoad = loadavg();
  const command =
    `BENCH_SUITES=${config.suites.join(',')} BENCH_KEYS=${config.keys} BENCH_ROCKSDB_KEYS=${config.rocksdbKeys} ` +
    `BENCH_VALUE_SIZE=${config.valueSize} BENCH_RUNS=${config.runs} ` +
    (config.suites.includes('split')
      ? `BENCH_SPLIT_KEYS=${config.splitKeys} BENCH_SPLIT_BACKENDS=${config.splitBackends.join(',')} ` +
        `BENCH_SPLIT_RUNS=${config.splitRuns} BENCH_SPLIT_WRITER_RATE=${config.splitWriterRate} `
      : '') +
    (config.suites.includes('transfer') ? `BENCH_TRANSFER_KEYS=${config.transferKeys} ` : '') +
    (config.suites.includes('limits')
      ? `BENCH_LIMITS_KEYS=${config.limitsKeys} BENCH_LIMITS_WRITE_RATE=${config.limitsWriteRate} `
      : '') +
    (config.suites.includes('durability')
      ? `BENCH_DURABILITY_KEYS=${config.durabilityKeys} BENCH_DURABILITY_VALUE_SIZE=${config.durabilityValueSize} ` +
        `BENCH_DURABILITY_WRITE_KEYS=${config.durabilityWriteKeys} BENCH_DURABILITY_RUNS=${config.durabilityRuns} `
      : '') +
    (config.suites.includes('keyspace')
      ? `BENCH_KEYSPACE_SETS=${config.keyspaceSets.map((s) => `${s.keys}x${s.valueSize}`).join(',')} ` +
        `BENCH_KEYSPACE_RUNS=${config.keyspaceRuns} `
      : '') +
    (config.suites.includes('rebalance')
      ? `BENCH_REBALANCE_KEYS=${config.rebalanceKeys} BENCH_REBALANCE_NODES=${config.rebalanceNodes} ` +
        `BENCH_REBALANCE_PARALLEL=${config.rebalanceParallel.join(',')} ` +
        `BENCH_REBALANCE_WRITER_RATE=${config.rebalanceWriterRate} ` +
        (config.rebalanceMaxPauseMs > 0
          ? `BENCH_REBALANCE_MAX_PAUSE=${config.rebalanceMaxPauseMs} `
          : '')
      : '') +
    `node ${process.execArgv.join(' ')} ${process.argv
      .slice(1)
      .map((p) => p.replace(`${REPO_ROOT}/`, ''))
      .join(' ')}`.replace(/\s+/g, ' ');
  log(`${command}`);
  const sizes: string[] = [];
  if (config.suites.includes('memory'))
    sizes.push(`memory: ${formatCount(config.keys)} keys × ${config.valueSize} B`);
  if (config.suites.includes('rocksdb'))
    sizes.push(`rocksdb: ${formatCount(config.rocksdbKeys)} keys × ${config.valueSize} B`);
  if (config.suites.includes('split'))
    sizes.push(
      `split: ${formatCount(config.splitKeys)} keys × ${config.valueSize} B (${config.splitBackends.join(', ')}; ${config.splitRuns} run(s))`,
    );
  if (config.suites.includes('transfer'))
    sizes.push(`transfer: ${formatCount(config.transferKeys)} keys × ${config.valueSize} B`);
  if (config.suites.includes('limits'))
    sizes.push(
      `limits: ${formatCount(config.limitsKeys)} keys × ${config.valueSize} B, ${formatCount(config.limitsWriteRate)} writes/s`,
    );
  if (config.suites.includes('keyspace'))
    sizes.push(
      `keyspace: ${config.keyspaceSets.map(setLabel).join(', ')} (${config.keyspaceRuns} run(s))`,
    );
  if (config.suites.includes('durability'))
    sizes.push(
      `durability: ${formatCount(config.durabilityWriteKeys)} writes, ${formatCount(config.durabilityKeys)} keys × ${config.durabilityValueSize} B`,
    );
  if (config.suites.includes('rebalance'))
    sizes.push(
      `rebalance: ${formatCount(config.rebalanceKeys)} keys × ${config.valueSize} B, 1 → ${config.rebalanceNodes} nodes, ` +
        `--parallel ${config.rebalanceParallel.join('/')}, ${formatCount(config.rebalanceWriterRate)} writes/s`,
    );
  log(
    config.suites.some((suite) => suite === 'memory' || suite === 'rocksdb')
      ? `${sizes.join('; ')}; ${config.runs} run(s) per measurement, step timeout ${formatMs(config.stepTimeoutMs)} (memory), ${formatMs(config.rocksdbStepTimeoutMs)} (rocksdb)`
      : sizes.join('; '),
  );
  const rows: Row[] = [];
  const errors: string[] = [];
  const results: Record<string, unknown> = {
    date: date.toISOString(),
    command,
    commit: gitCommit(),
    config,
    machine: machine(),
  };
  const tmp = trackDir(await mkdtemp(join(tmpdir(), 'shardsnap-bench-')));
  try {
    for (const suite of config.suites) {
      if (isStopping()) break;
      const dir = join(tmp, suite);
      await mkdir(dir, { recursive: true });
      if (suite === 'memory') await memorySuite(config, dir, rows, errors, results);
      else if (suite === 'rocksdb') await rocksdbSuite(config, dir, rows, errors, results);
      else if (suite === 'split') await splitSuite(config, dir, rows, errors, results);
      else if (suite === 'keyspace') await keyspaceSuite(config, dir, rows, errors, results);
      else if (suite === 'transfer')
        await transferSuite(config, dir, (n, body) => attempt(n, rows, errors, body));
      else if (suite === 'limits')
        await limitsSuite(config, dir, (n, body) => attempt(n, rows, errors, body));
      else if (suite === 'durability')
        await durabilitySuite(config, dir, (n, body) => attempt(n, rows, errors, body), errors);
      else if (suite === 'rebalance')
        await rebalanceSuite(
          config,
          dir,
          (n, body) => attempt(n, rows, errors, body),
          errors,
          results,
        );
      else await decodeSuite((n, body) => attempt(n, rows, errors, body));
    }
  } finally {
    await cleanupAll();
  }
  // Interrupted: the signal handler exits once everything is stopped; no partial results.
  if (isStopping()) return 130;
  rows.sort((x, y) => x.n - y.n);
  results.rows = rows;
  results.errors = errors;
  results.loadavgBeforeAfter = [startedLoad, loadavg()];
  const redis = findRedis();
  results.redis = 'missing' in redis ? redis.missing : redis.version;

  process.stdout.write(
    `\nshardsnap benchmark — ${date.toISOString()} — ${sizes.join('; ')}` +
      (config.suites.some((suite) => suite === 'memory' || suite === 'rocksdb')
        ? `, median of ${config.runs} run(s)`
        : '') +
      '\n\n',
  );
  process.stdout.write(`${renderTable(rows)}\n`);
  const path = await writeResults(date, results);
  process.stdout.write(`\nresults: ${path.replace(`${REPO_ROOT}/`, '')}\n`);
  return errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  async (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.stack : String(error)}\n`);
    await cleanupAll();
    process.exit(1);
  },
);
