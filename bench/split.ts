/**
 * The split section (rows 11-12 of docs/BENCHMARKS.md): half of the slots (0-8191) of a
 * source node holding BENCH_SPLIT_KEYS string keys × BENCH_VALUE_SIZE bytes are moved to an
 * empty target node (`serve --slots none`) with `migrateSlots`, while a steady writer
 * (one write in flight, BENCH_SPLIT_WRITER_RATE a second) keeps writing keys of those
 * slots through a RoutingClient. Reported: total time, MiB/s, the write pause measured on
 * the source, the client-visible longest gap between acks, the phases, the writer's
 * latency; then checked: ownership on both sides, every acknowledged write on the target,
 * the target's key count of the range.
 *
 * Baseline, in the same run: the same keys and value bytes in a two-node Redis Cluster on
 * loopback, the same slots moved by `redis-cli --cluster reshard` with the same writer
 * (bench/redis-cluster.ts). Row 11: memory → memory; row 12: rocksdb → rocksdb; both
 * compared with the same reshard.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import { Connection } from '../src/wire/connection';
import { migrateSlots } from '../src/client/migrate';
import { keyName } from '../src/client/synthetic';
import { type SlotRange, slotOf } from '../src/core';
import type { MigrationStatus } from '../src/migration/status';
import { isStopping, removeDir, stopTrackedProcesses } from './cleanup';
import { type BenchConfig, type SplitBackend, TARGETS } from './config';
import { type NodeProcess, readRss, startNodeProcess } from './node-process';
import {
  HALF_OF_SLOTS,
  type RedisReshardResult,
  measureRedisReshard,
  redisClusterTools,
} from './redis-cluster';
import type { WriterKey, WriterStats } from './redis-cluster-writer';
import { type Row, skippedRow } from './report';
import { buildUntilReady } from './snapshot-builds';
import { SplitWriter, longestGap } from './split-writer';
import {
  MiB,
  collectGarbage,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  sleep,
  withTimeout,
} from './util';
import { loadLogged } from './load-logged';

const TARGET_TEXT = `≥ ${TARGETS.splitSpeedup}× reshard, pause ≤ ${TARGETS.splitPauseMs} ms`;

export const SPLIT_ROWS: Record<number, [string, string]> = {
  11: ['split slots 0-8191 under writes (memory)', TARGET_TEXT],
  12: ['rocksdb: split slots 0-8191 under writes', TARGET_TEXT],
};

export const SPLIT_ROW_OF: Record<SplitBackend, number> = { memory: 11, rocksdb: 12 };

const REST_OF_SLOTS: SlotRange = { start: HALF_OF_SLOTS.end + 1, end: 16383 };
/** Distinct keys the writer picks from (as the Redis writer's default). */
const WRITER_KEYS = 10_000;
const WRITER_WARMUP_MS = 1_000;
/** How often the source's snapshot list is polled during the migration. */
const SNAPSHOT_POLL_MS = 25;

// ------------------------------------------------------------------------------ CPU

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a process, ms (from /proc/<pid>/stat); NaN when unreadable. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

/**
 * CPU ms of a process's threads, grouped: `main` (the event loop: tid = pid), RocksDB's
 * background threads by name (`rocksdb:low`, `rocksdb:high`, ...), `other` (libuv pool,
 * V8 helpers, workers).
 */
export function threadCpuMs(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond();
      const group = tid === String(pid) ? 'main' : name.startsWith('rocksdb') ? name : 'other';
      out[group] = (out[group] ?? 0) + ms;
    } catch {
      // The thread just ended.
    }
  }
  return out;
}

function diffCpu(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)]))
    out[key] = (b[key] ?? 0) - (a[key] ?? 0);
  return out;
}

function benchCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * CPU ms the whole machine spent busy (all cores, from the first line of /proc/stat: every
 * column but idle and iowait). The machine is shared: busy time beyond what our processes
 * used is other people's work competing for the same cores.
 */
export function machineBusyMs(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    const total = f.reduce((a, b) => a + b, 0);
    return ((total - (f[3] ?? 0) - (f[4] ?? 0)) * 1000) / ticksPerSecond();
  } catch {
    return NaN;
  }
}

// --------------------------------------------------------------------------- results

/** One migration event as the bench saw it (t: ms since migrateSlots was called). */
interface EventSample {
  t: number;
  phase: string;
  nodeElapsedMs: number;
  bytes: number;
  totalBytes: number;
  keys: number;
  lag: number;
  changesApplied: number;
  sourceCpuMs: number;
  targetCpuMs: number;
  benchCpuMs: number;
  machineBusyMs: number;
  /** Per-thread-group CPU of source and target, sampled on the first event of each phase. */
  threads?: { source: Record<string, number>; target: Record<string, number> };
  detail: string;
}

/** The source's migration snapshot as polled (t: ms since migrateSlots was called). */
interface SnapshotSample {
  t: number;
  state: string;
  bytesWritten: number;
  sizeBytes: number;
  keyCount: number;
}

interface PhaseTimes {
  /** Bench ms (since the call) of the first event of each phase. */
  firstAt: Record<string, number>;
  /** Node ms (elapsedMs of the target's job) of the first event of each phase. */
  nodeFirstAt: Record<string, number>;
  /** Durations, bench clock: snapshot = CATCH_UP - SNAPSHOT, and so on. */
  durationsMs: { start: number; snapshot: number; catchUp: number; handoff: number; done: number };
  /**
   * CPU ms within each phase: source, target and bench process, the whole machine (all
   * cores), and `others` = machine - ours (other users of the shared machine).
   */
  cpuMs: Record<
    string,
    {
      wallMs: number;
      source: number;
      target: number;
      bench: number;
      machine: number;
      others: number;
      /** Per thread group: `main` (event loop), `rocksdb:*`, `other`. */
      sourceThreads?: Record<string, number>;
      targetThreads?: Record<string, number>;
    }
  >;
}

interface SnapshotBreakdown {
  /** The source's snapshot first seen by the poller / first READY, ms since the call. */
  firstSeenAt: number;
  readyAt: number;
  artifactBytes: number;
  snapshotKeys: number;
  /** Bytes the target had received (SNAPSHOT events) when the source's build was READY. */
  receivedAtReady: number;
  /** First SNAPSHOT event with bytes > 0, and the last SNAPSHOT event, ms since the call. */
  firstBytesAt: number;
  lastProgressAt: number;
  lastProgressBytes: number;
  /** From the last SNAPSHOT event to CATCH_UP: the tail of the transfer plus the install's finish. */
  finishMs: number;
  /** Receive rate while the source was building, and after it was READY, MiB/s. */
  mibPerSecWhileBuilding: number;
  mibPerSecAfterReady: number;
  /** Source build rate (bytesWritten over the polled BUILDING samples), MiB/s. */
  buildMibPerSec: number;
}

export interface SplitResult {
  backend: SplitBackend;
  /** Wall time of migrateSlots, from the call until the DONE status. */
  seconds: number;
  nodeElapsedMs: number;
  keysMoved: number;
  /** Key and value bytes of the moved keys (as the Redis side counts them). */
  bytesMoved: number;
  mibPerSec: number;
  /** Bytes of the snapshot artifact the target received (records framing included). */
  artifactBytes: number;
  writePauseMs: number;
  maxPauseMsRequested: string;
  snapshotAttempts: number;
  handoffAttempts: number;
  changesApplied: number;
  phases: PhaseTimes;
  snapshot: SnapshotBreakdown;
  /** The range built alone on the source before the split (no fetch, writer or feed). */
  reference: {
    buildAloneMs: number;
    buildAloneBytes: number;
    buildAloneSourceCpuMs: number;
    buildAloneMachineBusyMs: number;
    buildAloneWallMs: number;
    buildAloneSourceThreads: Record<string, number>;
  };
  /** CPU ms over the whole split: ours, the machine's (all cores) and the rest (others). */
  cpuMs: {
    wallMs: number;
    cores: number;
    source: number;
    target: number;
    bench: number;
    machine: number;
    others: number;
  };
  writer: {
    ratePerSec: number;
    during: WriterStats;
    idle: WriterStats;
    /** The longest gap between acks during the split, and where in it it ended. */
    longestGapEndedAtMs: number;
    longestGapPhase: string;
    redirects: number;
    tryAgainRetries: number;
    ackedBySource: number;
    ackedByTarget: number;
    keysInPool: number;
    keysVerified: number;
    lostCount: number;
    lost: string[];
  };
  verified: {
    targetOwns: SlotRange[];
    sourceOwns: SlotRange[];
    targetKeysInRange: number;
    expectedKeys: number;
    newKeys: number;
  };
  load: { keys: number; bytes: number; ms: number; keysPerSec: number; restartMs?: number };
  rssBytes: { sourceBefore: number; sourceAfter: number; targetAfter: number };
  events: EventSample[];
  snapshotPolls: SnapshotSample[];
}

// ------------------------------------------------------------------------------ data

/** Indices and key bytes of the synthetic dataset's keys whose slot lies in `range`. */
function keysOfRange(keys: number, range: SlotRange): { indices: number[]; keyBytes: number } {
  const indices: number[] = [];
  let keyBytes = 0;
  for (let i = 0; i < keys; i++) {
    const key = keyName(i);
    const slot = slotOf(key);
    if (slot >= range.start && slot <= range.end) {
      indices.push(i);
      keyBytes += key.length;
    }
  }
  return { indices, keyBytes };
}

/** The Redis writer's pool: `WRITER_KEYS` dataset keys spread over the range, in order. */
function writerPool(indices: readonly number[]): WriterKey[] {
  const size = Math.min(WRITER_KEYS, indices.length);
  const pool: WriterKey[] = [];
  for (let k = 0; k < size; k++) {
    const key = keyName(indices[Math.floor((k * indices.length) / size)] as number);
    pool.push({ key, slot: slotOf(key) });
  }
  return pool;
}

const sameRanges = (a: readonly SlotRange[], b: readonly SlotRange[]): boolean =>
  JSON.stringify(a.map((r) => [r.start, r.end])) === JSON.stringify(b.map((r) => [r.start, r.end]));

const rangesText = (ranges: readonly SlotRange[]): string =>
  ranges.map((r) => `${r.start}-${r.end}`).join(',') || 'none';

// ---------------------------------------------------------------------------- set-up

async function loadSource(
  config: BenchConfig,
  backend: SplitBackend,
  dataDir: string,
): Promise<{ node: NodeProcess; load: SplitResult['load'] }> {
  const name = `split-source-${backend}`;
  let node = await startNodeProcess({ name, dataDir, backend });
  let client = new ShardsnapClient(node.address);
  try {
    await client.stats();
    log(`  source (${backend}, pid ${node.pid}) on ${node.address}`);
    const keys = config.splitKeys;
    const loaded = await loadLogged(client, {
      keys: keys,
      valueSize: config.valueSize,
      seed: config.seed,
      timeoutMs: config.splitStepTimeoutMs,
      what: 'loading the split source',
      logPrefix: `    `,
    });
    const stats = await client.stats();
    if (Number(stats.keyCount) !== keys)
      throw new Error(`the source holds ${stats.keyCount} keys after loading ${keys}`);
    const load: SplitResult['load'] = {
      keys: loaded.keys,
      bytes: loaded.bytes,
      ms: loaded.elapsedMs,
      keysPerSec: loaded.keys / (loaded.elapsedMs / 1000),
    };
    log(
      `  loaded ${formatCount(loaded.keys)} keys (${formatBytes(loaded.bytes)}) in ${formatMs(loaded.elapsedMs)}`,
    );
    if (backend === 'rocksdb') {
      // As in the RocksDB section: a restart flushes the WAL to SST files, so the split
      // reads the data from SST files, not from memtables.
      client.close();
      const started = performance.now();
      await node.stop();
      node = await startNodeProcess({ name, dataDir, backend });
      client = new ShardsnapClient(node.address);
      const after = await client.stats();
      load.restartMs = performance.now() - started;
      if (Number(after.keyCount) !== keys)
        throw new Error(`the source holds ${after.keyCount} keys after its restart`);
      log(`  source restarted (pid ${node.pid}) in ${formatMs(load.restartMs)}`);
    }
    return { node, load };
  } finally {
    client.close();
  }
}

// ------------------------------------------------------------------------------ split

function phaseTimes(events: readonly EventSample[], totalMs: number): PhaseTimes {
  const firstAt: Record<string, number> = {};
  const nodeFirstAt: Record<string, number> = {};
  const firstEvent: Record<string, EventSample> = {};
  for (const e of events) {
    if (!(e.phase in firstAt)) {
      firstAt[e.phase] = e.t;
      nodeFirstAt[e.phase] = e.nodeElapsedMs;
      firstEvent[e.phase] = e;
    }
  }
  const at = (phase: string, fallback: number): number => firstAt[phase] ?? fallback;
  const snapshot = at('SNAPSHOT', 0);
  const catchUp = at('CATCH_UP', totalMs);
  const handoff = at('HANDOFF', totalMs);
  const done = at('DONE', totalMs);
  const order = ['SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'DONE'];
  const cpuMs: PhaseTimes['cpuMs'] = {};
  order.forEach((phase, i) => {
    const from = firstEvent[phase];
    const next = order.slice(i + 1).find((p) => firstEvent[p]);
    const to = next ? firstEvent[next] : undefined;
    if (from && to) {
      const source = to.sourceCpuMs - from.sourceCpuMs;
      const target = to.targetCpuMs - from.targetCpuMs;
      const bench = to.benchCpuMs - from.benchCpuMs;
      const machine = to.machineBusyMs - from.machineBusyMs;
      cpuMs[phase] = {
        wallMs: to.t - from.t,
        source,
        target,
        bench,
        machine,
        others: Math.max(0, machine - source - target - bench),
        ...(from.threads && to.threads
          ? {
              sourceThreads: diffCpu(from.threads.source, to.threads.source),
              targetThreads: diffCpu(from.threads.target, to.threads.target),
            }
          : {}),
      };
    }
  });
  return {
    firstAt,
    nodeFirstAt,
    durationsMs: {
      start: snapshot,
      snapshot: catchUp - snapshot,
      catchUp: handoff - catchUp,
      handoff: done - handoff,
      done: totalMs - done,
    },
    cpuMs,
  };
}

/** Bytes received at time t, interpolated between SNAPSHOT events. */
function receivedAt(events: readonly EventSample[], t: number): number {
  let before: EventSample | undefined;
  for (const e of events) {
    if (e.phase !== 'SNAPSHOT') continue;
    if (e.t <= t) before = e;
    else {
      if (!before) return 0;
      const f = (t - before.t) / (e.t - before.t);
      return before.bytes + f * (e.bytes - before.bytes);
    }
  }
  return before?.bytes ?? 0;
}

function snapshotBreakdown(
  events: readonly EventSample[],
  polls: readonly SnapshotSample[],
  catchUpAt: number,
): SnapshotBreakdown {
  const seen = polls[0];
  const ready = polls.find((p) => p.state === 'READY');
  const snapEvents = events.filter((e) => e.phase === 'SNAPSHOT');
  const firstBytes = snapEvents.find((e) => e.bytes > 0);
  const last = snapEvents[snapEvents.length - 1];
  const readyAt = ready?.t ?? NaN;
  const atReady = Number.isFinite(readyAt) ? receivedAt(events, readyAt) : NaN;
  const lastBytes = last?.bytes ?? 0;
  const lastAt = last?.t ?? NaN;
  const building = polls.filter((p) => p.state !== 'READY' && p.bytesWritten > 0);
  const b0 = building[0];
  const b1 = building[building.length - 1];
  const rate = (bytes: number, ms: number): number => (ms > 0 ? bytes / MiB / (ms / 1000) : NaN);
  return {
    firstSeenAt: seen?.t ?? NaN,
    readyAt,
    artifactBytes: ready?.sizeBytes ?? NaN,
    snapshotKeys: ready?.keyCount ?? NaN,
    receivedAtReady: atReady,
    firstBytesAt: firstBytes?.t ?? NaN,
    lastProgressAt: lastAt,
    lastProgressBytes: lastBytes,
    finishMs: catchUpAt - lastAt,
    mibPerSecWhileBuilding: firstBytes ? rate(atReady, readyAt - firstBytes.t) : NaN,
    mibPerSecAfterReady: rate(lastBytes - atReady, lastAt - readyAt),
    buildMibPerSec: b0 && b1 && ready ? rate(ready.sizeBytes, readyAt - (seen?.t ?? b0.t)) : NaN,
  };
}

/** Polls the source's snapshot list until `stop`; records the snapshot the migration made. */
function pollSourceSnapshots(
  source: ShardsnapClient,
  existing: ReadonlySet<string>,
  origin: number,
): { samples: SnapshotSample[]; stop: () => Promise<void> } {
  const samples: SnapshotSample[] = [];
  let stopped = false;
  let id: string | undefined;
  const loop = (async () => {
    while (!stopped) {
      try {
        const list = await source.listSnapshots();
        const t = performance.now() - origin;
        const mine = list.find((s) => (id ? s.id === id : !existing.has(s.id)));
        if (mine) {
          id = mine.id;
          const last = samples[samples.length - 1];
          // Keep the first READY and every BUILDING step; nothing after READY changes.
          if (!last || last.state !== 'READY')
            samples.push({
              t,
              state: String(mine.state),
              bytesWritten: Number(mine.bytesWritten),
              sizeBytes: Number(mine.sizeBytes),
              keyCount: Number(mine.keyCount),
            });
        }
      } catch {
        // The node is busy or the snapshot just got deleted: try again.
      }
      await sleep(SNAPSHOT_POLL_MS);
    }
  })();
  return {
    samples,
    stop: async () => {
      stopped = true;
      await loop;
    },
  };
}

async function runSplit(
  config: BenchConfig,
  backend: SplitBackend,
  dir: string,
): Promise<SplitResult> {
  const keys = config.splitKeys;
  const valueBytes = config.valueSize;
  const timeoutMs = config.splitStepTimeoutMs;
  const { indices, keyBytes } = keysOfRange(keys, HALF_OF_SLOTS);
  const expectedKeys = indices.length;
  const sourceDir = join(dir, 'source');
  const targetDir = join(dir, 'target');
  let source: NodeProcess | undefined;
  let target: NodeProcess | undefined;
  let writer: SplitWriter | undefined;
  const clients: ShardsnapClient[] = [];
  let conn: Connection | undefined;
  try {
    const loaded = await loadSource(config, backend, sourceDir);
    source = loaded.node;
    target = await startNodeProcess({
      name: `split-target-${backend}`,
      dataDir: targetDir,
      backend,
      extraArgs: ['--slots', 'none'],
    });
    const src = new ShardsnapClient(source.address);
    const tgt = new ShardsnapClient(target.address);
    clients.push(src, tgt);
    const tgtStats = await tgt.stats();
    if (tgtStats.ownedSlots.length !== 0 || Number(tgtStats.keyCount) !== 0)
      throw new Error(
        `the target is not empty: owns ${rangesText(tgtStats.ownedSlots)}, ${tgtStats.keyCount} keys`,
      );
    log(`  target (${backend}, --slots none, pid ${target.pid}) on ${target.address}`);
    const before = await src.digest({ slots: [HALF_OF_SLOTS] });
    if (Number(before.keyCount) !== expectedKeys)
      throw new Error(
        `the source holds ${before.keyCount} keys in slots 0-8191, the dataset ${expectedKeys}`,
      );
    // Reference, not timed by the row: the same range snapshot built on the source alone
    // (no fetch, no writer, no change stream), until READY, then deleted.
    collectGarbage();
    const refCpu = [processCpuMs(source.pid), machineBusyMs()];
    const refThreads = threadCpuMs(source.pid);
    const refStarted = performance.now();
    const ref = await buildUntilReady(src, [HALF_OF_SLOTS], { timeoutMs });
    const reference = {
      buildAloneMs: ref.ms,
      buildAloneBytes: Number(ref.info.sizeBytes),
      buildAloneSourceCpuMs: processCpuMs(source.pid) - (refCpu[0] ?? NaN),
      buildAloneMachineBusyMs: machineBusyMs() - (refCpu[1] ?? NaN),
      buildAloneWallMs: performance.now() - refStarted,
      buildAloneSourceThreads: diffCpu(refThreads, threadCpuMs(source.pid)),
    };
    await src.deleteSnapshot({ snapshotId: ref.id });
    log(
      `  reference: slots 0-8191 built alone on the source in ${formatMs(ref.ms)} (${formatBytes(reference.buildAloneBytes)})`,
    );
    const existing = new Set((await src.listSnapshots()).map((s) => s.id));
    collectGarbage();
    const rssSourceBefore = readRss(source.pid);

    // The writer, with an idle warm-up before the split.
    const pool = writerPool(indices);
    writer = new SplitWriter(source.address, pool, valueBytes);
    const warmStart = performance.now();
    writer.start(WRITER_WARMUP_MS + timeoutMs, config.splitWriterRate);
    await sleep(WRITER_WARMUP_MS);

    const events: EventSample[] = [];
    const srcPid = source.pid;
    const tgtPid = target.pid;
    conn = new Connection(target.address);
    const controller = new AbortController();
    const cpuAt = (): number[] => [
      processCpuMs(srcPid),
      processCpuMs(tgtPid),
      benchCpuMs(),
      machineBusyMs(),
    ];
    const cpuStart = cpuAt();
    const started = performance.now();
    const poller = pollSourceSnapshots(src, existing, started);
    let done: MigrationStatus;
    try {
      done = await withTimeout(
        migrateSlots(
          conn,
          { source: source.address, slots: [HALF_OF_SLOTS] },
          {
            signal: controller.signal,
            onEvent: (s) => {
              const phaseChanged = events[events.length - 1]?.phase !== s.phase;
              events.push({
                t: performance.now() - started,
                phase: s.phase,
                nodeElapsedMs: s.elapsedMs,
                bytes: s.bytes,
                totalBytes: s.totalBytes,
                keys: s.keys,
                lag: s.lag,
                changesApplied: s.changesApplied,
                sourceCpuMs: processCpuMs(srcPid),
                targetCpuMs: processCpuMs(tgtPid),
                benchCpuMs: benchCpuMs(),
                machineBusyMs: machineBusyMs(),
                threads: phaseChanged
                  ? { source: threadCpuMs(srcPid), target: threadCpuMs(tgtPid) }
                  : undefined,
                detail: s.detail,
              });
            },
          },
        ),
        timeoutMs,
        'migrateSlots(0-8191)',
      );
    } catch (error) {
      controller.abort();
      throw error;
    } finally {
      await poller.stop();
    }
    const ended = performance.now();
    const cpuEnd = cpuAt();
    await writer.stop();
    const totalMs = ended - started;
    log(
      `  split ${backend}: ${formatMs(totalMs)}, ${formatCount(done.keys)} keys, write pause ${done.writePauseMs} ms (source)`,
    );

    // Checks: ownership on both sides, acked writes, key count of the range.
    const targetOwns = (await tgt.stats()).ownedSlots.map((r) => ({ start: r.start, end: r.end }));
    const sourceOwns = (await src.stats()).ownedSlots.map((r) => ({ start: r.start, end: r.end }));
    if (!sameRanges(targetOwns, [HALF_OF_SLOTS]) || !sameRanges(sourceOwns, [REST_OF_SLOTS]))
      throw new Error(
        `after the split the target owns ${rangesText(targetOwns)}, the source ${rangesText(sourceOwns)}`,
      );
    const { checked, lost } = await writer.verify(target.address);
    if (lost.length > 0)
      throw new Error(
        `${lost.length} acknowledged writes not on the target, e.g. ${lost.slice(0, 3).join('; ')}`,
      );
    // The writer overwrites dataset keys only (as the Redis writer does): no new keys.
    const newKeys = 0;
    const targetKeys = Number((await tgt.digest({ slots: [HALF_OF_SLOTS] })).keyCount);
    if (targetKeys !== expectedKeys + newKeys || done.keys !== expectedKeys)
      throw new Error(
        `the target holds ${targetKeys} keys in slots 0-8191 after installing ${done.keys}; the dataset has ${expectedKeys}, new keys ${newKeys}`,
      );

    const phases = phaseTimes(events, totalMs);
    const polls = poller.samples;
    const snapshot = snapshotBreakdown(events, polls, phases.firstAt.CATCH_UP ?? totalMs);
    const gap = longestGap(writer.samples, started, ended);
    const order = ['SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'DONE'];
    const gapStart = gap.endedAt - gap.ms - started;
    const gapPhase =
      [...order].reverse().find((p) => (phases.firstAt[p] ?? Infinity) <= gapStart) ??
      'before SNAPSHOT';
    const bytesMoved = keyBytes + expectedKeys * valueBytes;
    const seconds = totalMs / 1000;
    const [dSource, dTarget, dBench, dMachine] = cpuEnd.map((v, i) => v - (cpuStart[i] ?? NaN)) as [
      number,
      number,
      number,
      number,
    ];
    return {
      backend,
      seconds,
      nodeElapsedMs: done.elapsedMs,
      keysMoved: done.keys,
      bytesMoved,
      mibPerSec: bytesMoved / MiB / seconds,
      artifactBytes: done.bytes,
      writePauseMs: done.writePauseMs,
      maxPauseMsRequested: 'node default (1000 ms)',
      snapshotAttempts: done.snapshotAttempts,
      handoffAttempts: done.handoffAttempts,
      changesApplied: done.changesApplied,
      phases,
      snapshot,
      reference,
      cpuMs: {
        wallMs: totalMs,
        cores: cpus().length,
        source: dSource,
        target: dTarget,
        bench: dBench,
        machine: dMachine,
        others: Math.max(0, dMachine - dSource - dTarget - dBench),
      },
      writer: {
        ratePerSec: config.splitWriterRate,
        during: writer.stats(started, ended),
        idle: writer.stats(warmStart, started),
        longestGapEndedAtMs: gap.endedAt - started,
        longestGapPhase: gapPhase,
        redirects: writer.routing.counters.redirects,
        tryAgainRetries: writer.routing.counters.retries,
        ackedBySource: writer.ackedBy.get(source.address) ?? 0,
        ackedByTarget: writer.ackedBy.get(target.address) ?? 0,
        keysInPool: pool.length,
        keysVerified: checked,
        lostCount: lost.length,
        lost: lost.slice(0, 20),
      },
      verified: { targetOwns, sourceOwns, targetKeysInRange: targetKeys, expectedKeys, newKeys },
      load: loaded.load,
      rssBytes: {
        sourceBefore: rssSourceBefore,
        sourceAfter: readRss(source.pid),
        targetAfter: readRss(target.pid),
      },
      events,
      snapshotPolls: polls,
    };
  } catch (error) {
    const tails = [source, target]
      .filter((n): n is NodeProcess => n !== undefined)
      .map((n) => `${n.name} stderr: ${n.stderr.toString().trim().slice(-1500)}`)
      .join('\n');
    if (tails.trim()) log(`  split ${backend} failed; ${tails}`);
    throw error;
  } finally {
    if (writer) {
      await writer.stop().catch(() => undefined);
      writer.close();
    }
    conn?.close();
    for (const c of clients) c.close();
    if (target) await target.stop();
    if (source) await source.stop();
    await removeDir(sourceDir);
    await removeDir(targetDir);
  }
}

// ------------------------------------------------------------------------------- rows

const secondsText = (s: number): string => formatMs(s * 1000);

function describeSplit(r: SplitResult): string {
  const p = r.phases.durationsMs;
  const s = r.snapshot;
  const w = r.writer;
  const c = r.cpuMs;
  const sec = (ms: number): string => (ms / 1000).toFixed(1);
  return (
    `${formatCount(r.keysMoved)} keys, ${formatBytes(r.bytesMoved)} in ${secondsText(r.seconds)} = ${r.mibPerSec.toFixed(1)} MiB/s ` +
    `(artifact ${formatBytes(r.artifactBytes)}); write pause ${r.writePauseMs} ms on the source, ` +
    `client-visible max gap ${formatMs(w.during.maxGapMs)} (${w.longestGapPhase}); ` +
    `phases: start ${formatMs(p.start)}, SNAPSHOT ${formatMs(p.snapshot)} ` +
    `(source build READY at ${formatMs(s.readyAt)}, ${formatBytes(s.receivedAtReady)} received by then; ` +
    `last bytes → CATCH_UP ${formatMs(s.finishMs)}; the same range built alone: ${formatMs(r.reference.buildAloneMs)}), ` +
    `CATCH_UP ${formatMs(p.catchUp)}, HANDOFF ${formatMs(p.handoff)}; ` +
    `CPU s over the ${sec(c.wallMs)} s × ${c.cores} cores: source ${sec(c.source)}, target ${sec(c.target)}, bench ${sec(c.bench)}, other users ${sec(c.others)}; ` +
    `writer ${w.ratePerSec}/s: ${formatCount(w.during.writes)} acked during, p50 ${formatMs(w.during.p50Ms)}, ` +
    `p99 ${formatMs(w.during.p99Ms)}, max ${formatMs(w.during.maxMs)} (idle p99 ${formatMs(w.idle.p99Ms)}); ` +
    `${w.redirects} MOVED, ${w.tryAgainRetries} TRYAGAIN; ${formatCount(w.keysVerified)} written keys read back from the target, ${w.lostCount} lost`
  );
}

function describeReshard(r: RedisReshardResult): string {
  const w = r.writerStats;
  return (
    `reshard ${secondsText(r.seconds)} = ${r.mibPerSec.toFixed(1)} MiB/s (${formatCount(r.keysMoved)} keys, ${formatCount(r.migrateCalls)} MIGRATE)` +
    (w
      ? `, its writer: ${formatCount(w.during.writes)} acked, p99 ${formatMs(w.during.p99Ms)}, max ${formatMs(w.during.maxMs)}, ` +
        `max gap ${formatMs(w.during.maxGapMs)}, ${formatCount(w.movedRedirects)} MOVED, ${formatCount(w.askRedirects)} ASK, ${w.lostCount} lost`
      : '')
  );
}

function splitRow(
  n: number,
  ours: readonly SplitResult[],
  redis: readonly RedisReshardResult[],
  redisMissing: string | undefined,
): Row {
  const [name, target] = SPLIT_ROWS[n] as [string, string];
  const value = median(ours.map((r) => r.seconds));
  const pause = Math.max(...ours.map((r) => r.writePauseMs));
  const pauseOk = pause <= TARGETS.splitPauseMs;
  const mid = [...ours].sort((a, b) => a.seconds - b.seconds)[ours.length >> 1] as SplitResult;
  const details = {
    runs: ours.map(({ events: _events, snapshotPolls: _polls, ...rest }) => rest),
    timelines: ours.map((r) => ({ events: r.events, snapshotPolls: r.snapshotPolls })),
    redis,
  };
  if (redis.length === 0) {
    return {
      n,
      name,
      value,
      valueText: secondsText(value),
      baseline: null,
      baselineText: '-',
      ratio: null,
      ratioText: '-',
      target,
      verdict: pauseOk ? 'SKIPPED' : 'MISS',
      note: `${describeSplit(mid)}; no baseline: ${redisMissing ?? 'the reshard did not run'}`,
      details,
    };
  }
  const baseline = median(redis.map((r) => r.seconds));
  const ratio = baseline / value;
  const midRedis = [...redis].sort((a, b) => a.seconds - b.seconds)[
    redis.length >> 1
  ] as RedisReshardResult;
  const perRun =
    ours.length > 1
      ? `; per run ours ${ours.map((r) => secondsText(r.seconds)).join('/')} (write pause ${ours.map((r) => r.writePauseMs).join('/')} ms), ` +
        `reshard ${redis.map((r) => secondsText(r.seconds)).join('/')}`
      : '';
  return {
    n,
    name,
    value,
    valueText: secondsText(value),
    baseline,
    baselineText: secondsText(baseline),
    ratio,
    ratioText: `${ratio.toFixed(2)}×`,
    target,
    verdict: ratio >= TARGETS.splitSpeedup && pauseOk ? 'PASS' : 'MISS',
    note: `${describeSplit(mid)}; baseline = ${describeReshard(midRedis)}${perRun}`,
    details,
  };
}

// ----------------------------------------------------------------------------- section

/**
 * Rows 11-12: for each run, each backend's split, then the Redis reshard of the same data
 * with the same writer. A failed side becomes an ERROR row; the other rows still run.
 */
export async function splitSuite(
  config: BenchConfig,
  tmp: string,
  rows: Row[],
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  try {
    await splitRuns(config, tmp, rows, errors, results);
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}

async function splitRuns(
  config: BenchConfig,
  tmp: string,
  rows: Row[],
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  const ours = new Map<SplitBackend, SplitResult[]>();
  const failed = new Map<SplitBackend, string>();
  const redis: RedisReshardResult[] = [];
  const tools = redisClusterTools();
  const redisMissing = 'missing' in tools ? tools.missing : undefined;
  let redisError: string | undefined;
  const started: Record<number, { load: number; at: number }> = {};
  for (let run = 0; run < config.splitRuns && !isStopping(); run++) {
    for (const backend of config.splitBackends) {
      if (isStopping() || failed.has(backend)) continue;
      const n = SPLIT_ROW_OF[backend];
      log(`measurement ${n} run ${run + 1}/${config.splitRuns}: ${SPLIT_ROWS[n]?.[0] ?? ''}`);
      started[n] ??= { load: loadavg()[0] ?? NaN, at: performance.now() };
      try {
        const result = await runSplit(config, backend, join(tmp, `${backend}-${run}`));
        ours.set(backend, [...(ours.get(backend) ?? []), result]);
      } catch (error) {
        if (isStopping()) return;
        const message = error instanceof Error ? error.message : String(error);
        log(`measurement ${n} failed: ${error instanceof Error ? error.stack : message}`);
        errors.push(`${n}: ${message}`);
        failed.set(backend, message.split('\n')[0] ?? message);
      }
    }
    if (redisMissing || redisError || isStopping()) continue;
    log(
      `measurement 11-12 baseline run ${run + 1}/${config.splitRuns}: redis-cli --cluster reshard`,
    );
    try {
      const result = await measureRedisReshard({
        keys: config.splitKeys,
        valueBytes: config.valueSize,
        slots: HALF_OF_SLOTS,
        writer: true,
        writerRatePerSec: config.splitWriterRate,
        seed: config.seed,
        dir: join(tmp, `redis-${run}`),
        timeoutMs: config.splitStepTimeoutMs,
      });
      log(`  ${describeReshard(result)}`);
      if ((result.writerStats?.lostCount ?? 0) > 0)
        log(
          `  WARNING: the Redis writer lost ${result.writerStats?.lostCount} acknowledged writes`,
        );
      redis.push(result);
    } catch (error) {
      if (isStopping()) return;
      redisError = error instanceof Error ? error.message.split('\n')[0] : String(error);
      log(`redis reshard failed: ${error instanceof Error ? error.stack : String(error)}`);
      errors.push(`11-12 baseline: ${redisError}`);
    }
  }
  for (const backend of config.splitBackends) {
    const n = SPLIT_ROW_OF[backend];
    const [name, target] = SPLIT_ROWS[n] as [string, string];
    const list = ours.get(backend) ?? [];
    let row: Row;
    if (failed.has(backend) || list.length === 0) {
      row = skippedRow(n, name, target, `ERROR: ${failed.get(backend) ?? 'did not run'}`, 'ERROR');
    } else {
      row = splitRow(
        n,
        list,
        redis,
        redisMissing ?? (redisError ? `ERROR: ${redisError}` : undefined),
      );
    }
    const s = started[n];
    row.details = {
      ...row.details,
      loadavg1mAtStart: s?.load,
      wallMs: s ? performance.now() - s.at : undefined,
    };
    rows.push(row);
  }
  results.split = {
    keys: config.splitKeys,
    valueBytes: config.valueSize,
    slots: HALF_OF_SLOTS,
    writerRatePerSec: config.splitWriterRate,
    runs: config.splitRuns,
    backends: config.splitBackends,
    redis: redisMissing ?? ('version' in tools ? tools.version : undefined),
  };
}
