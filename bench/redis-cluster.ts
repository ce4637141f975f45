/**
 * Baseline of the shard-split benchmark: the same keys and value bytes in a two-node Redis
 * Cluster on loopback, half of the slots moved from the loaded node to the empty one with
 * `redis-cli --cluster reshard`, optionally while a cluster-aware writer keeps writing keys
 * of the moving slots.
 *
 * The cluster is formed by hand (ADDSLOTSRANGE on node A, MEET node B) because
 * `redis-cli --cluster create` refuses fewer than three masters. Only the reshard is timed:
 * from spawning redis-cli until it exits, after the data is loaded and the cluster settled.
 *
 * Standalone: `node dist/bench/redis-cluster.js --keys 100000 [--value-bytes 1000]
 * [--slots 0-8191] [--no-writer] [--writer-rate N] [--data random|populate] [--pipeline N]
 * [--runs N]`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyName } from '../src/client/synthetic';
import { slotOf } from '../src/core/slots';
import {
  cleanupAll,
  installCleanupHandlers,
  isStopping,
  removeDir,
  stopProcess,
  trackDir,
  trackProcess,
} from './cleanup';
import { Tail, readRss } from './node-process';
import {
  type RedisServer,
  type RedisTools,
  findRedis,
  freeLoopbackPort,
  loadRedis,
} from './redis-baseline';
import { ClusterWriter, type WriterKey, type WriterStats, slotPorts } from './redis-cluster-writer';
import { resultsFileName } from './report';
import { RespConnection } from './resp';
import {
  MiB,
  REPO_ROOT,
  formatBytes,
  formatCount,
  formatMs,
  log,
  round,
  sleep,
  withTimeout,
} from './util';

export interface SlotRange {
  start: number;
  end: number;
}

/** Slots 0-8191: what the split moves, and what the reshard of 8192 slots picks. */
export const HALF_OF_SLOTS: SlotRange = { start: 0, end: 8191 };

/** redis-cli's own MIGRATE batch (CLUSTER_MANAGER_MIGRATE_PIPELINE) without --cluster-pipeline. */
const REDIS_CLI_DEFAULT_PIPELINE = 10;

/** Steady, not flat out: on a two-core machine a busy writer would slow the migration itself. */
export const DEFAULT_WRITER_RATE = 1000;

export type ReshardData = 'random' | 'populate';

export interface RedisReshardOptions {
  keys: number;
  valueBytes: number;
  /** Must be the lowest slots (start 0): the reshard moves the source's lowest slots. */
  slots: SlotRange;
  /** Keep writing keys of the moving slots during the reshard. */
  writer?: boolean;
  /** Parent of the two nodes' temp dirs (created and removed here). */
  dir: string;
  /**
   * `random` (default): the benchmark's synthetic dataset (`keyName(i)`, seed 1, random
   * bytes) loaded through `redis-cli --pipe`, the same bytes the shardsnap side holds.
   * `populate`: `DEBUG POPULATE` (`key:0`..), much faster to load, but its values are
   * zero-padded and DUMP/MIGRATE payloads are LZF-compressed, so far fewer bytes move.
   */
  data?: ReshardData;
  /** `--cluster-pipeline`; redis-cli's default (10 keys per MIGRATE) when absent. */
  pipeline?: number;
  seed?: number;
  /** Upper bound of each step (load, reshard, waits); scaled with the data by default. */
  timeoutMs?: number;
  /** Distinct keys of the moving slots the writer picks from. */
  writerKeys?: number;
  /** Writes before the reshard starts: the idle latency the reshard is compared with. */
  writerWarmupMs?: number;
  /** Writes a second, one in flight (default 1000); 0 writes back to back. */
  writerRatePerSec?: number;
}

export interface ReshardWriterStats {
  /** The pace asked for (0: back to back). */
  ratePerSec: number;
  /** Writes started while redis-cli ran. */
  during: WriterStats;
  /** Writes started in the warm-up before it. */
  idle: WriterStats;
  movedRedirects: number;
  askRedirects: number;
  retries: number;
  keysInPool: number;
  /** Distinct keys written, each read back after the reshard. */
  keysVerified: number;
  /** Keys whose value after the reshard is not the last acknowledged write (first 20). */
  lost: string[];
  lostCount: number;
}

export interface RedisReshardResult {
  /** Wall time of `redis-cli --cluster reshard`, spawn to exit. */
  seconds: number;
  keysMoved: number;
  /** Key and value bytes of the moved keys (the dataset's, not the wire's). */
  bytesMoved: number;
  keysPerSec: number;
  mibPerSec: number;
  slotsRequested: SlotRange;
  /** Slot ranges node B owns afterwards, from CLUSTER SLOTS. */
  slotsMoved: SlotRange[];
  /** What redis-cli printed as it went ("Moving slot N from ... to ..."), a cross-check. */
  slotsReportedByRedisCli: { count: number; first: number; last: number };
  /** The dataset's keys in the requested slots, counted from the key names. */
  expectedKeys: number;
  data: ReshardData;
  pipeline: number;
  pipelineIsDefault: boolean;
  /** MIGRATE calls on the source (INFO commandstats), and keys per call. */
  migrateCalls: number;
  keysPerMigrate: number;
  loadMs: number;
  rssBytes: { sourceBefore: number; sourceAfter: number; targetAfter: number };
  redisVersion: string;
  command: string;
  writerStats?: ReshardWriterStats;
}

/** redis-server and redis-cli 7.0 or newer (ADDSLOTSRANGE, --cluster-port), or why not. */
export function redisClusterTools(): RedisTools | { missing: string } {
  const tools = findRedis();
  if ('missing' in tools) return tools;
  const match = /v=(\d+)\.(\d+)/.exec(tools.version);
  const major = Number(match?.[1] ?? 0);
  if (major < 7)
    return { missing: `Redis Cluster baseline needs Redis ≥ 7.0, found ${tools.version}` };
  const cli = spawnSync('redis-cli', ['--cluster', 'help'], { encoding: 'utf8' });
  if (!`${cli.stdout}${cli.stderr}`.includes('reshard'))
    return { missing: 'redis-cli has no --cluster reshard' };
  return tools;
}

/**
 * True when the baseline can run. `make bench` installs redis-server/redis-tools first when
 * run as root (scripts/setup-system.sh); otherwise they must already be on PATH.
 */
export function redisClusterAvailable(): Promise<boolean> {
  return Promise.resolve(!('missing' in redisClusterTools()));
}

/** Generous: 1 MiB/s of data would be pathological; at least two minutes. */
export function defaultReshardTimeoutMs(keys: number, valueBytes: number): number {
  return Math.max(120_000, ((keys * (valueBytes + 16)) / MiB) * 1000);
}

// --------------------------------------------------------------------------- nodes

export interface ClusterNode {
  name: string;
  pid: number;
  port: number;
  busPort: number;
  dir: string;
  output: Tail;
  conn: RespConnection;
  id: string;
  exited: () => boolean;
}

async function spawnClusterNode(name: string, dir: string): Promise<ClusterNode> {
  const port = await freeLoopbackPort();
  let busPort = await freeLoopbackPort();
  while (busPort === port) busPort = await freeLoopbackPort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--cluster-enabled',
    'yes',
    '--cluster-config-file',
    'nodes.conf',
    '--cluster-port',
    String(busPort),
    // Redirections and CLUSTER NODES then carry 127.0.0.1, not an empty address.
    '--cluster-announce-ip',
    '127.0.0.1',
    '--appendonly',
    'no',
    '--save',
    '',
    '--enable-debug-command',
    'local',
    '--dir',
    dir,
    '--logfile',
    '',
    '--daemonize',
    'no',
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess(`redis-server ${name}`, child);
  const output = new Tail();
  child.stdout?.on('data', (p: Buffer) => output.push(p));
  child.stderr?.on('data', (p: Buffer) => output.push(p));
  const exited = (): boolean => child.exitCode !== null || child.signalCode !== null;
  try {
    for (let attempt = 0; ; attempt++) {
      if (exited())
        throw new Error(`redis-server ${name} exited with ${child.exitCode}: ${output.toString()}`);
      let conn: RespConnection | undefined;
      try {
        conn = await RespConnection.connect(port, 1_000);
        if ((await conn.call(['PING'], 2_000)) === 'PONG') {
          const id = await conn.text(['CLUSTER', 'MYID']);
          return { name, pid, port, busPort, dir, output, conn, id, exited };
        }
      } catch {
        // Not listening yet.
      }
      conn?.close();
      if (attempt >= 200)
        throw new Error(
          `redis-server ${name} on port ${port} did not answer PING\n${output.toString()}`,
        );
      await sleep(50);
    }
  } catch (error) {
    await stopProcess(pid, 2_000);
    throw error;
  }
}

/** Starts a cluster-mode redis-server in its own dir; a port taken meanwhile gets a retry. */
export async function startClusterNode(name: string, dir: string): Promise<ClusterNode> {
  await mkdir(dir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    try {
      return await spawnClusterNode(name, dir);
    } catch (error) {
      if (attempt >= 3 || isStopping()) throw error;
      log(
        `  redis-server ${name} failed to start (${(error as Error).message.split('\n')[0] ?? ''}); retrying`,
      );
    }
  }
}

export async function stopClusterNode(node: ClusterNode): Promise<void> {
  node.conn.close();
  await stopProcess(node.pid, 5_000);
}

// ------------------------------------------------------------------------ cluster state

interface NodeLine {
  id: string;
  flags: string[];
  link: string;
  slots: string[];
}

function parseClusterNodes(text: string): NodeLine[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map((line) => {
      const f = line.split(' ');
      return {
        id: f[0] ?? '',
        flags: (f[2] ?? '').split(','),
        link: f[7] ?? '',
        slots: f.slice(8),
      };
    });
}

/** `true` once the condition holds, otherwise what is still missing (for the timeout error). */
export async function waitFor(
  what: string,
  timeoutMs: number,
  check: () => Promise<true | string>,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = '';
  for (;;) {
    const state = await check();
    if (state === true) return;
    last = state;
    if (performance.now() > deadline)
      throw new Error(`${what}: not reached within ${formatMs(timeoutMs)}; last state: ${last}`);
    await sleep(50);
  }
}

/**
 * Both nodes are in each other's view, connected, `cluster_state:ok`, no slot open, and
 * they agree on who owns which slots — what `redis-cli --cluster check` wants to see.
 */
export async function clusterSettled(nodes: readonly ClusterNode[]): Promise<true | string> {
  const views: string[] = [];
  for (const node of nodes) {
    if (node.exited())
      throw new Error(`redis-server ${node.name} exited: ${node.output.toString()}`);
    const info = await node.conn.text(['CLUSTER', 'INFO']);
    if (!/cluster_state:ok/.test(info)) return `${node.name}: cluster_state not ok`;
    if (!new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(info))
      return `${node.name}: ${/cluster_known_nodes:\d+/.exec(info)?.[0] ?? 'no known nodes'}`;
    const lines = parseClusterNodes(await node.conn.text(['CLUSTER', 'NODES']));
    for (const line of lines) {
      const bad = line.flags.filter((f) => ['handshake', 'noaddr', 'fail', 'fail?'].includes(f));
      if (bad.length > 0) return `${node.name} sees ${line.id} as ${bad.join(',')}`;
      if (line.link !== 'connected') return `${node.name} sees ${line.id} ${line.link}`;
      if (line.slots.some((s) => s.startsWith('[')))
        return `${node.name} sees an open slot on ${line.id}`;
    }
    views.push(
      lines
        .map((l) => `${l.id}:${l.slots.join(',')}`)
        .sort()
        .join(' '),
    );
  }
  return views.every((v) => v === views[0]) ? true : `slot views differ: ${views.join(' | ')}`;
}

/** CLUSTER SLOTS of one node as owner id → ranges, sorted. */
export async function slotOwners(node: ClusterNode): Promise<Map<string, SlotRange[]>> {
  const reply = await node.conn.ok(['CLUSTER', 'SLOTS']);
  const owners = new Map<string, SlotRange[]>();
  if (!Array.isArray(reply)) throw new Error('CLUSTER SLOTS: unexpected reply');
  for (const entry of reply) {
    if (!Array.isArray(entry)) continue;
    const [start, end, master] = entry;
    if (typeof start !== 'number' || typeof end !== 'number' || !Array.isArray(master)) continue;
    const id = Buffer.isBuffer(master[2]) ? master[2].toString() : String(master[2]);
    const list = owners.get(id) ?? [];
    list.push({ start, end });
    owners.set(id, list);
  }
  for (const list of owners.values()) list.sort((x, y) => x.start - y.start);
  return owners;
}

/** Sum of COUNTKEYSINSLOT over a slot range, pipelined. */
export async function keysInSlots(
  node: ClusterNode,
  range: SlotRange,
  timeoutMs: number,
): Promise<number> {
  let total = 0;
  for (let from = range.start; from <= range.end; from += 1024) {
    const to = Math.min(range.end, from + 1023);
    const commands = [];
    for (let slot = from; slot <= to; slot++) commands.push(['CLUSTER', 'COUNTKEYSINSLOT', slot]);
    for (const reply of await node.conn.pipeline(commands, timeoutMs)) {
      if (typeof reply !== 'number') throw new Error(`COUNTKEYSINSLOT answered ${String(reply)}`);
      total += reply;
    }
  }
  return total;
}

export async function commandCalls(node: ClusterNode, command: string): Promise<number> {
  const info = await node.conn.text(['INFO', 'commandstats']);
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
}

// ------------------------------------------------------------------------------ data

function datasetKey(data: ReshardData, i: number): Buffer {
  return data === 'random' ? keyName(i) : Buffer.from(`key:${i}`);
}

/** Indices and key bytes of the dataset's keys whose slot lies in `range`. */
function keysOfRange(
  data: ReshardData,
  keys: number,
  range: SlotRange,
): { indices: number[]; keyBytes: number } {
  const indices: number[] = [];
  let keyBytes = 0;
  for (let i = 0; i < keys; i++) {
    const key = datasetKey(data, i);
    const slot = slotOf(key);
    if (slot >= range.start && slot <= range.end) {
      indices.push(i);
      keyBytes += key.length;
    }
  }
  return { indices, keyBytes };
}

export async function loadSource(
  node: ClusterNode,
  options: Required<Pick<RedisReshardOptions, 'keys' | 'valueBytes' | 'seed' | 'data'>>,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  if (options.data === 'populate') {
    await node.conn.ok(['DEBUG', 'POPULATE', options.keys, 'key', options.valueBytes], timeoutMs);
  } else {
    // loadRedis only talks to the port; node A owns every slot, so plain SETs land.
    const server: RedisServer = {
      pid: node.pid,
      port: node.port,
      stderr: node.output,
      stop: () => stopClusterNode(node),
      command: async (args) => String(await node.conn.call(args)),
    };
    const loaded = await loadRedis(
      server,
      { keys: options.keys, valueSize: options.valueBytes, seed: options.seed },
      timeoutMs,
    );
    if (loaded.replies !== options.keys)
      throw new Error(`redis-cli --pipe got ${loaded.replies} replies for ${options.keys} keys`);
  }
  const dbsize = await node.conn.integer(['DBSIZE']);
  if (dbsize !== options.keys)
    throw new Error(`node A holds ${dbsize} keys after loading ${options.keys}`);
  return performance.now() - started;
}

// --------------------------------------------------------------------------- reshard

interface ReshardRun {
  ms: number;
  /** Slots redis-cli reported moving ("Moving slot N from ... to ..."). */
  slotsReported: number;
  firstSlot: number;
  lastSlot: number;
  command: string;
}

async function runReshard(
  a: ClusterNode,
  b: ClusterNode,
  count: number,
  pipeline: number | undefined,
  timeoutMs: number,
): Promise<ReshardRun> {
  const args = [
    '--cluster',
    'reshard',
    `127.0.0.1:${a.port}`,
    '--cluster-from',
    a.id,
    '--cluster-to',
    b.id,
    '--cluster-slots',
    String(count),
    '--cluster-yes',
    ...(pipeline === undefined ? [] : ['--cluster-pipeline', String(pipeline)]),
  ];
  const command = `redis-cli ${args.join(' ')}`;
  const output = new Tail(32_768);
  let slotsReported = 0;
  let firstSlot = -1;
  let lastSlot = -1;
  let errors = '';
  let partial = '';
  const started = performance.now();
  const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess('redis-cli --cluster reshard', child);
  const closed = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  child.stdout?.on('data', (piece: Buffer) => {
    output.push(piece);
    const lines = (partial + piece.toString('latin1')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // The plan lists "Moving slot N from <id>"; the execution names addresses.
      const match = /^Moving slot (\d+) from 127\.0\.0\.1:\d+ to /.exec(line);
      if (match) {
        const slot = Number(match[1]);
        if (slotsReported === 0) firstSlot = slot;
        lastSlot = slot;
        slotsReported++;
      } else if (line.includes('[ERR]') || line.startsWith('***')) {
        errors += `${line}\n`;
      }
    }
  });
  child.stderr?.on('data', (piece: Buffer) => {
    output.push(piece);
    errors += piece.toString();
  });
  try {
    const code = await withTimeout(closed, timeoutMs, 'redis-cli --cluster reshard');
    const ms = performance.now() - started;
    if (code !== 0 || errors.trim() !== '')
      throw new Error(
        `${command} exited with ${code}: ${errors.trim() || output.toString().slice(-2000)}`,
      );
    return { ms, slotsReported, firstSlot, lastSlot, command };
  } finally {
    await stopProcess(pid, 2_000);
  }
}

/**
 * Loads `keys` keys into node A of a fresh two-node cluster and times
 * `redis-cli --cluster reshard` of `slots` from A to B; checks afterwards which slots moved
 * and where every key is, and (writer) that every acknowledged write is readable.
 */
export async function measureRedisReshard(
  options: RedisReshardOptions,
): Promise<RedisReshardResult> {
  const data = options.data ?? 'random';
  const seed = options.seed ?? 1;
  const { keys, valueBytes, slots } = options;
  const timeoutMs = options.timeoutMs ?? defaultReshardTimeoutMs(keys, valueBytes);
  const writerRate = options.writerRatePerSec ?? DEFAULT_WRITER_RATE;
  const count = slots.end - slots.start + 1;
  // With all slots on A, the reshard table takes A's lowest `count` slots, nothing else.
  if (slots.start !== 0 || slots.end < slots.start || slots.end > 16383)
    throw new Error(
      `redis-cli --cluster reshard moves the source's lowest slots: ask for 0-N, not ${slots.start}-${slots.end}`,
    );
  const tools = redisClusterTools();
  if ('missing' in tools) throw new Error(tools.missing);

  const { indices, keyBytes } = keysOfRange(data, keys, slots);
  const expectedKeys = indices.length;
  const dirA = join(options.dir, 'redis-cluster-a');
  const dirB = join(options.dir, 'redis-cluster-b');
  const nodes: ClusterNode[] = [];
  let writer: ClusterWriter | undefined;
  try {
    const a = await startClusterNode('A', dirA);
    nodes.push(a);
    const b = await startClusterNode('B', dirB);
    nodes.push(b);
    await a.conn.ok(['CLUSTER', 'ADDSLOTSRANGE', 0, 16383]);
    await a.conn.ok(['CLUSTER', 'MEET', '127.0.0.1', b.port, b.busPort]);
    await waitFor('two-node cluster', 60_000, () => clusterSettled(nodes));
    log(
      `  redis cluster: A ${a.id.slice(0, 8)} on ${a.port} (pid ${a.pid}), B ${b.id.slice(0, 8)} on ${b.port} (pid ${b.pid})`,
    );

    const loadMs = await loadSource(a, { keys, valueBytes, seed, data }, timeoutMs);
    log(
      `  loaded ${formatCount(keys)} keys × ${valueBytes} B (${data}) into A in ${formatMs(loadMs)}`,
    );
    const before = await keysInSlots(a, slots, 60_000);
    if (before !== expectedKeys)
      throw new Error(
        `A holds ${before} keys in slots ${slots.start}-${slots.end}, expected ${expectedKeys}`,
      );
    await a.conn.ok(['CONFIG', 'RESETSTAT']);
    const rssSourceBefore = readRss(a.pid);

    let warmStart = 0;
    if (options.writer) {
      const poolSize = Math.min(options.writerKeys ?? 10_000, indices.length);
      const pool: WriterKey[] = [];
      for (let k = 0; k < poolSize; k++) {
        // Spread over the range: the reshard walks the slots in order.
        const index = indices[Math.floor((k * indices.length) / poolSize)] as number;
        const key = datasetKey(data, index);
        pool.push({ key, slot: slotOf(key) });
      }
      writer = new ClusterWriter(
        pool,
        valueBytes,
        slotPorts(await a.conn.ok(['CLUSTER', 'SLOTS'])),
      );
      warmStart = performance.now();
      writer.start((options.writerWarmupMs ?? 1_000) + timeoutMs, writerRate);
      await sleep(options.writerWarmupMs ?? 1_000);
    }

    const reshardStart = performance.now();
    const run = await runReshard(a, b, count, options.pipeline, timeoutMs);
    const reshardEnd = performance.now();
    if (writer) await writer.stop();
    log(
      `  reshard of ${count} slots: ${formatMs(run.ms)} (redis-cli reported ${run.slotsReported} slots, ${run.firstSlot}-${run.lastSlot})`,
    );

    await waitFor('cluster after the reshard', 60_000, () => clusterSettled(nodes));
    const ownersA = await slotOwners(a);
    const ownersB = await slotOwners(b);
    if (JSON.stringify([...ownersA].sort()) !== JSON.stringify([...ownersB].sort()))
      throw new Error('A and B disagree about slot ownership after the reshard');
    const slotsMoved = ownersB.get(b.id) ?? [];
    const movedCount = slotsMoved.reduce((n, r) => n + r.end - r.start + 1, 0);
    const exact =
      slotsMoved.length === 1 &&
      slotsMoved[0]?.start === slots.start &&
      slotsMoved[0]?.end === slots.end;
    if (!exact)
      log(
        `  WARNING: B owns ${slotsMoved.map((r) => `${r.start}-${r.end}`).join(',')} (${movedCount} slots), asked for ${slots.start}-${slots.end}`,
      );

    const dbsizeA = await a.conn.integer(['DBSIZE']);
    const dbsizeB = await b.conn.integer(['DBSIZE']);
    const leftOnA = await keysInSlots(a, slots, 60_000);
    const onB = await keysInSlots(b, slots, 60_000);
    if (leftOnA !== 0 || onB !== dbsizeB || dbsizeA + dbsizeB !== keys)
      throw new Error(
        `after the reshard: A ${dbsizeA} keys (${leftOnA} in the moved slots), B ${dbsizeB} (${onB} in them); loaded ${keys}`,
      );
    const keysMoved = dbsizeB;
    if (exact && keysMoved !== expectedKeys)
      throw new Error(
        `B holds ${keysMoved} keys, the dataset has ${expectedKeys} in slots ${slots.start}-${slots.end}`,
      );
    const migrateCalls = await commandCalls(a, 'migrate');

    let writerStats: ReshardWriterStats | undefined;
    if (writer) {
      const { checked, lost } = await writer.verify(
        slotPorts(await a.conn.ok(['CLUSTER', 'SLOTS'])),
      );
      writerStats = {
        ratePerSec: writerRate,
        during: writer.stats(reshardStart, reshardEnd),
        idle: writer.stats(warmStart, reshardStart),
        movedRedirects: writer.moved,
        askRedirects: writer.asks,
        retries: writer.retries,
        keysInPool: Math.min(options.writerKeys ?? 10_000, indices.length),
        keysVerified: checked,
        lost: lost.slice(0, 20),
        lostCount: lost.length,
      };
    }

    const seconds = run.ms / 1000;
    const bytesMoved = keysMoved === expectedKeys ? keyBytes + keysMoved * valueBytes : NaN;
    return {
      seconds,
      keysMoved,
      bytesMoved,
      keysPerSec: keysMoved / seconds,
      mibPerSec: bytesMoved / MiB / seconds,
      slotsRequested: slots,
      slotsMoved,
      slotsReportedByRedisCli: {
        count: run.slotsReported,
        first: run.firstSlot,
        last: run.lastSlot,
      },
      expectedKeys,
      data,
      pipeline: options.pipeline ?? REDIS_CLI_DEFAULT_PIPELINE,
      pipelineIsDefault: options.pipeline === undefined,
      migrateCalls,
      keysPerMigrate: migrateCalls > 0 ? keysMoved / migrateCalls : NaN,
      loadMs,
      rssBytes: {
        sourceBefore: rssSourceBefore,
        sourceAfter: readRss(a.pid),
        targetAfter: readRss(b.pid),
      },
      redisVersion: tools.version,
      command: run.command
        .replace(a.id, '<idA>')
        .replace(b.id, '<idB>')
        .replace(`127.0.0.1:${a.port}`, '127.0.0.1:<A>'),
      writerStats,
    };
  } finally {
    if (writer) await writer.stop().catch(() => undefined);
    for (const node of nodes.reverse()) await stopClusterNode(node);
    await removeDir(dirA);
    await removeDir(dirB);
  }
}

// ------------------------------------------------------------------------ standalone

function summary(r: RedisReshardResult): string {
  const lines = [
    `reshard ${r.slotsMoved.map((s) => `${s.start}-${s.end}`).join(',')} (asked ${r.slotsRequested.start}-${r.slotsRequested.end}): ` +
      `${r.seconds.toFixed(2)} s, ${formatCount(r.keysMoved)} keys (${formatBytes(r.bytesMoved)}), ` +
      `${formatCount(r.keysPerSec)} keys/s, ${r.mibPerSec.toFixed(1)} MiB/s`,
    `  pipeline ${r.pipeline}${r.pipelineIsDefault ? ' (redis-cli default)' : ''}, ${formatCount(r.migrateCalls)} MIGRATE calls ` +
      `(${r.keysPerMigrate.toFixed(1)} keys each); load ${formatMs(r.loadMs)} (${r.data}); ` +
      `RSS A ${formatBytes(r.rssBytes.sourceBefore)} → ${formatBytes(r.rssBytes.sourceAfter)}, B ${formatBytes(r.rssBytes.targetAfter)}`,
  ];
  const w = r.writerStats;
  if (w) {
    lines.push(
      `  writer (${w.ratePerSec > 0 ? `${w.ratePerSec}/s` : 'back to back'}, one in flight) during: ${formatCount(w.during.writes)} acked (${formatCount(w.during.writesPerSec)}/s), ` +
        `p50 ${formatMs(w.during.p50Ms)}, p99 ${formatMs(w.during.p99Ms)}, max ${formatMs(w.during.maxMs)}, max gap ${formatMs(w.during.maxGapMs)}; ` +
        `idle p50 ${formatMs(w.idle.p50Ms)}, p99 ${formatMs(w.idle.p99Ms)}, max ${formatMs(w.idle.maxMs)}`,
      `  redirects: ${formatCount(w.movedRedirects)} MOVED, ${formatCount(w.askRedirects)} ASK, ${w.retries} retries; ` +
        `${formatCount(w.keysVerified)} written keys read back, ${w.lostCount} lost`,
    );
  }
  return lines.join('\n');
}

function parseArgs(argv: readonly string[]): {
  keys: number;
  valueBytes: number;
  slots: SlotRange;
  writer: boolean;
  data: ReshardData;
  pipeline: number | undefined;
  runs: number;
  writerRatePerSec: number;
} {
  const out = {
    keys: 100_000,
    valueBytes: 1000,
    slots: HALF_OF_SLOTS,
    writer: true,
    data: 'random' as ReshardData,
    pipeline: undefined as number | undefined,
    runs: 1,
    writerRatePerSec: DEFAULT_WRITER_RATE,
  };
  const int = (flag: string, text: string | undefined, min = 1): number => {
    const n = Number((text ?? '').replace(/[_,]/g, ''));
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} needs an integer ≥ ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string | undefined => argv[++i];
    switch (flag) {
      case '--keys':
        out.keys = int(flag, value());
        break;
      case '--value-bytes':
        out.valueBytes = int(flag, value());
        break;
      case '--slots': {
        const match = /^(\d+)-(\d+)$/.exec(value() ?? '');
        if (!match) throw new Error('--slots needs START-END');
        out.slots = { start: Number(match[1]), end: Number(match[2]) };
        break;
      }
      case '--no-writer':
        out.writer = false;
        break;
      case '--data': {
        const d = value();
        if (d !== 'random' && d !== 'populate') throw new Error('--data is random or populate');
        out.data = d;
        break;
      }
      case '--pipeline':
        out.pipeline = int(flag, value());
        break;
      case '--writer-rate':
        out.writerRatePerSec = int(flag, value(), 0);
        break;
      case '--runs':
        out.runs = int(flag, value());
        break;
      default:
        throw new Error(`unknown argument ${String(flag)}`);
    }
  }
  return out;
}

export function jsonSafe(value: unknown): unknown {
  if (typeof value === 'number') return Number.isFinite(value) ? round(value) : null;
  if (Array.isArray(value)) return value.map(jsonSafe);
  if (value && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, jsonSafe(v)]));
  return value;
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const args = parseArgs(process.argv.slice(2));
  const tools = redisClusterTools();
  if ('missing' in tools) {
    process.stderr.write(
      `${tools.missing}; install redis-server and redis-tools (as root: bash scripts/setup-system.sh redis-server redis-tools)\n`,
    );
    return 2;
  }
  const date = new Date();
  const tmp = trackDir(await mkdtemp(join(tmpdir(), 'shardsnap-redis-cluster-')));
  const results: RedisReshardResult[] = [];
  try {
    for (let run = 0; run < args.runs && !isStopping(); run++) {
      log(
        `run ${run + 1}/${args.runs}: ${formatCount(args.keys)} keys × ${args.valueBytes} B, slots ${args.slots.start}-${args.slots.end}, writer ${args.writer ? 'on' : 'off'}, ${tools.version.split(' ').slice(0, 3).join(' ')}`,
      );
      const result = await measureRedisReshard({ ...args, dir: join(tmp, `run-${run}`) });
      results.push(result);
      process.stdout.write(`${summary(result)}\n`);
    }
  } finally {
    await cleanupAll();
  }
  if (isStopping()) return 130;
  const dir = join(REPO_ROOT, 'bench', 'out');
  await mkdir(dir, { recursive: true });
  const path = join(dir, resultsFileName(date).replace(/^results-/, 'redis-reshard-'));
  await writeFile(
    path,
    `${JSON.stringify(jsonSafe({ date: date.toISOString(), args, results }), null, 2)}\n`,
  );
  process.stdout.write(`results: ${path.replace(`${REPO_ROOT}/`, '')}\n`);
  const lost = results.reduce((n, r) => n + (r.writerStats?.lostCount ?? 0), 0);
  return lost > 0 ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    async (error: unknown) => {
      process.stderr.write(
        `redis-cluster: ${error instanceof Error ? error.stack : String(error)}\n`,
      );
      await cleanupAll();
      process.exit(1);
    },
  );
}
