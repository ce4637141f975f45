/**
 * The six measurements. Each takes the shared context (node A loaded with the dataset, a
 * READY full snapshot of it) and returns its result row; the raw per-run samples go into
 * the row's details for the JSON file.
 */
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import type { BenchConfig } from './config';
import { EIGHTH_OF_SLOTS, TARGETS } from './config';
import { removeDir } from './cleanup';
import { type NodeProcess, readRss, startNodeProcess } from './node-process';
import { type RedisServer, fetchRdb, findRedis, loadRedis, startRedis } from './redis-baseline';
import { type Row, skippedRow, verdict } from './report';
import { type SampledBuild, buildUnderWrites, buildUntilReady, writeLoop } from './snapshot-builds';
import { rawTcpCopy } from './tcp-baseline';
import {
  collectGarbage,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  mibPerSecond,
  now,
  percentile,
  withTimeout,
} from './util';

export interface Context {
  config: BenchConfig;
  tmp: string;
  nodeA: NodeProcess;
  a: ShardsnapClient;
  /** The READY full snapshot kept on node A for measurements 1 and 6. */
  full: SampledBuild;
  artifactPath: string;
  artifactBytes: number;
  /** Full builds without writes (the first is `full`), for measurements 3 and 4. */
  fullBuilds: SampledBuild[];
  /** Median ms of fetching `full` to a file, set by measurement 1 (baseline of 6). */
  fetchMs?: number;
}

export async function removeFetched(out: string): Promise<void> {
  for (const suffix of ['', '.json', '.part', '.part.json'])
    await rm(`${out}${suffix}`, { force: true });
}

const ratioText = (r: number, digits = 2): string => (Number.isFinite(r) ? r.toFixed(digits) : '-');

// ------------------------------------------------------------------------------- 1

export async function measureFetch(ctx: Context): Promise<Row> {
  const { config, a, full, artifactPath, artifactBytes } = ctx;
  const ours: { ms: number; bytes: number }[] = [];
  const raw: { ms: number; receivedMs: number; bytes: number }[] = [];
  for (let run = 0; run < config.runs; run++) {
    // Alternate, so drift on a shared machine hits both sides alike.
    const out = join(ctx.tmp, `fetch-${run}.snap`);
    collectGarbage();
    const t0 = now();
    const result = await withTimeout(
      a.fetchToFile({ snapshotId: full.id, out }),
      config.stepTimeoutMs,
      'fetchToFile',
    );
    const ms = now() - t0;
    if (result.bytes !== artifactBytes || result.sha256 !== full.info.sha256) {
      throw new Error(
        `fetched ${result.bytes} bytes with sha256 ${result.sha256}, expected ${artifactBytes} / ${full.info.sha256}`,
      );
    }
    ours.push({ ms, bytes: result.bytes });
    await removeFetched(out);

    const copy = join(ctx.tmp, `tcp-${run}.bin`);
    const tcp = await rawTcpCopy(artifactPath, copy, config.stepTimeoutMs);
    if (tcp.bytes !== artifactBytes)
      throw new Error(`raw TCP copy moved ${tcp.bytes} bytes, expected ${artifactBytes}`);
    raw.push(tcp);
    await rm(copy, { force: true });
    log(
      `  fetch run ${run + 1}: ours ${mibPerSecond(artifactBytes, ms).toFixed(1)} MiB/s, raw TCP ${mibPerSecond(artifactBytes, tcp.ms).toFixed(1)} MiB/s`,
    );
  }
  ctx.fetchMs = median(ours.map((r) => r.ms));
  const value = mibPerSecond(artifactBytes, ctx.fetchMs);
  const baseline = mibPerSecond(artifactBytes, median(raw.map((r) => r.ms)));
  const ratio = value / baseline;
  return {
    n: 1,
    name: 'fetch READY full snapshot → verified file',
    value,
    valueText: `${value.toFixed(1)} MiB/s`,
    baseline,
    baselineText: `${baseline.toFixed(1)} MiB/s`,
    ratio,
    ratioText: ratioText(ratio),
    target: `ratio ≥ ${TARGETS.fetchRatio}`,
    verdict: verdict(ratio >= TARGETS.fetchRatio),
    note:
      `${formatBytes(artifactBytes)} artifact; baseline = raw TCP copy between two Node processes (fsynced, like fetchToFile); ` +
      `raw without fsync ${mibPerSecond(artifactBytes, median(raw.map((r) => r.receivedMs))).toFixed(1)} MiB/s; ` +
      `per run ours ${ours.map((r) => mibPerSecond(artifactBytes, r.ms).toFixed(0)).join('/')}, raw ${raw.map((r) => mibPerSecond(artifactBytes, r.ms).toFixed(0)).join('/')} MiB/s`,
    details: {
      artifactBytes,
      oursMs: ours.map((r) => r.ms),
      rawMs: raw.map((r) => r.ms),
      rawReceivedMs: raw.map((r) => r.receivedMs),
    },
  };
}

// ------------------------------------------------------------------------------- 2

/**
 * `runs` times: `client.fetchToFile({out})` (CreateSnapshot, fetch while it is built,
 * CRC32C per chunk, SHA-256, fsync, rename), timed from the call to the verified file; the
 * snapshot must hold `keys` keys. The file and the snapshot are removed after each run.
 */
export async function createFetchRuns(
  client: ShardsnapClient,
  options: { runs: number; tmp: string; keys: number; timeoutMs: number },
): Promise<{ ms: number; bytes: number }[]> {
  const ours: { ms: number; bytes: number }[] = [];
  for (let run = 0; run < options.runs; run++) {
    const out = join(options.tmp, `create-fetch-${run}.snap`);
    collectGarbage();
    const t0 = now();
    const result = await withTimeout(
      client.fetchToFile({ out }),
      options.timeoutMs,
      'create + fetchToFile',
    );
    const ms = now() - t0;
    if (Number(result.info.keyCount) !== options.keys) {
      throw new Error(
        `create + fetch snapshot holds ${result.info.keyCount} keys, expected ${options.keys}`,
      );
    }
    ours.push({ ms, bytes: result.bytes });
    await removeFetched(out);
    await client.deleteSnapshot({ snapshotId: result.info.id });
    log(`  create+fetch run ${run + 1}: ${formatMs(ms)} (${formatBytes(result.bytes)})`);
  }
  return ours;
}

/** `runs` times `redis-cli --rdb` into `dir` (each RDB removed after its run). */
export async function rdbRuns(
  server: RedisServer,
  dir: string,
  runs: number,
  timeoutMs: number,
): Promise<{ ms: number; bytes: number }[]> {
  const rdb: { ms: number; bytes: number }[] = [];
  for (let run = 0; run < runs; run++) {
    const out = join(dir, `dump-${run}.rdb`);
    const result = await fetchRdb(server, out, timeoutMs);
    rdb.push(result);
    await rm(out, { force: true });
    log(`  redis-cli --rdb run ${run + 1}: ${formatMs(result.ms)} (${formatBytes(result.bytes)})`);
  }
  return rdb;
}

export async function measureCreateFetch(ctx: Context): Promise<Row> {
  const { config, a } = ctx;
  const name = 'create + fetch full snapshot (end to end)';
  const target = `ratio ≤ ${TARGETS.redisRatio}`;
  const ours = await createFetchRuns(a, {
    runs: config.runs,
    tmp: ctx.tmp,
    keys: config.keys,
    timeoutMs: config.stepTimeoutMs,
  });
  const value = median(ours.map((r) => r.ms));
  const oursText = `${formatMs(value)}`;
  const redis = findRedis();
  if ('missing' in redis) {
    return {
      ...skippedRow(2, name, target, `SKIPPED: ${redis.missing}; ours took ${oursText}`),
      value,
      valueText: oursText,
    };
  }
  const dir = join(ctx.tmp, 'redis');
  await mkdir(dir, { recursive: true });
  const server = await startRedis(dir);
  const rdb: { ms: number; bytes: number }[] = [];
  let loadMs = 0;
  let redisRss = NaN;
  try {
    log(
      `  loading ${formatCount(config.keys)} keys into ${redis.version.split(' ').slice(0, 3).join(' ')} on port ${server.port}`,
    );
    const loaded = await loadRedis(
      server,
      { keys: config.keys, valueSize: config.valueSize, seed: config.seed },
      config.stepTimeoutMs,
    );
    loadMs = loaded.ms;
    const dbsize = await server.command(['DBSIZE']);
    if (dbsize !== `:${config.keys}`)
      throw new Error(`redis DBSIZE answered ${dbsize}, expected :${config.keys}`);
    log(`  redis loaded in ${formatMs(loadMs)} (${loaded.replies} replies)`);
    redisRss = readRss(server.pid);
    rdb.push(...(await rdbRuns(server, dir, config.runs, config.stepTimeoutMs)));
  } finally {
    await server.stop();
    await removeDir(dir);
  }
  const baseline = median(rdb.map((r) => r.ms));
  const ratio = value / baseline;
  return {
    n: 2,
    name,
    value,
    valueText: oursText,
    baseline,
    baselineText: formatMs(baseline),
    ratio,
    ratioText: ratioText(ratio),
    target,
    verdict: verdict(ratio <= TARGETS.redisRatio),
    note:
      `ours = fetchToFile({out}) (CreateSnapshot, fetch while building, verify, fsync), ${formatBytes(median(ours.map((r) => r.bytes)))}; ` +
      `baseline = redis-cli --rdb against redis-server with the same keys/values, RDB ${formatBytes(rdb[0]?.bytes ?? 0)}; ` +
      `per run ours ${ours.map((r) => formatMs(r.ms)).join('/')}, redis ${rdb.map((r) => formatMs(r.ms)).join('/')}`,
    details: {
      oursMs: ours.map((r) => r.ms),
      oursBytes: ours[0]?.bytes,
      redisMs: rdb.map((r) => r.ms),
      rdbBytes: rdb[0]?.bytes,
      redisLoadMs: loadMs,
      redisRssBytes: redisRss,
      redisVersion: redis.version,
    },
  };
}

// ------------------------------------------------------------------------------- 3

export async function measureSlotRange(ctx: Context): Promise<Row> {
  const { config, a, fullBuilds } = ctx;
  const builds: { ms: number; keys: number; bytes: number }[] = [];
  for (let run = 0; run < config.runs; run++) {
    const build = await buildUntilReady(a, EIGHTH_OF_SLOTS, { timeoutMs: config.stepTimeoutMs });
    builds.push({
      ms: build.ms,
      keys: Number(build.info.keyCount),
      bytes: Number(build.info.sizeBytes),
    });
    await a.deleteSnapshot({ snapshotId: build.id });
    log(
      `  slot-range build run ${run + 1}: ${formatMs(build.ms)} (${formatCount(Number(build.info.keyCount))} keys)`,
    );
  }
  const value = median(builds.map((b) => b.ms));
  const baseline = median(fullBuilds.map((b) => b.ms));
  const ratio = value / baseline;
  return {
    n: 3,
    name: 'build slots 0-2047 (1/8) until READY',
    value,
    valueText: formatMs(value),
    baseline,
    baselineText: formatMs(baseline),
    ratio,
    ratioText: ratioText(ratio, 3),
    target: `ratio ≤ ${TARGETS.slotRangeRatio}`,
    verdict: verdict(ratio <= TARGETS.slotRangeRatio),
    note:
      `baseline = full build until READY (CreateSnapshot + GetSnapshot every 5 ms); range holds ${formatCount(builds[0]?.keys ?? 0)} keys, ${formatBytes(builds[0]?.bytes ?? 0)}; ` +
      `per run range ${builds.map((b) => formatMs(b.ms)).join('/')}, full ${fullBuilds.map((b) => formatMs(b.ms)).join('/')}`,
    details: {
      rangeMs: builds.map((b) => b.ms),
      rangeKeys: builds[0]?.keys,
      rangeBytes: builds[0]?.bytes,
      fullMs: fullBuilds.map((b) => b.ms),
    },
  };
}

// ------------------------------------------------------------------------------- 4

export function rssRow(ctx: Context): Row {
  const runs = ctx.fullBuilds.map((b) => ({
    ...b.rss,
    ratio: b.rss.peakBytes / b.rss.beforeBytes,
  }));
  const worst = runs.reduce((w, r) => (r.ratio > w.ratio ? r : w));
  const kernel = runs.map((r) => r.kernelPeakBytes / r.beforeBytes);
  return {
    n: 4,
    name: 'server peak RSS during a full build',
    value: worst.peakBytes,
    valueText: formatBytes(worst.peakBytes),
    baseline: worst.beforeBytes,
    baselineText: formatBytes(worst.beforeBytes),
    ratio: worst.ratio,
    ratioText: ratioText(worst.ratio, 3),
    target: `ratio ≤ ${TARGETS.rssRatio}`,
    verdict: verdict(worst.ratio <= TARGETS.rssRatio),
    note:
      `worst of ${runs.length} builds without writes (VmRSS every 10 ms, ${worst.samples} samples; baseline = VmRSS just before CreateSnapshot); ` +
      `per run ${runs.map((r) => r.ratio.toFixed(3)).join('/')}; kernel VmHWM/before ${kernel.map((k) => (Number.isFinite(k) ? k.toFixed(3) : 'n/a')).join('/')}`,
    details: { runs },
  };
}

// ------------------------------------------------------------------------------- 5

/** Which row measureWritesDuringBuild reports: row 5 by default (row 18 reuses it). */
export interface WriteRowLabel {
  n: number;
  name: string;
  targetP99Ms: number;
}

export async function measureWritesDuringBuild(
  ctx: Pick<Context, 'config' | 'a' | 'nodeA'>,
  label: WriteRowLabel = {
    n: 5,
    name: 'single-key write latency during full build',
    targetP99Ms: TARGETS.writeP99Ms,
  },
): Promise<{ row: Row; rss: Row['details'] }> {
  const { config, a, nodeA } = ctx;
  const writer = new ShardsnapClient(nodeA.address);
  try {
    await writer.stats();
    const idle = await writeLoop(writer, {
      keys: config.keys,
      valueSize: config.valueSize,
      done: () => false,
      maxWrites: config.idleWrites,
      maxMs: 30_000,
    });
    const build = await buildUnderWrites(a, writer, nodeA.pid, {
      keys: config.keys,
      valueSize: config.valueSize,
      timeoutMs: config.stepTimeoutMs,
      maxWrites: 1_000_000,
    });
    await a.deleteSnapshot({ snapshotId: build.id });
    const s = build.writes.samples;
    const p50 = percentile(s, 50);
    const p99 = percentile(s, 99);
    const max = Math.max(...s);
    const idleP99 = percentile(idle.samples, 99);
    const ratio = p99 / idleP99;
    const rssRatio = build.rss.peakBytes / build.rss.beforeBytes;
    log(
      `  ${s.length} writes during a ${formatMs(build.ms)} build: p50 ${formatMs(p50)}, p99 ${formatMs(p99)}, max ${formatMs(max)}`,
    );
    return {
      row: {
        n: label.n,
        name: label.name,
        value: p99,
        valueText: `p99 ${formatMs(p99)}`,
        baseline: idleP99,
        baselineText: `p99 ${formatMs(idleP99)}`,
        ratio,
        ratioText: ratioText(ratio, 1),
        target: `p99 ≤ ${label.targetP99Ms} ms`,
        verdict: verdict(p99 <= label.targetP99Ms),
        note:
          `${s.length} sequential SETs of random existing keys during a ${formatMs(build.ms)} full build: p50 ${formatMs(p50)}, p99 ${formatMs(p99)}, max ${formatMs(max)}; ` +
          `baseline = ${idle.samples.length} writes with no build: p50 ${formatMs(percentile(idle.samples, 50))}, p99 ${formatMs(idleP99)}, max ${formatMs(Math.max(...idle.samples))}; ` +
          `server RSS during this build ${formatBytes(build.rss.beforeBytes)} → peak ${formatBytes(build.rss.peakBytes)} (×${rssRatio.toFixed(3)})`,
        details: {
          writes: s.length,
          buildMs: build.ms,
          p50Ms: p50,
          p90Ms: percentile(s, 90),
          p99Ms: p99,
          p999Ms: percentile(s, 99.9),
          maxMs: max,
          idle: {
            writes: idle.samples.length,
            p50Ms: percentile(idle.samples, 50),
            p99Ms: idleP99,
            maxMs: Math.max(...idle.samples),
          },
          rssDuringWrites: { ...build.rss, ratio: rssRatio },
          slowestWrites: [...s].sort((x, y) => y - x).slice(0, 10),
        },
      },
      rss: { ...build.rss, ratio: rssRatio },
    };
  } finally {
    writer.close();
  }
}

// ------------------------------------------------------------------------------- 6

export async function measurePull(ctx: Context): Promise<Row> {
  const { config, nodeA, full } = ctx;
  const runs: { ms: number; keys: number; bytes: number }[] = [];
  let digestMatch: boolean | undefined;
  for (let run = 0; run < config.runs; run++) {
    const dataDir = join(ctx.tmp, `node-b-${run}`);
    const nodeB = await startNodeProcess({ name: `bench-b${run}`, dataDir });
    const b = new ShardsnapClient(nodeB.address);
    try {
      await b.stats();
      collectGarbage();
      const t0 = now();
      const pull = async (): Promise<{ keys: number; bytes: number }> => {
        for await (const p of b.pull({ source: nodeA.address, snapshotId: full.id })) {
          if (p.done && p.result)
            return { keys: Number(p.result.keysInstalled), bytes: Number(p.result.bytes) };
        }
        throw new Error('pull ended without a result');
      };
      const result = await withTimeout(pull(), config.stepTimeoutMs, 'pull');
      const ms = now() - t0;
      if (result.keys !== config.keys)
        throw new Error(`pull installed ${result.keys} keys, expected ${config.keys}`);
      runs.push({ ms, ...result });
      log(
        `  pull run ${run + 1}: ${formatMs(ms)}, ${formatCount(result.keys / (ms / 1000))} keys/s`,
      );
      if (run === 0) {
        // Correctness check (not timed): B now holds exactly A's data at the snapshot.
        const [da, db] = await Promise.all([ctx.a.digest(), b.digest()]);
        digestMatch = da.digest === db.digest && da.keyCount === db.keyCount;
        if (!digestMatch)
          log(`  WARNING: digest of B after pull differs from A (${da.digest} vs ${db.digest})`);
      }
    } finally {
      b.close();
      await nodeB.stop();
      await removeDir(dataDir);
    }
  }
  const value = median(runs.map((r) => r.keys / (r.ms / 1000)));
  const baseline = ctx.fetchMs ? config.keys / (ctx.fetchMs / 1000) : NaN;
  const ratio = value / baseline;
  return {
    n: 6,
    name: 'install by pull into a second node',
    value,
    valueText: `${formatCount(value)} keys/s`,
    baseline: Number.isFinite(baseline) ? baseline : null,
    baselineText: Number.isFinite(baseline) ? `${formatCount(baseline)} keys/s` : '-',
    ratio: Number.isFinite(ratio) ? ratio : null,
    ratioText: ratioText(ratio),
    target: `≥ ${formatCount(TARGETS.pullKeysPerSec)} keys/s`,
    verdict: verdict(value >= TARGETS.pullKeysPerSec && digestMatch !== false),
    note:
      `PullSnapshot of A's READY full snapshot into a fresh node B (separate process), until the install commits; ` +
      `baseline = the same artifact fetched to a file (row 1) in keys/s; per run ${runs.map((r) => formatMs(r.ms)).join('/')}; ` +
      `digest A = B after pull: ${digestMatch === undefined ? 'n/a' : digestMatch ? 'yes' : 'NO'}`,
    details: {
      runsMs: runs.map((r) => r.ms),
      keys: runs[0]?.keys,
      bytes: runs[0]?.bytes,
      digestMatch,
    },
  };
}

export async function artifactSize(path: string): Promise<number> {
  return (await stat(path)).size;
}
