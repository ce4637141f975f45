/**
 * A cluster of real `shardsnap serve` processes around a real etcd, driven through the
 * built CLI (bin/shardsnap → dist/), and the check that it converged. Assertions read etcd
 * with etcdctl (see etcd.ts) and the nodes over gRPC, never through the cluster code
 * under test, so a bug there cannot vouch for itself.
 *
 *   const c = await startCluster(t, { nodes: 2, keys: 20_000 });
 *   const run = await c.cli(['rebalance', '--parallel', '1'], { json: true });
 *   await checkConverged(t, c);
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { ExecutionContext } from 'ava';
import { type ShardStats, ShardsnapClient, type Topology as NodeView } from '../../src/client';
import { syntheticBatches } from '../../src/client';
import { slotCounts } from '../../src/cluster';
import {
  MAX_SLOT,
  type Mutation,
  type SlotRange,
  formatSlotRanges,
  normalizeSlotRanges,
} from '../../src/core';
import type { MemoryStore } from '../../src/store';
import { BIN, type SpawnedServe, spawnServe } from './cli';
import { type TestEtcd, startEtcd } from './etcd';
import { tempDirFor, waitFor } from './harness';
import { modelDigest, modelOf } from './split';

export const SLOT_COUNT = MAX_SLOT + 1;

/** The topology document at `/shardsnap/NAME/topology`, as etcd holds it. */
export interface TopologyDoc {
  version: number;
  cluster: string;
  slots: Array<{ start: number; end: number; node: string }>;
  updatedAtMs: number;
}

/** A migration record at `/shardsnap/NAME/migrations/<id>` (the fields tests look at). */
export interface MigrationDoc {
  id: string;
  slots: SlotRange[];
  from: string;
  to: string;
  state: 'running' | 'done' | 'aborted';
  baseVersion: number;
  committedVersion?: number;
  purpose: string;
  controller: string;
  createdAtMs: number;
  error?: string;
}

/** How a CLI process ended, with everything it printed. */
export interface CliRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON object on stdout (runs with `json: true` that printed one). */
  json?: Record<string, unknown>;
  /** The run was killed by `timeoutMs`, not by itself. */
  timedOut: boolean;
}

export interface CliOptions {
  /** Extra environment, e.g. `SHARDSNAP_CONTROLLER_EXIT_AT` (the rest is inherited, minus that). */
  env?: Record<string, string>;
  /** Appends `--json` and parses stdout. */
  json?: boolean;
  /** SIGKILL after this long (default 45 s); `timedOut` says so. */
  timeoutMs?: number;
}

/** A CLI process still running: kill it, or wait for it. */
export interface RunningCli {
  child: ChildProcess;
  done: Promise<CliRun>;
  /** What it printed on stderr so far (the controller's step lines). */
  stderr(): string;
}

export interface ClusterNode {
  id: string;
  address: string;
  dataDir: string;
  process: SpawnedServe;
  client: ShardsnapClient;
}

export interface ClusterOptions {
  /** Nodes n1..nN to start (default 2); n1 gets every slot at init. */
  nodes?: number;
  /** Synthetic string keys loaded into n1 after init (default 0). */
  keys?: number;
  /** Bytes per value of the loaded keys (default 100). */
  valueSize?: number;
  /** `--etcd-lease-ttl` of the nodes (default 3 s: a dead node drops out quickly). */
  leaseTtlSeconds?: number;
  /** More `serve` flags for every node. */
  serveArgs?: readonly string[];
  /** Run `cluster init --node n1` and load the keys (default true). */
  init?: boolean;
}

export interface TestCluster {
  etcd: TestEtcd;
  name: string;
  /** The nodes by id; a test that stops one for good deletes it here. */
  nodes: Map<string, ClusterNode>;
  /**
   * What the cluster holds: the loaded keys, plus whatever a writer of the test applied
   * after each acknowledged write. checkConverged compares the nodes with it.
   */
  model: MemoryStore;
  node(id: string): ClusterNode;
  /** Starts one more node `id` (registered once this resolves). */
  addNode(id: string, extra?: readonly string[]): Promise<ClusterNode>;
  /** Runs `shardsnap cluster --etcd E --cluster C ...args` to its end. */
  cli(args: readonly string[], options?: CliOptions): Promise<CliRun>;
  /** Starts the same without waiting (two controllers at once, a kill mid-run). */
  spawnCli(args: readonly string[], options?: CliOptions): RunningCli;
  topology(): Promise<TopologyDoc | undefined>;
  /** Every migration record, oldest first. */
  migrations(): Promise<MigrationDoc[]>;
  /** Ids of the nodes whose registration key exists (their lease lives). */
  registered(): Promise<Set<string>>;
  /** Waits until exactly these ids are registered (bounded; throws naming what is there). */
  waitRegistered(ids: readonly string[], timeoutMs?: number): Promise<void>;
}

const DEFAULT_CLI_TIMEOUT_MS = 45_000;

/** Starts etcd and N nodes, inits the cluster on n1 and loads the keys; all stopped at the end. */
export async function startCluster(
  t: ExecutionContext,
  options: ClusterOptions = {},
): Promise<TestCluster> {
  const etcd = await startEtcd(t);
  const name = `c${Math.random().toString(36).slice(2, 8)}`;
  const prefix = `/shardsnap/${name}/`;
  const nodes = new Map<string, ClusterNode>();
  const ttl = options.leaseTtlSeconds ?? 3;
  const batches = [
    ...syntheticBatches({
      keys: options.keys ?? 0,
      valueSize: options.valueSize ?? 100,
      types: 'string',
      seed: 1,
    }),
  ];

  const registered = async (): Promise<Set<string>> => {
    const kvs = await etcd.getPrefix(`${prefix}nodes/`);
    return new Set([...kvs.keys()].map((key) => key.slice(`${prefix}nodes/`.length)));
  };

  const cluster: TestCluster = {
    etcd,
    name,
    nodes,
    model: await modelOf(batches),
    node(id) {
      const node = nodes.get(id);
      if (!node) throw new Error(`no node ${id} in this test cluster`);
      return node;
    },
    async addNode(id, extra = []) {
      const dataDir = await tempDirFor(t, `shardsnap-${id}-`);
      const served = await spawnServe(t, [
        '--data-dir',
        dataDir,
        '--log-level',
        'warn',
        '--node-id',
        id,
        '--etcd',
        etcd.endpoints,
        '--cluster',
        name,
        '--etcd-lease-ttl',
        String(ttl),
        ...(options.serveArgs ?? []),
        ...extra,
      ]);
      const client = new ShardsnapClient(served.address);
      t.teardown(() => client.close());
      const node: ClusterNode = { id, address: served.address, dataDir, process: served, client };
      nodes.set(id, node);
      await waitFor(async () => (await registered()).has(id), 10_000, 50);
      return node;
    },
    cli: (args, cliOptions) => runCli(t, etcd, name, args, cliOptions).done,
    spawnCli: (args, cliOptions) => runCli(t, etcd, name, args, cliOptions),
    async topology() {
      const text = await etcd.get(`${prefix}topology`);
      return text === undefined ? undefined : (JSON.parse(text) as TopologyDoc);
    },
    async migrations() {
      const kvs = await etcd.getPrefix(`${prefix}migrations/`);
      return [...kvs.values()]
        .map((text) => JSON.parse(text) as MigrationDoc)
        .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
    },
    registered,
    async waitRegistered(ids, timeoutMs = 10_000) {
      const wanted = [...ids].sort().join(',');
      let seen = '';
      const ok = await waitFor(
        async () => {
          seen = [...(await registered())].sort().join(',');
          return seen === wanted;
        },
        timeoutMs,
        100,
      );
      if (!ok) throw new Error(`registered nodes are [${seen}], not [${wanted}]`);
    },
  };

  const count = options.nodes ?? 2;
  // One at a time keeps the start-up load of a 2-core machine bounded.
  for (let i = 1; i <= count; i++) await cluster.addNode(`n${i}`);
  if (options.init === false) return cluster;

  const init = await cluster.cli(['init', '--node', 'n1']);
  if (init.code !== 0) throw new Error(`cluster init failed (${init.code}): ${init.stderr}`);
  const n1 = cluster.node('n1');
  const ownsAll = await waitFor(
    async () => sameRanges((await n1.client.topology()).owned, [{ start: 0, end: MAX_SLOT }]),
    10_000,
    50,
  );
  if (!ownsAll) throw new Error('n1 does not own every slot after cluster init');
  await writeAll(n1.client, batches);
  return cluster;
}

/** The batches in order, a few in flight. */
async function writeAll(client: ShardsnapClient, batches: readonly Mutation[][]): Promise<void> {
  const inFlight = new Set<Promise<unknown>>();
  for (const batch of batches) {
    const write: Promise<unknown> = client
      .write({ mutations: batch })
      .finally(() => inFlight.delete(write));
    inFlight.add(write);
    if (inFlight.size >= 4) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
}

function runCli(
  t: ExecutionContext,
  etcd: TestEtcd,
  name: string,
  args: readonly string[],
  options: CliOptions = {},
): RunningCli {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // A crash point left in the test's own environment must not leak into every command.
  delete env.SHARDSNAP_CONTROLLER_EXIT_AT;
  Object.assign(env, options.env ?? {});
  const argv = [
    BIN,
    'cluster',
    '--etcd',
    etcd.endpoints,
    '--cluster',
    name,
    ...args,
    ...(options.json ? ['--json'] : []),
  ];
  const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (piece: string) => (stdout += piece));
  child.stderr.setEncoding('utf8').on('data', (piece: string) => (stderr += piece));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, options.timeoutMs ?? DEFAULT_CLI_TIMEOUT_MS);
  const done = new Promise<CliRun>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const run: CliRun = { code, signal, stdout, stderr, timedOut };
      if (options.json) {
        const line = stdout.trim().split('\n').pop() ?? '';
        try {
          run.json = JSON.parse(line) as Record<string, unknown>;
        } catch {
          // A process killed before it printed has no JSON: the caller sees `json` undefined.
        }
      }
      resolve(run);
    });
  });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
    }
    await done;
  });
  return { child, done, stderr: () => stderr };
}

/** One line describing a run, for assertion messages. */
export function describeRun(run: CliRun): string {
  return `exit ${String(run.code)} signal ${String(run.signal)}${run.timedOut ? ' (timed out)' : ''}\nstdout: ${run.stdout.trim()}\nstderr: ${run.stderr.trim()}`;
}

/** Ranges merged and sorted, so that two ways of writing the same slots compare equal. */
export function mergeRanges(ranges: ReadonlyArray<{ start: number; end: number }>): SlotRange[] {
  // Empty stays empty here (no slots), unlike a request's "every slot".
  return ranges.length === 0
    ? []
    : normalizeSlotRanges(ranges.map(({ start, end }) => ({ start, end })));
}

export function sameRanges(
  a: ReadonlyArray<{ start: number; end: number }>,
  b: ReadonlyArray<{ start: number; end: number }>,
): boolean {
  return formatSlotRanges(mergeRanges(a)) === formatSlotRanges(mergeRanges(b));
}

/** The ranges the topology assigns to `node`. */
export function rangesOf(topology: TopologyDoc | undefined, node: string): SlotRange[] {
  return mergeRanges((topology?.slots ?? []).filter((a) => a.node === node));
}

/** Slots per node in the topology. */
export function slotCountsOf(topology: TopologyDoc | undefined): Record<string, number> {
  return Object.fromEntries(
    slotCounts({ version: 0, cluster: '', updatedAtMs: 0, slots: topology?.slots ?? [] }),
  );
}

/** What one look at the cluster found; `problems` is empty when it has converged. */
interface Observation {
  topology: TopologyDoc | undefined;
  running: MigrationDoc[];
  views: Map<string, NodeView>;
  stats: Map<string, ShardStats>;
  problems: string[];
}

async function observe(cluster: TestCluster, expectedKeys: number): Promise<Observation> {
  const problems: string[] = [];
  const [topology, migrations] = await Promise.all([cluster.topology(), cluster.migrations()]);
  const running = migrations.filter((m) => m.state === 'running');
  if (running.length > 0)
    problems.push(`migrations still running: ${running.map((m) => m.id).join(', ')}`);
  if (!topology)
    return { topology, running, views: new Map(), stats: new Map(), problems: ['no topology'] };

  let covered = 0;
  let previousEnd = -1;
  for (const a of topology.slots) {
    if (a.start <= previousEnd || a.end < a.start)
      problems.push(`topology ranges overlap at ${a.start}`);
    previousEnd = a.end;
    covered += a.end - a.start + 1;
    if (!cluster.nodes.has(a.node))
      problems.push(`slots ${a.start}-${a.end} are assigned to ${a.node}, not a running node`);
  }
  if (covered !== SLOT_COUNT)
    problems.push(`the topology covers ${covered} slots, not ${SLOT_COUNT}`);

  const views = new Map<string, NodeView>();
  const stats = new Map<string, ShardStats>();
  let keys = 0;
  for (const [id, node] of cluster.nodes) {
    try {
      const [view, stat] = await Promise.all([
        node.client.topology({}, { deadlineMs: 3_000 }),
        node.client.stats({}, { deadlineMs: 3_000 }),
      ]);
      views.set(id, view);
      stats.set(id, stat);
      keys += Number(stat.keyCount);
      const assigned = rangesOf(topology, id);
      if (view.version !== topology.version) {
        problems.push(
          `${id} follows topology version ${view.version}, etcd has ${topology.version}`,
        );
      }
      if (!sameRanges(view.owned, assigned)) {
        problems.push(
          `${id} owns ${formatSlotRanges(mergeRanges(view.owned)) || 'nothing'}, the topology assigns it ${formatSlotRanges(assigned) || 'nothing'}`,
        );
      }
      if (view.importing.length > 0) {
        problems.push(`${id} still imports ${formatSlotRanges(mergeRanges(view.importing))}`);
      }
    } catch (error) {
      problems.push(`${id} did not answer: ${(error as Error).message}`);
    }
  }
  // A source drops the keys it handed over in the background: the sum settles a bit later.
  if (keys !== expectedKeys)
    problems.push(`the nodes hold ${keys} keys, the model ${expectedKeys}`);
  return { topology, running, views, stats, problems };
}

export interface ConvergeOptions {
  /** How long the cluster may take to settle before the assertions run (default 20 s). */
  timeoutMs?: number;
  /** Compare each node's digest of its slots with the model's (default true). */
  digests?: boolean;
}

/**
 * Asserts that the cluster settled: no migration record is running; the topology covers
 * all 16384 slots, each once, each assigned to a running node; every node follows the
 * topology's version, owns exactly its ranges (so no slot is owned twice or by nobody)
 * and imports nothing; the nodes' key counts add up to the model's; and (unless turned
 * off) every node holds exactly the model's keys of its slots. Waits up to `timeoutMs`
 * for all of it, then asserts on the last look. Returns that topology.
 */
export async function checkConverged(
  t: ExecutionContext,
  cluster: TestCluster,
  options: ConvergeOptions = {},
): Promise<TopologyDoc | undefined> {
  const expectedKeys = (await modelDigest(cluster.model, [{ start: 0, end: MAX_SLOT }])).keyCount;
  let last: Observation | undefined;
  await waitFor(
    async () => {
      last = await observe(cluster, expectedKeys);
      return last.problems.length === 0;
    },
    options.timeoutMs ?? 20_000,
    200,
  );
  const seen = last as Observation;
  t.deepEqual(seen.problems, [], 'the cluster converged');
  t.deepEqual(seen.running, [], 'no migration is left running');
  const { topology } = seen;
  if (!topology) return undefined;
  t.is(
    topology.slots.reduce((n, a) => n + a.end - a.start + 1, 0),
    SLOT_COUNT,
    'the topology covers every slot',
  );
  // Each slot is owned by exactly one node, the one the topology names.
  const owners = new Uint8Array(SLOT_COUNT);
  for (const view of seen.views.values()) {
    for (const r of view.owned)
      for (let s = r.start; s <= r.end; s++) owners[s] = (owners[s] ?? 0) + 1;
  }
  t.true(
    owners.every((n) => n === 1),
    'every slot has exactly one owner',
  );
  if (options.digests ?? true) {
    for (const [id, node] of cluster.nodes) {
      const ranges = rangesOf(topology, id);
      // An empty slot list would mean "every slot" to Digest.
      if (ranges.length === 0) continue;
      const [actual, expected] = await Promise.all([
        node.client.digest({ slots: ranges }),
        modelDigest(cluster.model, ranges),
      ]);
      t.is(Number(actual.keyCount), expected.keyCount, `${id}: key count of its slots`);
      t.is(actual.digest, expected.digest, `${id} holds exactly the model's keys of its slots`);
    }
  }
  return topology;
}
