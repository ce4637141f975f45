/**
 * Baseline of the cluster rebalance benchmark: a Redis Cluster of `masters` loopback
 * nodes, every slot and every key on the first one, the others joined empty, then
 * `redis-cli --cluster rebalance --cluster-use-empty-masters` spreads the slots evenly
 * while a cluster-aware writer keeps writing. The same keys (`keyName(i)`, seed 1) and
 * value bytes as the shardsnap side holds.
 *
 * Only the rebalance is timed: from spawning redis-cli until it exits, after the data is
 * loaded and every node agrees on the cluster. Afterwards: every master owns about
 * 16384 / masters slots, the key counts add up, and every acknowledged write reads back.
 *
 * Standalone: `node dist/bench/redis-rebalance.js --keys N [--value-bytes B]
 * [--writer-rate R] [--masters M] [--pipeline P]` prints the result as JSON on stdout.
 */
import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
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
import { Tail } from './node-process';
import { pacedWrites } from './paced-writes';
import {
  type ClusterNode,
  type SlotRange,
  DEFAULT_WRITER_RATE,
  clusterSettled,
  commandCalls,
  defaultReshardTimeoutMs,
  jsonSafe,
  loadSource,
  redisClusterTools,
  slotOwners,
  startClusterNode,
  stopClusterNode,
  waitFor,
} from './redis-cluster';
import { ClusterWriter, type WriterKey, slotPorts, writerValue } from './redis-cluster-writer';
import { formatBytes, formatCount, formatMs, log as benchLog, sleep, withTimeout } from './util';

export interface RedisRebalanceResult {
  keys: number;
  valueBytes: number;
  masters: number;
  /** Wall time of `redis-cli --cluster rebalance`, spawn to exit. */
  rebalanceMs: number;
  /** Key and value bytes of the keys that left the first master (the dataset's, not the wire's). */
  bytesMoved: number;
  bytesPerSecond: number;
  writer: {
    /** The pace asked for, writes a second (0: back to back). */
    rate: number;
    /** Writes started during the rebalance and acknowledged. */
    acknowledged: number;
    /** Longest time from a write's send to its acknowledgement during the rebalance. */
    maxPauseMs: number;
    p99Ms: number;
    /** Writes that failed (a timeout, too many redirections, an error reply). */
    errors: number;
    /** Longest time between two consecutive acknowledgements during the rebalance. */
    maxGapMs: number;
    /** p99 of the writes in the second before the rebalance: the idle latency. */
    idleP99Ms: number;
    movedRedirects: number;
    askRedirects: number;
    /** Acknowledged keys whose value read back afterwards is not the last one written. */
    lost: number;
  };
  /** Time to load the keys into the first master (`redis-cli --pipe`). */
  loadMs: number;
  keysMoved: number;
  /** Slots and keys each master holds afterwards, the first master first. */
  slotsPerMaster: number[];
  keysPerMaster: number[];
  /** MIGRATE calls the first master served. */
  migrateCalls: number;
  pipeline: number;
  redisVersion: string;
}

export interface RedisRebalanceOptions {
  keys: number;
  valueBytes: number;
  masters: number;
  /** Writes a second, one in flight; 0 writes back to back. */
  writerRate: number;
  /** `--cluster-pipeline`: keys per MIGRATE (redis-cli's default is 10). */
  pipeline?: number;
  /** Seed of the value bytes (keys are `keyName(i)` whatever the seed); 1 by default. */
  seed?: number;
  /** Upper bound of the load and of the rebalance; scaled with the data by default. */
  timeoutMs?: number;
  log?: (s: string) => void;
}

const DEFAULT_PIPELINE = 10;
const WARMUP_MS = 1_000;
/** Distinct keys the writer picks from, spread over the whole dataset. */
const WRITER_KEYS = 10_000;
/** redis-cli's default threshold: it leaves a master alone within 2% of its share. */
const BALANCE_TOLERANCE = 0.02;

interface RebalanceRun {
  ms: number;
  /** "Moving N slots from A to B" lines of redis-cli's plan. */
  plannedMoves: number;
  plannedSlots: number;
  command: string;
}

async function runRebalance(
  first: ClusterNode,
  pipeline: number,
  timeoutMs: number,
): Promise<RebalanceRun> {
  const args = [
    '--cluster',
    'rebalance',
    `127.0.0.1:${first.port}`,
    '--cluster-use-empty-masters',
    '--cluster-pipeline',
    String(pipeline),
  ];
  const command = `redis-cli ${args.join(' ')}`;
  const output = new Tail(32_768);
  let plannedMoves = 0;
  let plannedSlots = 0;
  let errors = '';
  let partial = '';
  const started = performance.now();
  const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess('redis-cli --cluster rebalance', child);
  const closed = new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  child.stdout?.on('data', (piece: Buffer) => {
    output.push(piece);
    const lines = (partial + piece.toString('latin1')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      // One line per source → target pair, then a '#' per slot moved. Not anchored:
      // redis-cli colours its log lines even into a pipe, and one line's reset code
      // starts the next.
      const match = /Moving (\d+) slots from \S+ to \S+/.exec(line);
      if (match) {
        plannedMoves++;
        plannedSlots += Number(match[1]);
      } else if (line.includes('[ERR]') || line.includes('*** ')) {
        errors += `${line}\n`;
      }
    }
  });
  child.stderr?.on('data', (piece: Buffer) => {
    output.push(piece);
    errors += piece.toString();
  });
  try {
    const code = await withTimeout(closed, timeoutMs, command);
    const ms = performance.now() - started;
    if (code !== 0 || errors.trim() !== '')
      throw new Error(
        `${command} exited with ${code}: ${errors.trim() || output.toString().slice(-2000)}`,
      );
    return { ms, plannedMoves, plannedSlots, command };
  } finally {
    await stopProcess(pid, 2_000);
  }
}

function slotCount(ranges: readonly SlotRange[] | undefined): number {
  return (ranges ?? []).reduce((n, r) => n + r.end - r.start + 1, 0);
}

/** A fixed-pace single-key writer whose failures are counted, not fatal. */
class CountingWriter {
  readonly errors: string[] = [];
  private stopped = false;
  private seq = 0;
  private loop: Promise<void> | undefined;

  constructor(
    readonly cluster: ClusterWriter,
    private readonly pool: readonly WriterKey[],
    private readonly valueBytes: number,
  ) {}

  start(maxMs: number, ratePerSec: number): void {
    this.loop = pacedWrites({
      maxMs,
      ratePerSec,
      keyCount: this.pool.length,
      stopped: () => this.stopped,
      step: async (index) => {
        const seq = ++this.seq;
        const startedAt = performance.now();
        try {
          await this.cluster.set(this.pool[index] as WriterKey, writerValue(seq, this.valueBytes));
        } catch (error) {
          this.errors.push(error instanceof Error ? error.message : String(error));
          // A node that refuses everything should not turn the loop into a busy spin.
          await sleep(10);
          return;
        }
        this.cluster.samples.push({ startedAt, ms: performance.now() - startedAt });
        this.cluster.lastAcked.set(index, seq);
      },
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    try {
      await this.loop;
    } finally {
      await this.cluster.close();
    }
  }
}

/**
 * Loads `keys` keys into the first of `masters` fresh cluster nodes and times
 * `redis-cli --cluster rebalance --cluster-use-empty-masters` under a steady writer.
 */
export async function redisRebalance(
  options: RedisRebalanceOptions,
): Promise<RedisRebalanceResult> {
  const { keys, valueBytes, masters, writerRate } = options;
  const pipeline = options.pipeline ?? DEFAULT_PIPELINE;
  const log = options.log ?? benchLog;
  if (!Number.isSafeInteger(masters) || masters < 2)
    throw new Error(`a rebalance needs at least 2 masters, not ${masters}`);
  const tools = redisClusterTools();
  if ('missing' in tools) throw new Error(tools.missing);
  const timeoutMs = options.timeoutMs ?? defaultReshardTimeoutMs(keys, valueBytes);

  const dir = trackDir(await mkdtemp(join(tmpdir(), 'shardsnap-redis-rebalance-')));
  const nodes: ClusterNode[] = [];
  let writer: CountingWriter | undefined;
  try {
    for (let n = 1; n <= masters; n++)
      nodes.push(await startClusterNode(`M${n}`, join(dir, `m${n}`)));
    const first = nodes[0] as ClusterNode;
    await first.conn.ok(['CLUSTER', 'ADDSLOTSRANGE', 0, 16383]);
    for (const node of nodes.slice(1))
      await first.conn.ok(['CLUSTER', 'MEET', '127.0.0.1', node.port, node.busPort]);
    await waitFor(`${masters}-node cluster`, 60_000, () => clusterSettled(nodes));
    log(
      `  redis cluster: ${nodes.map((n) => `${n.name} ${n.id.slice(0, 8)} on ${n.port}`).join(', ')}`,
    );

    const loadMs = await loadSource(
      first,
      { keys, valueBytes, seed: options.seed ?? 1, data: 'random' },
      timeoutMs,
    );
    log(`  loaded ${formatCount(keys)} keys × ${valueBytes} B into M1 in ${formatMs(loadMs)}`);
    await first.conn.ok(['CONFIG', 'RESETSTAT']);

    const poolSize = Math.min(WRITER_KEYS, keys);
    const pool: WriterKey[] = [];
    for (let k = 0; k < poolSize; k++) {
      const key = keyName(Math.floor((k * keys) / poolSize));
      pool.push({ key, slot: slotOf(key) });
    }
    writer = new CountingWriter(
      new ClusterWriter(pool, valueBytes, slotPorts(await first.conn.ok(['CLUSTER', 'SLOTS']))),
      pool,
      valueBytes,
    );
    const warmStart = performance.now();
    writer.start(WARMUP_MS + timeoutMs, writerRate);
    await sleep(WARMUP_MS);

    const rebalanceStart = performance.now();
    const run = await runRebalance(first, pipeline, timeoutMs);
    const rebalanceEnd = performance.now();
    await writer.stop();
    log(
      `  rebalance: ${formatMs(run.ms)} (plan: ${run.plannedSlots} slots in ${run.plannedMoves} moves)`,
    );

    await waitFor('cluster after the rebalance', 60_000, () => clusterSettled(nodes));
    const owners = await slotOwners(first);
    const slotsPerMaster = nodes.map((n) => slotCount(owners.get(n.id)));
    const keysPerMaster: number[] = [];
    for (const node of nodes) keysPerMaster.push(await node.conn.integer(['DBSIZE']));
    const share = 16384 / masters;
    if (slotsPerMaster.reduce((a, b) => a + b, 0) !== 16384)
      throw new Error(`after the rebalance the masters own ${slotsPerMaster.join('+')} slots`);
    if (slotsPerMaster.some((n) => Math.abs(n - share) > share * BALANCE_TOLERANCE))
      throw new Error(
        `after the rebalance the masters own ${slotsPerMaster.join(', ')} slots, not ~${Math.round(share)} each`,
      );
    if (keysPerMaster.reduce((a, b) => a + b, 0) !== keys)
      throw new Error(`after the rebalance the masters hold ${keysPerMaster.join('+')} keys`);

    // Which keys left M1, from the final slot map: the bytes the rebalance had to move.
    const firstSlots = new Uint8Array(16384);
    for (const r of owners.get(first.id) ?? []) firstSlots.fill(1, r.start, r.end + 1);
    let keysMoved = 0;
    let bytesMoved = 0;
    for (let i = 0; i < keys; i++) {
      const key = keyName(i);
      if (firstSlots[slotOf(key)] === 1) continue;
      keysMoved++;
      bytesMoved += key.length + valueBytes;
    }
    if (keysMoved !== keys - (keysPerMaster[0] ?? 0))
      throw new Error(
        `the slot map says ${keysMoved} keys left M1, but it holds ${keysPerMaster[0]} of ${keys}`,
      );
    const migrateCalls = await commandCalls(first, 'migrate');

    const cluster = writer.cluster;
    const { lost } = await cluster.verify(slotPorts(await first.conn.ok(['CLUSTER', 'SLOTS'])));
    const during = cluster.stats(rebalanceStart, rebalanceEnd);
    const idle = cluster.stats(warmStart, rebalanceStart);
    if (writer.errors.length > 0)
      log(`  the writer saw ${writer.errors.length} errors; first: ${writer.errors[0] ?? ''}`);
    if (lost.length > 0) log(`  WARNING: ${lost.length} acknowledged writes lost: ${lost[0]}`);

    const seconds = run.ms / 1000;
    log(
      `  moved ${formatCount(keysMoved)} keys (${formatBytes(bytesMoved)}) at ${formatBytes(bytesMoved / seconds)}/s; ` +
        `writer p99 ${formatMs(during.p99Ms)}, max ${formatMs(during.maxMs)}, ${writer.errors.length} errors`,
    );
    return {
      keys,
      valueBytes,
      masters,
      rebalanceMs: run.ms,
      bytesMoved,
      bytesPerSecond: bytesMoved / seconds,
      writer: {
        rate: writerRate,
        acknowledged: during.writes,
        maxPauseMs: during.maxMs,
        p99Ms: during.p99Ms,
        errors: writer.errors.length,
        maxGapMs: during.maxGapMs,
        idleP99Ms: idle.p99Ms,
        movedRedirects: cluster.moved,
        askRedirects: cluster.asks,
        lost: lost.length,
      },
      loadMs,
      keysMoved,
      slotsPerMaster,
      keysPerMaster,
      migrateCalls,
      pipeline,
      redisVersion: tools.version,
    };
  } finally {
    if (writer) await writer.stop().catch(() => undefined);
    for (const node of nodes.reverse()) await stopClusterNode(node);
    await removeDir(dir);
  }
}

// ------------------------------------------------------------------------ standalone

function parseArgs(argv: readonly string[]): RedisRebalanceOptions {
  const out: RedisRebalanceOptions = {
    keys: 100_000,
    valueBytes: 1000,
    masters: 4,
    writerRate: DEFAULT_WRITER_RATE,
  };
  const int = (flag: string, text: string | undefined, min: number): number => {
    const n = Number((text ?? '').replace(/[_,]/g, ''));
    if (!Number.isSafeInteger(n) || n < min) throw new Error(`${flag} needs an integer ≥ ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const value = argv[++i];
    switch (flag) {
      case '--keys':
        out.keys = int(flag, value, 1);
        break;
      case '--value-bytes':
        out.valueBytes = int(flag, value, 1);
        break;
      case '--writer-rate':
        out.writerRate = int(flag, value, 0);
        break;
      case '--masters':
        out.masters = int(flag, value, 2);
        break;
      case '--pipeline':
        out.pipeline = int(flag, value, 1);
        break;
      default:
        throw new Error(`unknown argument ${flag}`);
    }
  }
  return out;
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const options = parseArgs(process.argv.slice(2));
  const tools = redisClusterTools();
  if ('missing' in tools) {
    process.stderr.write(
      `${tools.missing}; install redis-server and redis-tools (as root: bash scripts/setup-system.sh redis-server redis-tools)\n`,
    );
    return 2;
  }
  let result: RedisRebalanceResult;
  try {
    result = await redisRebalance(options);
  } finally {
    await cleanupAll();
  }
  if (isStopping()) return 130;
  process.stdout.write(`${JSON.stringify(jsonSafe(result), null, 2)}\n`);
  return result.writer.lost > 0 ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    async (error: unknown) => {
      process.stderr.write(
        `redis-rebalance: ${error instanceof Error ? error.stack : String(error)}\n`,
      );
      await cleanupAll();
      process.exit(1);
    },
  );
}
