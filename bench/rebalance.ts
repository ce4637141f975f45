/**
 * The rebalance section (rows 36-38 of docs/BENCHMARKS.md): a cluster of
 * BENCH_REBALANCE_NODES memory nodes (`shardsnap serve --etcd --cluster`) around a
 * single-member etcd on loopback, every slot and BENCH_REBALANCE_KEYS string keys ×
 * BENCH_VALUE_SIZE bytes on n1, spread evenly by `shardsnap cluster rebalance` (the CLI,
 * as users run it, timed from spawn to exit) while a steady writer (one write in flight,
 * BENCH_REBALANCE_WRITER_RATE a second) overwrites keys all over the dataset through a
 * RoutingClient. Reported: total time, MiB/s of the keys that left n1, the write pause
 * each handoff measured on its source, the longest gap between the writer's acks; then
 * checked: `cluster status` (every node live with its even share of slots), each node
 * serving what the topology assigns it, the key counts adding up, and every acknowledged
 * write readable at its owner.
 *
 * Baseline, in the same run: the same keys and value bytes in a Redis Cluster of as many
 * masters, spread by `redis-cli --cluster rebalance --cluster-use-empty-masters` under
 * the same writer (bench/redis-rebalance.ts).
 */
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import { keyName } from '../src/client/synthetic';
import { ClusterKeys, connectEtcd, listMigrations, readClusterState } from '../src/cluster';
import { MAX_SLOT, slotOf } from '../src/core';
import { type TestEtcd, startEtcd } from '../test/helpers/etcd';
import { isStopping, removeDir, stopTrackedProcesses } from './cleanup';
import { type BenchConfig, TARGETS } from './config';
import { type NodeProcess, readRss, runShardsnap, startNodeProcess } from './node-process';
import { redisClusterTools } from './redis-cluster';
import { type WriterKey, type WriterStats, writerValue } from './redis-cluster-writer';
import { type RedisRebalanceResult, redisRebalance } from './redis-rebalance';
import { type Row, skippedRow, verdict } from './report';
import { machineBusyMs, processCpuMs, threadCpuMs } from './split';
import { SplitWriter, longestGap } from './split-writer';
import { MiB, formatBytes, formatCount, formatMs, log, sleep } from './util';
import { loadLogged } from './load-logged';

type Attempt = (n: number, body: () => Promise<Row>) => Promise<void>;

export const REBALANCE_ROWS: Record<number, [string, string]> = {
  36: [
    'rebalance 1 → 4 memory nodes under writes',
    `ratio ≥ ${TARGETS.rebalanceSpeedup} (redis-cli / ours)`,
  ],
  37: ['rebalance: longest write pause of a handoff (source)', `≤ ${TARGETS.rebalancePauseMs} ms`],
  38: ['rebalance: longest gap between writer acks (client)', `≤ ${TARGETS.rebalancePauseMs} ms`],
};

/** The cluster's name in etcd (the etcd is the benchmark's own). */
const CLUSTER = 'bench';
/** Distinct keys the writer picks from, spread over the dataset (as the Redis side's). */
const WRITER_KEYS = 10_000;
const WRITER_WARMUP_MS = 1_000;
/** How long the nodes may take to register, see the topology, or clean up moved slots. */
const SETTLE_MS = 60_000;

/** The row names say "1 → 4"; another node count is named as it is. */
function rowName(n: number, nodes: number): string {
  const name = REBALANCE_ROWS[n]?.[0] ?? `measurement ${n}`;
  return nodes === 4 ? name : name.replace('1 → 4', `1 → ${nodes}`);
}

const rowTarget = (n: number): string => REBALANCE_ROWS[n]?.[1] ?? '-';

export interface RebalanceMigration {
  id: string;
  slots: string;
  from: string;
  to: string;
  keys: number;
  bytes: number;
  writePauseMs: number;
  committedVersion: number;
  /** From etcd's record: when it was recorded (ms after the CLI's spawn) and until its commit. */
  recordedAtMs: number;
  durationMs: number;
}

export interface RebalanceResult {
  nodes: number;
  parallel: number;
  keys: number;
  valueBytes: number;
  /** `shardsnap cluster rebalance`, spawn to exit. */
  cliMs: number;
  /** The controller's own elapsedMs (lead taken → last commit). */
  controllerMs: number;
  version: number;
  /** Key and value bytes of the keys that left n1 (as the Redis side counts them). */
  bytesMoved: number;
  keysMoved: number;
  mibPerSec: number;
  /** Bytes the targets received (the records' framing included), from the CLI's JSON. */
  artifactBytes: number;
  /** The longest handoff pause any source measured (the CLI's maxWritePauseMs). */
  maxWritePauseMs: number;
  migrations: RebalanceMigration[];
  writer: {
    ratePerSec: number;
    during: WriterStats;
    idle: WriterStats;
    /** When the longest gap between acks ended, ms after the CLI was spawned. */
    longestGapEndedAtMs: number;
    /** Which migrations ran during the longest gap, and how far into each it fell. */
    longestGapDuring: string;
    redirects: number;
    tryAgainRetries: number;
    topologyRefreshes: number;
    /** Acknowledged writes per node id. */
    ackedBy: Record<string, number>;
    keysInPool: number;
    keysVerified: number;
    lostCount: number;
    lost: string[];
  };
  verified: {
    slotsPerNode: Record<string, number>;
    keysPerNode: Record<string, number>;
    /** From the CLI's exit until the key counts added up (sources drop moved keys in the background). */
    keyCountsSettledMs: number;
  };
  /**
   * CPU ms from the CLI's spawn to its exit: each node, the bench process, the whole
   * machine (all cores), and `rest` = machine - nodes - bench (the CLI, etcd, other users).
   */
  cpuMs: {
    wallMs: number;
    cores: number;
    nodes: Record<string, number>;
    /** Per node: its event loop (`main`) and its other threads (`other`: libuv pool, V8). */
    nodeThreads: Record<string, Record<string, number>>;
    bench: number;
    machine: number;
    rest: number;
  };
  /** Passed as `--max-pause` (ms); 0: not passed, the node's default. */
  maxPauseMs: number;
  /** 1-minute load average when this run's cluster was started (the machine is shared). */
  loadavg1mAtStart: number;
  /** From the end of the load until every node was quiet (see `untilQuiet`). */
  quietAfterLoadMs: number;
  load: { keys: number; bytes: number; ms: number; keysPerSec: number };
  rssBytes: Record<string, number>;
}

// ------------------------------------------------------------------------------ data

/** The Redis side's pool: `WRITER_KEYS` dataset keys spread over the whole dataset. */
function writerPool(keys: number): WriterKey[] {
  const size = Math.min(WRITER_KEYS, keys);
  const pool: WriterKey[] = [];
  for (let k = 0; k < size; k++) {
    const key = keyName(Math.floor((k * keys) / size));
    pool.push({ key, slot: slotOf(key) });
  }
  return pool;
}

/** Keys, and their key + value bytes, of the dataset whose slot is not `onFirst` any more. */
function movedBytes(
  keys: number,
  valueBytes: number,
  onFirst: (slot: number) => boolean,
): { keys: number; bytes: number } {
  let moved = 0;
  let bytes = 0;
  for (let i = 0; i < keys; i++) {
    const key = keyName(i);
    if (onFirst(slotOf(key))) continue;
    moved++;
    bytes += key.length + valueBytes;
  }
  return { keys: moved, bytes };
}

// --------------------------------------------------------------------------- cluster

interface StatusJson {
  version: number;
  nodes: Array<{ id: string; live: boolean; address: string; slotCount: number }>;
  slots: Array<{ start: number; end: number; node: string }>;
}

/** `shardsnap cluster --etcd EP --cluster bench ARGS --json`, as an operator runs it. */
function clusterCli(
  etcd: TestEtcd,
  args: readonly string[],
  timeoutMs: number,
): ReturnType<typeof runShardsnap> {
  return runShardsnap(
    ['cluster', '--etcd', etcd.endpoints, '--cluster', CLUSTER, ...args],
    timeoutMs,
    `shardsnap cluster ${args[0] ?? ''}`,
  );
}

/** Polls `check` every 50 ms until it returns true; otherwise throws what it last returned. */
async function until(
  what: string,
  ms: number,
  check: () => Promise<true | string>,
): Promise<number> {
  const started = performance.now();
  let last = '';
  for (;;) {
    const result = await check();
    if (result === true) return performance.now() - started;
    last = result;
    if (performance.now() - started > ms || isStopping())
      throw new Error(`${what} not within ${formatMs(ms)}: ${last}`);
    await sleep(50);
  }
}

const rangesText = (ranges: ReadonlyArray<{ start: number; end: number }>): string =>
  ranges.map((r) => `${r.start}-${r.end}`).join(',') || 'none';

interface Cluster {
  etcd: TestEtcd;
  nodes: NodeProcess[];
  clients: Map<string, ShardsnapClient>;
}

/** etcd, then nodes n1..nN registered in it, then every slot given to n1. */
async function startCluster(
  count: number,
  dir: string,
  options: { nodeFlags: readonly string[]; serveArgs: readonly string[] },
  cluster: Partial<Cluster>,
): Promise<void> {
  const etcd = await startEtcd();
  cluster.etcd = etcd;
  log(`  etcd (pid ${etcd.pid}) on ${etcd.endpoints}`);
  cluster.nodes = [];
  cluster.clients = new Map();
  for (let k = 1; k <= count; k++) {
    const node = await startNodeProcess({
      name: `n${k}`,
      dataDir: join(dir, `n${k}`),
      extraArgs: ['--etcd', etcd.endpoints, '--cluster', CLUSTER, ...options.serveArgs],
      nodeFlags: options.nodeFlags,
    });
    cluster.nodes.push(node);
    cluster.clients.set(node.name, new ShardsnapClient(node.address));
  }
  log(`  nodes: ${cluster.nodes.map((n) => `${n.name} (pid ${n.pid}) ${n.address}`).join(', ')}`);
  const conn = connectEtcd(etcd.endpoints);
  try {
    const keys = new ClusterKeys(CLUSTER);
    await until('every node registered', SETTLE_MS, async () => {
      const state = await readClusterState(conn, keys);
      return state.nodes.size === count || `${state.nodes.size} of ${count} registered`;
    });
  } finally {
    conn.close();
  }
  await clusterCli(etcd, ['init', '--node', 'n1'], SETTLE_MS);
  const n1 = cluster.clients.get('n1') as ShardsnapClient;
  await until('n1 serving every slot', SETTLE_MS, async () => {
    const owned = (await n1.stats()).ownedSlots;
    return rangesText(owned) === `0-${MAX_SLOT}` || `n1 owns ${rangesText(owned)}`;
  });
}

async function loadFirst(
  config: BenchConfig,
  client: ShardsnapClient,
): Promise<RebalanceResult['load']> {
  const keys = config.rebalanceKeys;
  const loaded = await loadLogged(client, {
    keys: keys,
    valueSize: config.valueSize,
    seed: config.seed,
    timeoutMs: config.rebalanceStepTimeoutMs,
    what: 'loading n1',
    logPrefix: `    `,
  });
  const stats = await client.stats();
  if (Number(stats.keyCount) !== keys)
    throw new Error(`n1 holds ${stats.keyCount} keys after loading ${keys}`);
  log(
    `  loaded ${formatCount(loaded.keys)} keys (${formatBytes(loaded.bytes)}) into n1 in ${formatMs(loaded.elapsedMs)}`,
  );
  return {
    keys: loaded.keys,
    bytes: loaded.bytes,
    ms: loaded.elapsedMs,
    keysPerSec: loaded.keys / (loaded.elapsedMs / 1000),
  };
}

/** A node using less than this share of one core over `QUIET_WINDOW_MS` is quiet. */
const QUIET_CPU_SHARE = 0.05;
const QUIET_WINDOW_MS = 500;

/**
 * Waits until every node is quiet: a loaded node's write-ahead log grew by the whole
 * dataset, so it takes local snapshots of it in the background once it passes
 * `--local-snapshot-wal-bytes`, which would otherwise run during the rebalance (the Redis
 * side, without persistence, has no such work after its load). Returns the time it took.
 */
async function untilQuiet(nodes: readonly NodeProcess[]): Promise<number> {
  return until('every node quiet after the load', SETTLE_MS * 5, async () => {
    const before = nodes.map((n) => processCpuMs(n.pid));
    await sleep(QUIET_WINDOW_MS);
    const busy = nodes
      .map((n, i) => ({
        name: n.name,
        share: (processCpuMs(n.pid) - (before[i] ?? 0)) / QUIET_WINDOW_MS,
      }))
      .filter((n) => !(n.share < QUIET_CPU_SHARE));
    return (
      busy.length === 0 ||
      `busy: ${busy.map((n) => `${n.name} ${(n.share * 100).toFixed(0)}% of a core`).join(', ')}`
    );
  });
}

// ------------------------------------------------------------------------- rebalance

/** The CLI's migrations, with the times of their records in etcd (`spawnedAt`: epoch ms). */
async function parseMigrations(
  output: Record<string, unknown>,
  etcd: TestEtcd,
  spawnedAt: number,
): Promise<RebalanceMigration[]> {
  const list = output.migrations;
  if (!Array.isArray(list)) throw new Error('cluster rebalance printed no migrations');
  const conn = connectEtcd(etcd.endpoints);
  const records = await listMigrations(conn, new ClusterKeys(CLUSTER)).finally(() => conn.close());
  return list.map((m: Record<string, unknown>) => {
    const record = records.find((r) => r.id === m.id);
    return {
      id: String(m.id),
      slots: String(m.slots),
      from: String(m.from),
      to: String(m.to),
      keys: Number(m.keys ?? NaN),
      bytes: Number(m.bytes ?? NaN),
      writePauseMs: Number(m.writePauseMs ?? NaN),
      committedVersion: Number(m.committedVersion ?? NaN),
      recordedAtMs: record ? record.createdAtMs - spawnedAt : NaN,
      durationMs: record ? record.updatedAtMs - record.createdAtMs : NaN,
    };
  });
}

/** Reads every acknowledged key at the node the topology gives its slot to. */
async function verifyWrites(
  writer: SplitWriter,
  pool: readonly WriterKey[],
  valueBytes: number,
  ownerOf: (slot: number) => ShardsnapClient | undefined,
): Promise<{ checked: number; lost: string[] }> {
  const byOwner = new Map<ShardsnapClient, Array<[number, number]>>();
  const lost: string[] = [];
  for (const [index, seq] of writer.lastAcked) {
    const key = pool[index] as WriterKey;
    const owner = ownerOf(key.slot);
    if (!owner) {
      lost.push(`${key.key.toString()}: slot ${key.slot} has no owner`);
      continue;
    }
    byOwner.set(owner, [...(byOwner.get(owner) ?? []), [index, seq]]);
  }
  let checked = 0;
  for (const [client, entries] of byOwner) {
    for (let at = 0; at < entries.length; at += 500) {
      const batch = entries.slice(at, at + 500);
      const values = await client.read({
        keys: batch.map(([index]) => (pool[index] as WriterKey).key),
      });
      batch.forEach(([index, seq], i) => {
        checked++;
        const value = values[i];
        const expected = writerValue(seq, valueBytes);
        if (!value?.found || !value.string || !Buffer.from(value.string).equals(expected))
          lost.push(
            `${(pool[index] as WriterKey).key.toString()} at ${client.address}: expected w${seq}, got ` +
              (value?.found && value.string
                ? Buffer.from(value.string).subarray(0, 12).toString('latin1')
                : 'not found'),
          );
      });
    }
  }
  return { checked, lost };
}

/** One cluster, loaded, rebalanced under the writer, checked; everything stopped after. */
async function runRebalance(
  config: BenchConfig,
  parallel: number,
  dir: string,
): Promise<RebalanceResult> {
  const count = config.rebalanceNodes;
  const keys = config.rebalanceKeys;
  const valueBytes = config.valueSize;
  const timeoutMs = config.rebalanceStepTimeoutMs;
  const cluster: Partial<Cluster> = {};
  let writer: SplitWriter | undefined;
  const loadAtStart = loadavg()[0] ?? NaN;
  try {
    await startCluster(
      count,
      dir,
      { nodeFlags: config.rebalanceNodeFlags, serveArgs: config.rebalanceServeArgs },
      cluster,
    );
    const { etcd, nodes, clients } = cluster as Cluster;
    const first = nodes[0] as NodeProcess;
    const load = await loadFirst(config, clients.get('n1') as ShardsnapClient);

    const quietMs = await untilQuiet(nodes);
    log(
      `  nodes quiet ${formatMs(quietMs)} after the load (n1's local snapshots of the load done)`,
    );

    const pool = writerPool(keys);
    // n1 is the seed; its Topology answer names every node, and is asked again after a MOVED.
    writer = new SplitWriter(first.address, pool, valueBytes);
    const warmStart = performance.now();
    writer.start(WRITER_WARMUP_MS + timeoutMs, config.rebalanceWriterRate);
    await sleep(WRITER_WARMUP_MS);

    const cpuAt = (): number[] => [
      ...nodes.map((n) => processCpuMs(n.pid)),
      benchCpuMs(),
      machineBusyMs(),
    ];
    const threadsAt = (): Array<Record<string, number>> => nodes.map((n) => threadCpuMs(n.pid));
    const threadsStart = threadsAt();
    const cpuStart = cpuAt();
    const maxPause = config.rebalanceMaxPauseMs;
    const spawnedAt = Date.now();
    const started = performance.now();
    const run = await clusterCli(
      etcd,
      [
        'rebalance',
        '--parallel',
        String(parallel),
        ...(maxPause > 0 ? ['--max-pause', String(maxPause)] : []),
      ],
      timeoutMs,
    );
    const ended = started + run.ms;
    const cpuUsed = cpuAt().map((v, i) => v - (cpuStart[i] ?? NaN));
    const threadsUsed = threadsAt().map((after, i) => {
      const before = threadsStart[i] ?? {};
      const out: Record<string, number> = {};
      for (const [group, ms] of Object.entries(after)) out[group] = ms - (before[group] ?? 0);
      return out;
    });
    await writer.stop();
    const migrations = await parseMigrations(run.output, etcd, spawnedAt);
    const maxWritePauseMs = Number(run.output.maxWritePauseMs);
    log(
      `  rebalance --parallel ${parallel}: ${formatMs(run.ms)} (controller ${formatMs(Number(run.output.elapsedMs))}), ` +
        `${migrations.length} migrations, longest write pause ${maxWritePauseMs} ms (source)`,
    );

    // Checks: the topology as `cluster status` shows it, the nodes' own view, key counts, writes.
    const status = (await clusterCli(etcd, ['status'], SETTLE_MS)).output as unknown as StatusJson;
    const share = (MAX_SLOT + 1) / count;
    const slotsPerNode: Record<string, number> = {};
    for (const node of status.nodes) slotsPerNode[node.id] = node.slotCount;
    if (
      status.nodes.length !== count ||
      status.nodes.some((n) => !n.live || Math.abs(n.slotCount - share) >= 1)
    )
      throw new Error(
        `after the rebalance cluster status shows ${status.nodes.map((n) => `${n.id}${n.live ? '' : ' (down)'} ${n.slotCount}`).join(', ')} slots`,
      );
    if (Number(run.output.version) !== status.version)
      throw new Error(
        `the rebalance says topology version ${String(run.output.version)}, cluster status ${status.version}`,
      );
    const ownerTable = new Array<string | undefined>(MAX_SLOT + 1);
    for (const a of status.slots) ownerTable.fill(a.node, a.start, a.end + 1);
    await until('every node serving what the topology assigns it', SETTLE_MS, async () => {
      for (const node of nodes) {
        const assigned = status.slots.filter((a) => a.node === node.name);
        const owned = (await (clients.get(node.name) as ShardsnapClient).stats()).ownedSlots;
        if (rangesText(owned) !== rangesText(assigned))
          return `${node.name} serves ${rangesText(owned)}, the topology assigns ${rangesText(assigned)}`;
      }
      return true;
    });
    const keysPerNode: Record<string, number> = {};
    const keyCountsSettledMs = await until('the key counts adding up', SETTLE_MS, async () => {
      let sum = 0;
      for (const node of nodes) {
        keysPerNode[node.name] = Number(
          (await (clients.get(node.name) as ShardsnapClient).stats()).keyCount,
        );
        sum += keysPerNode[node.name] ?? 0;
      }
      return sum === keys || `the nodes hold ${Object.values(keysPerNode).join('+')} = ${sum} keys`;
    });
    const { checked, lost } = await verifyWrites(writer, pool, valueBytes, (slot) => {
      const owner = ownerTable[slot];
      return owner === undefined ? undefined : clients.get(owner);
    });
    if (lost.length > 0)
      throw new Error(
        `${lost.length} acknowledged writes not at their owner, e.g. ${lost.slice(0, 3).join('; ')}`,
      );
    const moved = movedBytes(keys, valueBytes, (slot) => ownerTable[slot] === 'n1');
    const migratedKeys = migrations.reduce((n, m) => n + m.keys, 0);
    if (moved.keys !== keys - (keysPerNode.n1 ?? 0) || migratedKeys !== moved.keys)
      throw new Error(
        `the topology says ${moved.keys} keys left n1, the migrations say ${migratedKeys}, n1 holds ${keysPerNode.n1} of ${keys}`,
      );

    const addressToId = new Map(nodes.map((n) => [n.address, n.name]));
    const ackedBy: Record<string, number> = {};
    for (const [address, n] of writer.ackedBy) ackedBy[addressToId.get(address) ?? address] = n;
    const gap = longestGap(writer.samples, started, ended);
    const nodeCpu: Record<string, number> = {};
    nodes.forEach((n, i) => (nodeCpu[n.name] = cpuUsed[i] ?? NaN));
    const benchCpu = cpuUsed[nodes.length] ?? NaN;
    const machineCpu = cpuUsed[nodes.length + 1] ?? NaN;
    const nodesCpu = Object.values(nodeCpu).reduce((a, b) => a + b, 0);
    const rssBytes: Record<string, number> = {};
    for (const node of nodes) rssBytes[node.name] = readRss(node.pid);
    const result: RebalanceResult = {
      nodes: count,
      parallel,
      keys,
      valueBytes,
      cliMs: run.ms,
      controllerMs: Number(run.output.elapsedMs),
      version: status.version,
      bytesMoved: moved.bytes,
      keysMoved: moved.keys,
      mibPerSec: moved.bytes / MiB / (run.ms / 1000),
      artifactBytes: Number(run.output.bytes),
      maxWritePauseMs,
      migrations,
      writer: {
        ratePerSec: config.rebalanceWriterRate,
        during: writer.stats(started, ended),
        idle: writer.stats(warmStart, started),
        longestGapEndedAtMs: gap.endedAt - started,
        longestGapDuring: gapDuring(migrations, gap.endedAt - started, gap.ms),
        redirects: writer.routing.counters.redirects,
        tryAgainRetries: writer.routing.counters.retries,
        topologyRefreshes: writer.routing.counters.topologyRefreshes,
        ackedBy,
        keysInPool: pool.length,
        keysVerified: checked,
        lostCount: lost.length,
        lost: lost.slice(0, 20),
      },
      verified: { slotsPerNode, keysPerNode, keyCountsSettledMs },
      cpuMs: {
        wallMs: run.ms,
        cores: cpus().length,
        nodes: nodeCpu,
        nodeThreads: Object.fromEntries(nodes.map((n, i) => [n.name, threadsUsed[i] ?? {}])),
        bench: benchCpu,
        machine: machineCpu,
        rest: Math.max(0, machineCpu - nodesCpu - benchCpu),
      },
      maxPauseMs: maxPause,
      loadavg1mAtStart: loadAtStart,
      quietAfterLoadMs: quietMs,
      load,
      rssBytes,
    };
    log(`  ${describeOurs(result)}`);
    return result;
  } catch (error) {
    const tails = (cluster.nodes ?? [])
      .map((n) => `${n.name} stderr: ${n.stderr.toString().trim().slice(-1500)}`)
      .filter((line) => !line.endsWith(': '))
      .join('\n');
    if (tails) log(`  rebalance --parallel ${parallel} failed; ${tails}`);
    const etcdTail = cluster.etcd?.stderr().trim();
    if (etcdTail) log(`  etcd stderr: ${etcdTail.slice(-1500)}`);
    throw error;
  } finally {
    if (writer) {
      await writer.stop().catch(() => undefined);
      writer.close();
    }
    for (const client of cluster.clients?.values() ?? []) client.close();
    for (const node of [...(cluster.nodes ?? [])].reverse()) await node.stop();
    await cluster.etcd?.close();
    await removeDir(dir);
  }
}

/**
 * Where a gap of the writer's acks fell among the migrations (times since the CLI's
 * spawn): a gap at the end of a migration is its handoff, one earlier its snapshot.
 */
function gapDuring(
  migrations: readonly RebalanceMigration[],
  endedAtMs: number,
  ms: number,
): string {
  const from = endedAtMs - ms;
  const during = migrations.filter(
    (m) => m.recordedAtMs <= endedAtMs && from <= m.recordedAtMs + m.durationMs,
  );
  if (during.length === 0) return 'outside every migration';
  return during
    .map(
      (m) =>
        `${m.from}→${m.to} ${formatMs(Math.max(0, from - m.recordedAtMs))}–${formatMs(endedAtMs - m.recordedAtMs)} into its ${formatMs(m.durationMs)}`,
    )
    .join(', ');
}

// ------------------------------------------------------------------------------- rows

const secondsText = (ms: number): string => formatMs(ms);

function benchCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function describeOurs(r: RebalanceResult): string {
  const w = r.writer;
  const perMigration = r.migrations
    .map(
      (m) =>
        `${m.from}→${m.to} ${formatCount(m.keys)} keys at ${formatMs(m.recordedAtMs)} for ${formatMs(m.durationMs)}, pause ${m.writePauseMs} ms`,
    )
    .join('; ');
  const c = r.cpuMs;
  const sec = (ms: number): string => (ms / 1000).toFixed(1);
  return (
    `ours --parallel ${r.parallel}${r.maxPauseMs > 0 ? ` --max-pause ${r.maxPauseMs}` : ''}: ${formatCount(r.keysMoved)} keys, ${formatBytes(r.bytesMoved)} in ${secondsText(r.cliMs)} ` +
    `= ${r.mibPerSec.toFixed(1)} MiB/s (controller ${secondsText(r.controllerMs)}, artifacts ${formatBytes(r.artifactBytes)}); ` +
    `${perMigration}; started once the nodes were quiet, ${formatMs(r.quietAfterLoadMs)} after the load; CPU s over the ${sec(c.wallMs)} s × ${c.cores} cores: ` +
    `${Object.entries(c.nodes)
      .map(([id, ms]) => `${id} ${sec(ms)} (main ${sec(c.nodeThreads[id]?.main ?? NaN)})`)
      .join(
        ', ',
      )}, bench ${sec(c.bench)}, rest (CLI, etcd, other users) ${sec(c.rest)}; writer ${w.ratePerSec}/s: ${formatCount(w.during.writes)} acked during, p50 ${formatMs(w.during.p50Ms)}, ` +
    `p99 ${formatMs(w.during.p99Ms)}, max ${formatMs(w.during.maxMs)}, longest gap ${formatMs(w.during.maxGapMs)} ` +
    `(${w.longestGapDuring}) (idle p99 ${formatMs(w.idle.p99Ms)}); ${w.redirects} MOVED, ${w.tryAgainRetries} TRYAGAIN, ` +
    `${w.topologyRefreshes} topology reads; ${formatCount(w.keysVerified)} written keys read back, ${w.lostCount} lost; ` +
    `key counts added up ${formatMs(r.verified.keyCountsSettledMs)} after the exit`
  );
}

function describeRedis(r: RedisRebalanceResult): string {
  const w = r.writer;
  return (
    `redis-cli --cluster rebalance: ${formatCount(r.keysMoved)} keys, ${formatBytes(r.bytesMoved)} in ${secondsText(r.rebalanceMs)} ` +
    `= ${(r.bytesPerSecond / MiB).toFixed(1)} MiB/s (${formatCount(r.migrateCalls)} MIGRATE, pipeline ${r.pipeline}); ` +
    `its writer: ${formatCount(w.acknowledged)} acked, p99 ${formatMs(w.p99Ms)}, max ${formatMs(w.maxPauseMs)}, ` +
    `longest gap ${formatMs(w.maxGapMs)}, ${formatCount(w.movedRedirects)} MOVED, ${formatCount(w.askRedirects)} ASK, ` +
    `${w.errors} errors, ${w.lost} lost`
  );
}

function otherRuns(ours: readonly RebalanceResult[]): string {
  if (ours.length < 2) return '';
  return `; every --parallel: ${ours
    .map(
      (r) =>
        `${r.parallel}: ${secondsText(r.cliMs)} (${r.mibPerSec.toFixed(1)} MiB/s, pause ${r.maxWritePauseMs} ms, gap ${formatMs(r.writer.during.maxGapMs)})`,
    )
    .join(', ')}`;
}

function timeRow(
  ours: readonly RebalanceResult[],
  redis: RedisRebalanceResult | undefined,
  redisMissing: string | undefined,
): Row {
  const main = ours[0] as RebalanceResult;
  const name = rowName(36, main.nodes);
  const details = { runs: ours, redis };
  const value = main.cliMs / 1000;
  if (!redis)
    return {
      ...skippedRow(36, name, rowTarget(36), ''),
      value,
      valueText: secondsText(main.cliMs),
      note: `${describeOurs(main)}${otherRuns(ours)}; no baseline: ${redisMissing ?? 'the Redis rebalance did not run'}`,
      details,
    };
  const ratio = redis.rebalanceMs / main.cliMs;
  return {
    n: 36,
    name,
    value,
    valueText: `${secondsText(main.cliMs)} = ${main.mibPerSec.toFixed(1)} MiB/s`,
    baseline: redis.rebalanceMs / 1000,
    baselineText: `${secondsText(redis.rebalanceMs)} = ${(redis.bytesPerSecond / MiB).toFixed(1)} MiB/s`,
    ratio,
    ratioText: `${ratio.toFixed(2)}×`,
    target: rowTarget(36),
    verdict: verdict(ratio >= TARGETS.rebalanceSpeedup),
    note: `${describeOurs(main)}${otherRuns(ours)}; baseline = ${describeRedis(redis)}`,
    details,
  };
}

function pauseRow(
  n: 37 | 38,
  ours: readonly RebalanceResult[],
  redis: RedisRebalanceResult | undefined,
): Row {
  const main = ours[0] as RebalanceResult;
  const value = n === 37 ? main.maxWritePauseMs : main.writer.during.maxGapMs;
  const note =
    n === 37
      ? `per migration ${main.migrations.map((m) => `${m.from}→${m.to} ${m.writePauseMs} ms`).join(', ')} ` +
        `(each source's own measure of its handoff); the writer saw a longest gap of ${formatMs(main.writer.during.maxGapMs)} (row 38)`
      : `${formatCount(main.writer.during.writes)} writes acked during the rebalance, max latency ${formatMs(main.writer.during.maxMs)}, ` +
        `p99 ${formatMs(main.writer.during.p99Ms)}; the gap ended ${formatMs(main.writer.longestGapEndedAtMs)} after the CLI's spawn ` +
        `(during ${main.writer.longestGapDuring})`;
  const baseline = redis ? (n === 37 ? redis.writer.maxPauseMs : redis.writer.maxGapMs) : null;
  return {
    n,
    name: rowName(n, main.nodes),
    value,
    valueText: formatMs(value),
    baseline,
    baselineText: baseline === null ? '-' : formatMs(baseline),
    ratio: value,
    ratioText: formatMs(value),
    target: rowTarget(n),
    verdict: verdict(value <= TARGETS.rebalancePauseMs),
    note:
      note +
      (redis
        ? n === 37
          ? `; baseline: the Redis writer's slowest write during redis-cli's rebalance`
          : `; baseline: the Redis writer's longest gap between acks`
        : ''),
  };
}

// ----------------------------------------------------------------------------- section

/**
 * Rows 36-38: ours once per BENCH_REBALANCE_PARALLEL value (each on a fresh cluster;
 * the rows use the first), then the Redis rebalance of the same data with the same writer.
 */
export async function rebalanceSuite(
  config: BenchConfig,
  tmp: string,
  attempt: Attempt,
  errors: string[],
  results: Record<string, unknown>,
): Promise<void> {
  try {
    const ours: RebalanceResult[] = [];
    let oursError: Error | undefined;
    for (const parallel of config.rebalanceParallel) {
      if (isStopping()) return;
      log(
        `measurements 36-38: ${formatCount(config.rebalanceKeys)} keys × ${config.valueSize} B, ` +
          `1 → ${config.rebalanceNodes} nodes, --parallel ${parallel}, writer ${config.rebalanceWriterRate}/s`,
      );
      try {
        ours.push(await runRebalance(config, parallel, join(tmp, `ours-p${parallel}`)));
      } catch (error) {
        if (isStopping()) return;
        log(`  ours failed: ${error instanceof Error ? error.stack : String(error)}`);
        errors.push(
          `36-38 ours --parallel ${parallel}: ${error instanceof Error ? error.message : String(error)}`,
        );
        oursError ??= error instanceof Error ? error : new Error(String(error));
        await stopTrackedProcesses();
      }
    }
    const tools = redisClusterTools();
    const redisMissing = 'missing' in tools ? tools.missing : undefined;
    let redis: RedisRebalanceResult | undefined;
    let redisError: string | undefined;
    const redisLoad = loadavg()[0] ?? NaN;
    if (!redisMissing && config.rebalanceBaseline && !isStopping()) {
      log(`measurements 36-38 baseline: redis-cli --cluster rebalance`);
      try {
        redis = await redisRebalance({
          keys: config.rebalanceKeys,
          valueBytes: config.valueSize,
          masters: config.rebalanceNodes,
          writerRate: config.rebalanceWriterRate,
          seed: config.seed,
          timeoutMs: config.rebalanceStepTimeoutMs,
        });
        log(`  ${describeRedis(redis)}`);
      } catch (error) {
        if (isStopping()) return;
        redisError = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
        log(`  redis rebalance failed: ${error instanceof Error ? error.stack : String(error)}`);
        errors.push(`36-38 baseline: ${redisError}`);
      }
    }
    const failed = (): Promise<Row> => Promise.reject(oursError ?? new Error('did not run'));
    const why =
      redisMissing ??
      (redisError ? `ERROR: ${redisError}` : undefined) ??
      (config.rebalanceBaseline ? undefined : 'baseline skipped (BENCH_REBALANCE_BASELINE=0)');
    await attempt(36, () =>
      ours.length > 0 ? Promise.resolve(timeRow(ours, redis, why)) : failed(),
    );
    await attempt(37, () =>
      ours.length > 0 ? Promise.resolve(pauseRow(37, ours, redis)) : failed(),
    );
    await attempt(38, () =>
      ours.length > 0 ? Promise.resolve(pauseRow(38, ours, redis)) : failed(),
    );
    results.rebalance = {
      keys: config.rebalanceKeys,
      valueBytes: config.valueSize,
      nodes: config.rebalanceNodes,
      parallel: config.rebalanceParallel,
      writerRatePerSec: config.rebalanceWriterRate,
      maxPauseMs: config.rebalanceMaxPauseMs || 'node default',
      loadavg1mAtStart: ours.map((r) => r.loadavg1mAtStart),
      redisLoadavg1mAtStart: redisLoad,
      redis: redisMissing ?? ('version' in tools ? tools.version : undefined),
    };
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}
