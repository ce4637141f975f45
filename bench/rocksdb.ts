/**
 * The RocksDB section (rows 7-10 of docs/BENCHMARKS.md). Starts node R with
 * `shardsnap serve --backend rocksdb` as a separate process, loads BENCH_ROCKSDB_KEYS
 * string keys, then restarts it on the same data dir so that nothing is left in the
 * memtables and the WAL (RocksDB replays the WAL at open and writes it out as SST files).
 * Then: checkpoint creation vs a full iterator build (7), fetch of the checkpoint artifact
 * vs raw TCP (8), a 1/8 slot-range iterator build vs the full one (9), and a slot-range
 * install by SST ingest (pull) vs the same records written as batched puts (10).
 */
import { createReadStream } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import type { Mutation } from '../src/core';
import type { SnapshotInfo__Output } from '../src/generated/shardsnap/v1/SnapshotInfo';
import { RecordsDecoder } from '../src/snapshot/records-decoder';
import { removeDir } from './cleanup';
import { type BenchConfig, EIGHTH_OF_SLOTS, TARGETS } from './config';
import { type NodeProcess, readRss, startNodeProcess } from './node-process';
import { type Row, verdict } from './report';
import { type BuildResult, buildUntilReady } from './snapshot-builds';
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
  sleep,
  withTimeout,
} from './util';
import { loadLogged } from './load-logged';

export const ROCKSDB_ROWS: Record<number, [string, string]> = {
  7: ['rocksdb: create checkpoint snapshot (RPC)', `ratio ≤ ${TARGETS.checkpointRatio}`],
  8: ['rocksdb: fetch READY checkpoint → verified file', `ratio ≥ ${TARGETS.checkpointFetchRatio}`],
  9: ['rocksdb: build slots 0-2047 (1/8) until READY', `ratio ≤ ${TARGETS.rocksdbSlotRangeRatio}`],
  10: ['rocksdb: install 1/8 by pull (SST ingest)', `≥ ${TARGETS.ingestSpeedup}× batched puts`],
};

const CHECKPOINT = 'rocksdb-checkpoint';
const ITERATOR = 'rocksdb-iterator';
/** Mutations per Write of the batched-puts baseline (row 10). */
const PUT_BATCH = 1000;
const PUT_CONCURRENCY = 4;

export interface RocksContext {
  config: BenchConfig;
  /** Keys loaded into node R. */
  keys: number;
  timeoutMs: number;
  /** This section's temp dir. */
  tmp: string;
  /** Node R: the rocksdb node holding the dataset (after its restart). */
  node: NodeProcess;
  client: ShardsnapClient;
  /** Full rocksdb-iterator builds until READY: baseline of rows 7 and 9. */
  iteratorBuilds: BuildResult[];
  /** The READY checkpoint snapshot kept for row 8. */
  checkpoint?: SnapshotInfo__Output;
  /** The READY 1/8 slot-range snapshot kept for row 10's baseline. */
  range?: SnapshotInfo__Output;
}

const ratioText = (r: number, digits = 2): string => (Number.isFinite(r) ? r.toFixed(digits) : '-');

async function removeFetched(out: string): Promise<void> {
  for (const suffix of ['', '.json', '.part', '.part.json'])
    await rm(`${out}${suffix}`, { force: true });
}

export interface DbFiles {
  sstFiles: number;
  sstBytes: number;
  walFiles: number;
  walBytes: number;
  otherBytes: number;
}

/** Sizes of the files of a RocksDB directory (read with stat only: the node holds its LOCK). */
async function dbFiles(dir: string): Promise<DbFiles> {
  const out: DbFiles = { sstFiles: 0, sstBytes: 0, walFiles: 0, walBytes: 0, otherBytes: 0 };
  for (const name of await readdir(dir)) {
    // A compaction may delete a file between readdir and stat.
    const info = await stat(join(dir, name)).catch(() => undefined);
    if (!info?.isFile()) continue;
    if (name.endsWith('.sst')) {
      out.sstFiles++;
      out.sstBytes += info.size;
    } else if (name.endsWith('.log')) {
      out.walFiles++;
      out.walBytes += info.size;
    } else {
      out.otherBytes += info.size;
    }
  }
  return out;
}

const describeFiles = (f: DbFiles): string =>
  `${f.sstFiles} SST files ${formatBytes(f.sstBytes)}, WAL ${formatBytes(f.walBytes)}`;

/** GetSnapshot every `pollMs` until READY; FAILED or `timeoutMs` after `started` throws. */
async function waitUntilReady(
  client: ShardsnapClient,
  id: string,
  started: number,
  timeoutMs: number,
  pollMs = 5,
): Promise<SnapshotInfo__Output> {
  for (;;) {
    const info = await client.getSnapshot({ snapshotId: id });
    if (info.state === 'READY') return info;
    if (info.state === 'FAILED') throw new Error(`snapshot ${id} failed: ${info.error}`);
    if (now() - started > timeoutMs) {
      throw new Error(
        `snapshot ${id} not READY after ${Math.round(timeoutMs / 1000)} s (${info.bytesWritten} bytes written)`,
      );
    }
    await sleep(pollMs);
  }
}

function startRocksNode(name: string, dataDir: string): Promise<NodeProcess> {
  return startNodeProcess({ name, dataDir, backend: 'rocksdb' });
}

/** Runs `body` against a fresh, empty rocksdb node that is stopped and removed afterwards. */
async function withFreshNode<T>(
  ctx: RocksContext,
  name: string,
  body: (client: ShardsnapClient, node: NodeProcess) => Promise<T>,
): Promise<T> {
  const dataDir = join(ctx.tmp, name);
  const node = await startRocksNode(name, dataDir);
  const client = new ShardsnapClient(node.address);
  try {
    await client.stats();
    return await body(client, node);
  } finally {
    client.close();
    await node.stop();
    await removeDir(dataDir);
  }
}

// ---------------------------------------------------------------------------- set-up

export async function setupRocksDb(
  config: BenchConfig,
  tmp: string,
): Promise<{ ctx: RocksContext; dataset: Record<string, unknown> }> {
  const keys = config.rocksdbKeys;
  const timeoutMs = config.rocksdbStepTimeoutMs;
  const dataDir = join(tmp, 'node-r');
  const dbDir = join(dataDir, 'db');
  let node = await startRocksNode('bench-rocks-r', dataDir);
  let client = new ShardsnapClient(node.address);
  try {
    await client.stats();
    log(`node R (rocksdb, pid ${node.pid}) on ${node.address}`);
    const loaded = await loadLogged(client, {
      keys: keys,
      valueSize: config.valueSize,
      seed: config.seed,
      timeoutMs: timeoutMs,
      what: 'loading the rocksdb dataset',
      logPrefix: `  `,
    });
    const stats = await client.stats();
    if (Number(stats.keyCount) !== keys)
      throw new Error(`node R holds ${stats.keyCount} keys after loading ${keys}`);
    const loadedFiles = await dbFiles(dbDir);
    const rssLoaded = readRss(node.pid);
    log(
      `loaded ${formatCount(loaded.keys)} keys (${formatBytes(loaded.bytes)}) in ${formatMs(loaded.elapsedMs)}: ` +
        `${formatCount(loaded.keys / (loaded.elapsedMs / 1000))} keys/s; db: ${describeFiles(loadedFiles)}; node RSS ${formatBytes(rssLoaded)}`,
    );

    // Restart on the same data dir: RocksDB replays the WAL at open and flushes it to SST
    // files, so the measurements see the data on disk, not in memtables.
    client.close();
    const stopStarted = now();
    await node.stop();
    const stopMs = now() - stopStarted;
    const restartStarted = now();
    node = await startRocksNode('bench-rocks-r', dataDir);
    client = new ShardsnapClient(node.address);
    const after = await client.stats();
    const restartMs = now() - restartStarted;
    if (Number(after.keyCount) !== keys || Number(after.seq) !== Number(stats.seq)) {
      throw new Error(
        `node R holds ${after.keyCount} keys at seq ${after.seq} after its restart, expected ${keys} at seq ${stats.seq}`,
      );
    }
    const restartedFiles = await dbFiles(dbDir);
    log(
      `node R restarted (pid ${node.pid}, stop ${formatMs(stopMs)}, start ${formatMs(restartMs)}); db: ${describeFiles(restartedFiles)}`,
    );
    return {
      ctx: { config, keys, timeoutMs, tmp, node, client, iteratorBuilds: [] },
      dataset: {
        keys: loaded.keys,
        bytes: loaded.bytes,
        ms: loaded.elapsedMs,
        keysPerSec: loaded.keys / (loaded.elapsedMs / 1000),
        dataBytes: Number(stats.dataBytes),
        seq: Number(stats.seq),
        rssLoadedBytes: rssLoaded,
        dbAfterLoad: loadedFiles,
        restart: { stopMs, startMs: restartMs },
        dbAfterRestart: restartedFiles,
        rssAfterRestartBytes: readRss(node.pid),
      },
    };
  } catch (error) {
    client.close();
    throw error;
  }
}

/** One full rocksdb-iterator build until READY, checked, then deleted. */
async function fullIteratorBuild(ctx: RocksContext): Promise<BuildResult> {
  collectGarbage();
  const build = await buildUntilReady(ctx.client, [], {
    timeoutMs: ctx.timeoutMs,
    strategy: ITERATOR,
  });
  await ctx.client.deleteSnapshot({ snapshotId: build.id });
  if (Number(build.info.keyCount) !== ctx.keys || build.info.kind !== 'records') {
    throw new Error(
      `full ${ITERATOR} snapshot: ${build.info.kind} with ${build.info.keyCount} keys, expected records with ${ctx.keys}`,
    );
  }
  ctx.iteratorBuilds.push(build);
  return build;
}

// ------------------------------------------------------------------------------- 7

export async function measureCheckpoint(ctx: RocksContext): Promise<Row> {
  const { config, client, keys, timeoutMs } = ctx;
  const checkpoints: { rpcMs: number; readyMs: number; bytes: number }[] = [];
  for (let run = 0; run < config.runs; run++) {
    // Alternate, so drift on a shared machine hits both sides alike.
    collectGarbage();
    const t0 = now();
    const created = await withTimeout(
      client.createSnapshot({ strategy: CHECKPOINT }),
      timeoutMs,
      `CreateSnapshot(${CHECKPOINT})`,
    );
    const rpcMs = now() - t0;
    if (created.kind !== 'files' || created.strategy !== CHECKPOINT || !(created.seq > 0)) {
      throw new Error(
        `CreateSnapshot(${CHECKPOINT}) answered kind ${created.kind}, strategy ${created.strategy}, seq ${created.seq}`,
      );
    }
    // Not timed by the row: the artifact (a copy of the checkpoint's files) is written in
    // the background; the next build must not compete with that copy.
    const ready = await waitUntilReady(client, created.id, t0, timeoutMs);
    const readyMs = now() - t0;
    if (Number(ready.keyCount) !== keys)
      throw new Error(`checkpoint snapshot holds ${ready.keyCount} keys, expected ${keys}`);
    checkpoints.push({ rpcMs, readyMs, bytes: Number(ready.sizeBytes) });
    if (ctx.checkpoint) await client.deleteSnapshot({ snapshotId: created.id });
    else ctx.checkpoint = ready;

    const build = await fullIteratorBuild(ctx);
    log(
      `  run ${run + 1}: CreateSnapshot(${CHECKPOINT}) ${formatMs(rpcMs)} (READY after ${formatMs(readyMs)}, ${formatBytes(Number(ready.sizeBytes))}); ` +
        `full ${ITERATOR} build ${formatMs(build.ms)} (${formatBytes(Number(build.info.sizeBytes))})`,
    );
  }
  const value = median(checkpoints.map((c) => c.rpcMs));
  const baseline = median(ctx.iteratorBuilds.map((b) => b.ms));
  const ratio = value / baseline;
  const [name, target] = ROCKSDB_ROWS[7] as [string, string];
  return {
    n: 7,
    name,
    value,
    valueText: formatMs(value),
    baseline,
    baselineText: formatMs(baseline),
    ratio,
    ratioText: ratioText(ratio, 4),
    target,
    verdict: verdict(ratio <= TARGETS.checkpointRatio),
    note:
      `ours = CreateSnapshot(${CHECKPOINT}) RPC from the bench process: returns once the RocksDB checkpoint exists ` +
      `(hard links + WAL copy in the write queue, then readdir/stat) and before the artifact is written; ` +
      `artifact READY after ${checkpoints.map((c) => formatMs(c.readyMs)).join('/')} (${formatBytes(checkpoints[0]?.bytes ?? 0)}, files kind); ` +
      `baseline = CreateSnapshot(${ITERATOR}) + GetSnapshot every 5 ms until READY (walks every key of a pinned snapshot, encodes, writes + hashes a ` +
      `${formatBytes(Number(ctx.iteratorBuilds[0]?.info.sizeBytes ?? 0))} records artifact); ` +
      `per run ours ${checkpoints.map((c) => formatMs(c.rpcMs)).join('/')}, full ${ctx.iteratorBuilds.map((b) => formatMs(b.ms)).join('/')}`,
    details: {
      checkpointRpcMs: checkpoints.map((c) => c.rpcMs),
      checkpointReadyMs: checkpoints.map((c) => c.readyMs),
      checkpointArtifactBytes: checkpoints[0]?.bytes,
      iteratorMs: ctx.iteratorBuilds.map((b) => b.ms),
      iteratorArtifactBytes: Number(ctx.iteratorBuilds[0]?.info.sizeBytes ?? NaN),
    },
  };
}

// ------------------------------------------------------------------------------- 8

export async function measureCheckpointFetch(ctx: RocksContext): Promise<Row> {
  const { config, client, timeoutMs } = ctx;
  let checkpoint = ctx.checkpoint;
  if (!checkpoint) {
    // Row 7 failed before keeping one.
    const t0 = now();
    const created = await client.createSnapshot({ strategy: CHECKPOINT });
    checkpoint = await waitUntilReady(client, created.id, t0, timeoutMs);
    ctx.checkpoint = checkpoint;
  }
  const artifactPath = join(ctx.node.dataDir, 'snapshots', checkpoint.id, 'artifact.bin');
  const artifactBytes = (await stat(artifactPath)).size;
  if (artifactBytes !== Number(checkpoint.sizeBytes) || checkpoint.kind !== 'files') {
    throw new Error(
      `${artifactPath} has ${artifactBytes} bytes of a ${checkpoint.kind} artifact, the snapshot says ${checkpoint.sizeBytes} (files)`,
    );
  }
  const ours: number[] = [];
  const raw: { ms: number; receivedMs: number }[] = [];
  for (let run = 0; run < config.runs; run++) {
    const out = join(ctx.tmp, `checkpoint-fetch-${run}.snap`);
    collectGarbage();
    const t0 = now();
    const result = await withTimeout(
      client.fetchToFile({ snapshotId: checkpoint.id, out }),
      timeoutMs,
      'fetchToFile of the checkpoint',
    );
    const ms = now() - t0;
    if (result.bytes !== artifactBytes || result.sha256 !== checkpoint.sha256) {
      throw new Error(
        `fetched ${result.bytes} bytes with sha256 ${result.sha256}, expected ${artifactBytes} / ${checkpoint.sha256}`,
      );
    }
    ours.push(ms);
    await removeFetched(out);

    const copy = join(ctx.tmp, `checkpoint-tcp-${run}.bin`);
    const tcp = await rawTcpCopy(artifactPath, copy, timeoutMs);
    if (tcp.bytes !== artifactBytes)
      throw new Error(`raw TCP copy moved ${tcp.bytes} bytes, expected ${artifactBytes}`);
    raw.push(tcp);
    await rm(copy, { force: true });
    log(
      `  fetch run ${run + 1}: ours ${mibPerSecond(artifactBytes, ms).toFixed(1)} MiB/s, raw TCP ${mibPerSecond(artifactBytes, tcp.ms).toFixed(1)} MiB/s`,
    );
  }
  const value = mibPerSecond(artifactBytes, median(ours));
  const baseline = mibPerSecond(artifactBytes, median(raw.map((r) => r.ms)));
  const ratio = value / baseline;
  const [name, target] = ROCKSDB_ROWS[8] as [string, string];
  return {
    n: 8,
    name,
    value,
    valueText: `${value.toFixed(1)} MiB/s`,
    baseline,
    baselineText: `${baseline.toFixed(1)} MiB/s`,
    ratio,
    ratioText: ratioText(ratio),
    target,
    verdict: verdict(ratio >= TARGETS.checkpointFetchRatio),
    note:
      `${formatBytes(artifactBytes)} files artifact (the checkpoint's SST files) of node R; ours = fetchToFile({snapshotId}) (CRC32C per chunk, SHA-256, fsync, rename); ` +
      `baseline = raw TCP copy of <dataDir>/snapshots/<id>/artifact.bin between two Node processes (fsynced); ` +
      `raw without fsync ${mibPerSecond(artifactBytes, median(raw.map((r) => r.receivedMs))).toFixed(1)} MiB/s; ` +
      `per run ours ${ours.map((ms) => mibPerSecond(artifactBytes, ms).toFixed(0)).join('/')}, raw ${raw.map((r) => mibPerSecond(artifactBytes, r.ms).toFixed(0)).join('/')} MiB/s`,
    details: {
      artifactBytes,
      oursMs: ours,
      rawMs: raw.map((r) => r.ms),
      rawReceivedMs: raw.map((r) => r.receivedMs),
    },
  };
}

// ------------------------------------------------------------------------------- 9

export async function measureRocksSlotRange(ctx: RocksContext): Promise<Row> {
  const { config, client, timeoutMs } = ctx;
  // Row 7 failed before its full builds: make the baseline here.
  if (ctx.iteratorBuilds.length === 0)
    for (let run = 0; run < config.runs; run++) await fullIteratorBuild(ctx);
  const builds: { ms: number; keys: number; bytes: number }[] = [];
  for (let run = 0; run < config.runs; run++) {
    collectGarbage();
    const build = await buildUntilReady(client, EIGHTH_OF_SLOTS, { timeoutMs, strategy: ITERATOR });
    builds.push({
      ms: build.ms,
      keys: Number(build.info.keyCount),
      bytes: Number(build.info.sizeBytes),
    });
    if (ctx.range) await client.deleteSnapshot({ snapshotId: build.id });
    else ctx.range = build.info;
    log(
      `  slot-range build run ${run + 1}: ${formatMs(build.ms)} (${formatCount(Number(build.info.keyCount))} keys, ${formatBytes(Number(build.info.sizeBytes))})`,
    );
  }
  const value = median(builds.map((b) => b.ms));
  const baseline = median(ctx.iteratorBuilds.map((b) => b.ms));
  const ratio = value / baseline;
  const [name, target] = ROCKSDB_ROWS[9] as [string, string];
  return {
    n: 9,
    name,
    value,
    valueText: formatMs(value),
    baseline,
    baselineText: formatMs(baseline),
    ratio,
    ratioText: ratioText(ratio, 3),
    target,
    verdict: verdict(ratio <= TARGETS.rocksdbSlotRangeRatio),
    note:
      `CreateSnapshot(${ITERATOR}, slots 0-2047) + GetSnapshot every 5 ms until READY; baseline = the full ${ITERATOR} builds of row 7; ` +
      `range holds ${formatCount(builds[0]?.keys ?? 0)} keys, ${formatBytes(builds[0]?.bytes ?? 0)}; ` +
      `per run range ${builds.map((b) => formatMs(b.ms)).join('/')}, full ${ctx.iteratorBuilds.map((b) => formatMs(b.ms)).join('/')}`,
    details: {
      rangeMs: builds.map((b) => b.ms),
      rangeKeys: builds[0]?.keys,
      rangeBytes: builds[0]?.bytes,
      fullMs: ctx.iteratorBuilds.map((b) => b.ms),
    },
  };
}

// ------------------------------------------------------------------------------ 10

/** Reads a records artifact file and turns its (string) records into `set` batches. */
async function decodeToSetBatches(
  path: string,
  batchSize: number,
): Promise<{ batches: Mutation[][]; records: number }> {
  const decoder = new RecordsDecoder({ verifyInnerDigest: true });
  const batches: Mutation[][] = [];
  let batch: Mutation[] = [];
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) {
    for (const { key, entry } of decoder.push(piece as Buffer)) {
      if (entry.value.type !== 'string')
        throw new Error(`record ${key.toString('latin1')} is a ${entry.value.type}, not a string`);
      batch.push({ op: 'set', key, value: entry.value.value, expireAtMs: entry.expireAtMs });
      if (batch.length >= batchSize) {
        batches.push(batch);
        batch = [];
      }
    }
  }
  if (batch.length > 0) batches.push(batch);
  const { keyCount } = decoder.finish();
  return { batches, records: keyCount };
}

/** Writes `batches` with up to `concurrency` Write calls in flight; the first failure throws. */
async function writeBatches(
  client: ShardsnapClient,
  batches: readonly Mutation[][],
  concurrency: number,
): Promise<void> {
  const inFlight = new Set<Promise<void>>();
  let failed = false;
  let failure: unknown;
  for (const batch of batches) {
    if (failed) break;
    const write = client.write({ mutations: batch }).then(
      () => undefined,
      (error: unknown) => {
        if (!failed) failure = error;
        failed = true;
      },
    );
    const tracked = write.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failed)
    throw failure instanceof Error ? failure : new Error(`write failed: ${String(failure)}`);
}

export async function measureRangeInstall(ctx: RocksContext): Promise<Row> {
  const { config, client, node, timeoutMs } = ctx;
  let range = ctx.range;
  if (!range) {
    // Row 9 failed before keeping one.
    range = (await buildUntilReady(client, EIGHTH_OF_SLOTS, { timeoutMs, strategy: ITERATOR }))
      .info;
    ctx.range = range;
  }
  const rangeKeys = Number(range.keyCount);

  // The baseline's input, not timed: the same range artifact fetched, verified, decoded.
  const out = join(ctx.tmp, 'range.snap');
  const fetched = await withTimeout(
    client.fetchToFile({ snapshotId: range.id, out }),
    timeoutMs,
    'fetchToFile of the slot range',
  );
  if (fetched.sha256 !== range.sha256)
    throw new Error(`range artifact sha256 ${fetched.sha256}, expected ${range.sha256}`);
  const { batches, records } = await decodeToSetBatches(out, PUT_BATCH);
  await removeFetched(out);
  if (records !== rangeKeys)
    throw new Error(`decoded ${records} records from the range artifact, expected ${rangeKeys}`);
  const source = await client.digest({ slots: EIGHTH_OF_SLOTS });
  log(
    `  range artifact ${range.id}: ${formatCount(records)} records (${formatBytes(fetched.bytes)}) in ${batches.length} batches`,
  );

  const pulls: { ms: number; keys: number; bytes: number }[] = [];
  const puts: number[] = [];
  let digestsMatch = true;
  const sameAsSource = async (target: ShardsnapClient, what: string): Promise<void> => {
    const [digest, stats] = await Promise.all([
      target.digest({ slots: EIGHTH_OF_SLOTS }),
      target.stats(),
    ]);
    if (
      digest.digest !== source.digest ||
      Number(digest.keyCount) !== Number(source.keyCount) ||
      Number(stats.keyCount) !== rangeKeys
    ) {
      digestsMatch = false;
      log(
        `  WARNING: after ${what} the target holds ${stats.keyCount} keys, range digest ${digest.digest} (source ${source.digest})`,
      );
    }
  };
  for (let run = 0; run < config.runs; run++) {
    // Ours: PullSnapshot of the range into an empty node (SST staged, then ingested).
    const pull = await withFreshNode(ctx, `node-pull-${run}`, async (target) => {
      collectGarbage();
      let snapshotId = '';
      const t0 = now();
      const body = async (): Promise<{ keys: number; bytes: number }> => {
        for await (const p of target.pull({ source: node.address, slots: EIGHTH_OF_SLOTS })) {
          if (p.snapshotId) snapshotId = p.snapshotId;
          if (p.done && p.result)
            return { keys: Number(p.result.keysInstalled), bytes: Number(p.result.bytes) };
        }
        throw new Error('pull ended without a result');
      };
      const result = await withTimeout(body(), timeoutMs, 'pull of the slot range');
      const ms = now() - t0;
      // The pull made its own range snapshot on node R; it is not needed any more.
      if (snapshotId) await client.deleteSnapshot({ snapshotId }).catch(() => undefined);
      if (result.keys !== rangeKeys)
        throw new Error(`pull installed ${result.keys} keys, expected ${rangeKeys}`);
      if (run === 0) await sameAsSource(target, 'the pull');
      return { ms, ...result };
    });
    pulls.push(pull);

    // Baseline: the same records as Write batches of `set` mutations into an empty node.
    const putMs = await withFreshNode(ctx, `node-put-${run}`, async (target) => {
      collectGarbage();
      const t0 = now();
      await withTimeout(
        writeBatches(target, batches, PUT_CONCURRENCY),
        timeoutMs,
        'batched puts of the slot range',
      );
      const ms = now() - t0;
      if (run === 0) await sameAsSource(target, 'the batched puts');
      return ms;
    });
    puts.push(putMs);
    log(
      `  run ${run + 1}: pull ${formatMs(pull.ms)} (${formatCount(rangeKeys / (pull.ms / 1000))} keys/s), ` +
        `batched puts ${formatMs(putMs)} (${formatCount(rangeKeys / (putMs / 1000))} keys/s)`,
    );
  }
  const value = median(pulls.map((p) => rangeKeys / (p.ms / 1000)));
  const baseline = median(puts.map((ms) => rangeKeys / (ms / 1000)));
  const ratio = value / baseline;
  const [name, target] = ROCKSDB_ROWS[10] as [string, string];
  return {
    n: 10,
    name,
    value,
    valueText: `${formatCount(value)} keys/s`,
    baseline,
    baselineText: `${formatCount(baseline)} keys/s`,
    ratio,
    ratioText: ratioText(ratio),
    target,
    verdict: verdict(ratio >= TARGETS.ingestSpeedup && digestsMatch),
    note:
      `${formatCount(rangeKeys)} keys of slots 0-2047; ours = PullSnapshot({source: R, slots 0-2047}) into a fresh empty rocksdb node, ` +
      `from the call until the committed install (includes R's ${ITERATOR} range build, the checked transfer, staging into an SST, the ingest); ` +
      `baseline = the same records (range artifact fetched and decoded beforehand, not timed) as Write batches of ${PUT_BATCH} set mutations, ` +
      `${PUT_CONCURRENCY} in flight, into a fresh empty rocksdb node, writes only; ` +
      `per run pull ${pulls.map((p) => formatMs(p.ms)).join('/')}, puts ${puts.map((ms) => formatMs(ms)).join('/')}; ` +
      `range digest and key count equal to R after both: ${digestsMatch ? 'yes' : 'NO'}`,
    details: {
      rangeKeys,
      rangeArtifactBytes: fetched.bytes,
      pullMs: pulls.map((p) => p.ms),
      pullBytes: pulls[0]?.bytes,
      putMs: puts,
      putBatch: PUT_BATCH,
      putConcurrency: PUT_CONCURRENCY,
      digestsMatch,
    },
  };
}
