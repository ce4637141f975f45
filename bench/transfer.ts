/**
 * The transfer section (rows 19-24): the byte path as users run it. Fetches go through the
 * CLI (`shardsnap fetch --id`, process start included) and pulls through `shardsnap pull`;
 * each is compared with a raw file→socket→file copy of the same artifact in the same run
 * (two Node processes, bench/tcp-child.ts). Runs alternate which side goes first, because
 * on this kind of machine whoever writes a fresh GiB first after a pause pays for the
 * page cache's first touches. CPU seconds per GiB are read from /proc for both sides.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client/client';
import type { SnapshotChunk__Output } from '../src/generated/shardsnap/v1/SnapshotChunk';
import { Connection } from '../src/wire/connection';
import { isStopping, stopProcess, stopTrackedProcesses, trackProcess, removeDir } from './cleanup';
import { type BenchConfig, TARGETS } from './config';
import { BIN, type NodeProcess, Tail, startNodeProcess, waitForStdout } from './node-process';
import { type Row, verdict } from './report';
import { rawTcpCopy } from './tcp-baseline';
import {
  MiB,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  mibPerSecond,
  withTimeout,
} from './util';
import { loadLogged } from './load-logged';

const ONE_WAY_DELAY_MS = 10;
/** Row 23's path limits each connection to this, as many WAN paths limit each flow. */
const PER_FLOW_MIB_S = 100;

export const TRANSFER_ROWS: Record<number, [string, string]> = {
  19: ['transfer: shardsnap fetch --id, memory node', `ratio ≥ ${TARGETS.transferFetchRatio}`],
  20: ['transfer: shardsnap fetch --id, RocksDB node', `ratio ≥ ${TARGETS.transferFetchRatio}`],
  21: ['transfer: shardsnap pull node → node (memory)', `ratio ≥ ${TARGETS.transferPullRatio}`],
  22: [
    'transfer: fetch over +20 ms RTT (delaying proxy)',
    `ratio ≥ ${TARGETS.transferLatencyRatio}`,
  ],
  23: [
    `transfer: fetch --parallel 4, +20 ms RTT, ${PER_FLOW_MIB_S} MiB/s per connection`,
    'ratio > 1 (vs one stream)',
  ],
  24: ['transfer: first byte after CreateSnapshot', `≤ ${TARGETS.transferFirstByteMs} ms`],
};

const GiB = 1024 * MiB;
const CLK_TCK = 100;

const ratioText = (r: number): string => (Number.isFinite(r) ? r.toFixed(2) : '-');

/** utime+stime of `pid`, or of the waited-for children of this process (`children`), in s. */
export function cpuSeconds(pid: number | 'children'): number {
  const stat = readFileSync(`/proc/${pid === 'children' ? 'self' : pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const [user, system] = pid === 'children' ? [13, 14] : [11, 12];
  return (Number(fields[user]) + Number(fields[system])) / CLK_TCK;
}

interface Timed {
  ms: number;
  /** CPU seconds of the processes this side started (the CLI; or sender and receiver). */
  clientCpu: number;
  /** CPU seconds of the serving node(s) during the transfer. */
  nodeCpu: number;
}

/** Runs the CLI to completion; its stdout must be one JSON object (`--json`). */
export async function runCli(
  args: readonly string[],
  timeoutMs: number,
): Promise<{ ms: number; cpu: number; json: Record<string, unknown> }> {
  const cpu0 = cpuSeconds('children');
  const started = performance.now();
  const child = spawn(BIN, ['--json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess('cli', child);
  const out: Buffer[] = [];
  const err = new Tail();
  child.stdout?.on('data', (p: Buffer) => out.push(p));
  child.stderr?.on('data', (p: Buffer) => err.push(p));
  try {
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('close', resolve)),
      timeoutMs,
      `shardsnap ${args[0] ?? ''}`,
    );
    const ms = performance.now() - started;
    if (code !== 0)
      throw new Error(`shardsnap ${args.join(' ')} exited ${code}: ${err.toString()}`);
    return {
      ms,
      cpu: cpuSeconds('children') - cpu0,
      json: JSON.parse(Buffer.concat(out).toString('utf8')) as Record<string, unknown>,
    };
  } finally {
    await stopProcess(pid, 1_000);
  }
}

export async function removeOutputs(out: string): Promise<void> {
  for (const suffix of ['', '.json', '.part', '.part.json'])
    await rm(`${out}${suffix}`, { force: true });
}

/** A delaying proxy (bench/delay-proxy.ts) in front of `targetPort`; returns its port. */
async function startDelayProxy(
  targetPort: number,
  mibPerSecondPerConnection = 0,
): Promise<{ port: number; pid: number }> {
  const child = spawn(
    process.execPath,
    [
      join(__dirname, 'delay-proxy.js'),
      String(targetPort),
      String(ONE_WAY_DELAY_MS),
      String(mibPerSecondPerConnection),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const pid = trackProcess('delay-proxy', child);
  const err = new Tail();
  child.stderr?.on('data', (p: Buffer) => err.push(p));
  const match = await waitForStdout(child, /port (\d+)\n/, 10_000, 'delay proxy', err);
  return { port: Number(match[1]), pid };
}

interface Artifact {
  node: NodeProcess;
  client: ShardsnapClient;
  id: string;
  sha256: string;
  bytes: number;
  path: string;
}

async function loadAndSnapshot(
  config: BenchConfig,
  node: NodeProcess,
  label: string,
): Promise<Artifact> {
  const client = new ShardsnapClient(node.address);
  await client.stats();
  const loaded = await loadLogged(client, {
    keys: config.transferKeys,
    valueSize: config.valueSize,
    seed: config.seed,
    timeoutMs: config.transferStepTimeoutMs,
    what: `loading ${label}`,
    logPrefix: `  ${label}: `,
    steps: 4,
  });
  const created = await client.createSnapshot();
  const info = await withTimeout(
    client.waitReady({ snapshotId: created.id }),
    config.transferStepTimeoutMs,
    `building the ${label} snapshot`,
  );
  log(
    `  ${label}: ${formatCount(loaded.keys)} keys in ${formatMs(loaded.elapsedMs)}; snapshot ${info.id} ` +
      `(${info.strategy}) ${formatBytes(Number(info.sizeBytes))}`,
  );
  return {
    node,
    client,
    id: info.id,
    sha256: info.sha256,
    bytes: Number(info.sizeBytes),
    path: join(node.dataDir, 'snapshots', info.id, 'artifact.bin'),
  };
}

/** One CLI fetch of the artifact, checked against its SHA-256. */
async function cliFetch(
  config: BenchConfig,
  artifact: Artifact,
  out: string,
  from: string,
  extra: readonly string[] = [],
): Promise<Timed & { streams: number }> {
  await removeOutputs(out);
  const node0 = cpuSeconds(artifact.node.pid);
  const run = await runCli(
    ['fetch', '--from', from, '--id', artifact.id, '--out', out, ...extra],
    config.transferStepTimeoutMs,
  );
  const nodeCpu = cpuSeconds(artifact.node.pid) - node0;
  if (run.json.sha256 !== artifact.sha256 || Number(run.json.bytes) !== artifact.bytes) {
    throw new Error(
      `fetch wrote ${String(run.json.bytes)} bytes with sha256 ${String(run.json.sha256)}, expected ${artifact.bytes} / ${artifact.sha256}`,
    );
  }
  await removeOutputs(out);
  return { ms: run.ms, clientCpu: run.cpu, nodeCpu, streams: Number(run.json.streams ?? 1) };
}

async function rawCopy(
  config: BenchConfig,
  artifact: Artifact,
  out: string,
  through?: (receiverPort: number) => Promise<number>,
): Promise<Timed> {
  await rm(out, { force: true });
  const cpu0 = cpuSeconds('children');
  const tcp = await rawTcpCopy(artifact.path, out, config.transferStepTimeoutMs, through);
  const clientCpu = cpuSeconds('children') - cpu0;
  await rm(out, { force: true });
  if (tcp.bytes !== artifact.bytes) {
    throw new Error(`raw copy moved ${tcp.bytes} bytes, expected ${artifact.bytes}`);
  }
  return { ms: tcp.ms, clientCpu, nodeCpu: 0 };
}

/**
 * Runs `ours` and `raw` alternately, `runs` times each (odd runs start with raw), after
 * one untimed run of each: the first GiB written after a pause pays for fresh pages.
 */
async function alternate(
  runs: number,
  ours: () => Promise<Timed>,
  raw: () => Promise<Timed>,
  label: string,
  bytes: number,
): Promise<{ ours: Timed[]; raw: Timed[] }> {
  const result = { ours: [] as Timed[], raw: [] as Timed[] };
  await ours();
  await raw();
  for (let run = 0; run < runs; run++) {
    if (isStopping()) break;
    const order = run % 2 === 0 ? (['ours', 'raw'] as const) : (['raw', 'ours'] as const);
    for (const side of order) result[side].push(await (side === 'ours' ? ours() : raw()));
    const o = result.ours.at(-1) as Timed;
    const r = result.raw.at(-1) as Timed;
    log(
      `  ${label} run ${run + 1}: ours ${mibPerSecond(bytes, o.ms).toFixed(0)} MiB/s ` +
        `(client ${o.clientCpu.toFixed(2)} s, node ${o.nodeCpu.toFixed(2)} s CPU), raw ${mibPerSecond(bytes, r.ms).toFixed(0)} MiB/s ` +
        `(${r.clientCpu.toFixed(2)} s CPU)`,
    );
  }
  return result;
}

const perGiB = (seconds: number[], bytes: number): number => median(seconds) / (bytes / GiB);

function ratioRow(
  n: number,
  bytes: number,
  result: { ours: Timed[]; raw: Timed[] },
  target: number,
  note: string,
  cpuNote = true,
): Row {
  const value = mibPerSecond(bytes, median(result.ours.map((r) => r.ms)));
  const baseline = mibPerSecond(bytes, median(result.raw.map((r) => r.ms)));
  const ratio = value / baseline;
  const cpu = cpuNote
    ? `; CPU s/GiB: ours client ${perGiB(
        result.ours.map((r) => r.clientCpu),
        bytes,
      ).toFixed(2)} + node ${perGiB(
        result.ours.map((r) => r.nodeCpu),
        bytes,
      ).toFixed(2)}, raw ${perGiB(
        result.raw.map((r) => r.clientCpu),
        bytes,
      ).toFixed(2)} (sender + receiver)`
    : '';
  return {
    n,
    name: TRANSFER_ROWS[n]?.[0] ?? `measurement ${n}`,
    value,
    valueText: `${value.toFixed(1)} MiB/s`,
    baseline,
    baselineText: `${baseline.toFixed(1)} MiB/s`,
    ratio,
    ratioText: ratioText(ratio),
    target: TRANSFER_ROWS[n]?.[1] ?? '',
    verdict: verdict(ratio >= target),
    note:
      `${formatBytes(bytes)} artifact; per run ours ${result.ours.map((r) => mibPerSecond(bytes, r.ms).toFixed(0)).join('/')}, ` +
      `raw ${result.raw.map((r) => mibPerSecond(bytes, r.ms).toFixed(0)).join('/')} MiB/s${cpu}${note}`,
    details: { bytes, ours: result.ours, raw: result.raw },
  };
}

/** Row 24: CreateSnapshot, then FetchSnapshot until its first chunk with data arrives. */
async function firstByte(config: BenchConfig, artifact: Artifact): Promise<Row> {
  const conn = new Connection(artifact.node.address);
  const samples: number[] = [];
  try {
    for (let i = 0; i < Math.max(3, config.runs); i++) {
      const started = performance.now();
      const created = await artifact.client.createSnapshot();
      const stream = conn.snapshots.FetchSnapshot({ snapshotId: created.id });
      try {
        for await (const chunk of stream as AsyncIterable<SnapshotChunk__Output>) {
          if (chunk.data.length > 0) break;
        }
      } finally {
        stream.cancel();
      }
      samples.push(performance.now() - started);
      await artifact.client.waitReady({ snapshotId: created.id });
      await artifact.client.deleteSnapshot({ snapshotId: created.id });
    }
  } finally {
    conn.close();
  }
  const value = median(samples);
  return {
    n: 24,
    name: TRANSFER_ROWS[24]?.[0] ?? '',
    value,
    valueText: `${value.toFixed(1)} ms`,
    baseline: null,
    baselineText: '-',
    ratio: value,
    ratioText: `${value.toFixed(1)} ms`,
    target: TRANSFER_ROWS[24]?.[1] ?? '',
    verdict: verdict(value <= TARGETS.transferFirstByteMs),
    note: `${formatCount(config.transferKeys)}-key memory node; CreateSnapshot + first chunk of FetchSnapshot; per run ${samples.map((s) => s.toFixed(1)).join('/')} ms`,
    details: { samples },
  };
}

type Attempt = (n: number, body: () => Promise<Row>) => Promise<void>;

export async function transferSuite(
  config: BenchConfig,
  tmp: string,
  attempt: Attempt,
): Promise<void> {
  const runs = config.runs;
  const out = join(tmp, 'fetched.snap');
  const copy = join(tmp, 'raw.bin');
  try {
    const nodeA = await startNodeProcess({ name: 'bench-t-a', dataDir: join(tmp, 'node-a') });
    log(`node A (memory, pid ${nodeA.pid}) on ${nodeA.address}`);
    const a = await loadAndSnapshot(config, nodeA, 'node A');
    let rawA: { ours: Timed[]; raw: Timed[] } | undefined;
    await attempt(19, async () => {
      rawA = await alternate(
        runs,
        () => cliFetch(config, a, out, a.node.address),
        () => rawCopy(config, a, copy),
        'fetch A',
        a.bytes,
      );
      return ratioRow(19, a.bytes, rawA, TARGETS.transferFetchRatio, '');
    });
    await attempt(21, async () => {
      const nodeB = await startNodeProcess({ name: 'bench-t-b', dataDir: join(tmp, 'node-b') });
      try {
        const result = await alternate(
          runs,
          async () => {
            const a0 = cpuSeconds(a.node.pid);
            const b0 = cpuSeconds(nodeB.pid);
            const run = await runCli(
              ['pull', '--to', nodeB.address, '--from', a.node.address, '--id', a.id],
              config.transferStepTimeoutMs,
            );
            const keys = Number(run.json.keysInstalled ?? run.json.keys ?? NaN);
            if (keys !== config.transferKeys) {
              throw new Error(`pull installed ${keys} keys, expected ${config.transferKeys}`);
            }
            return {
              ms: run.ms,
              clientCpu: cpuSeconds(nodeB.pid) - b0,
              nodeCpu: cpuSeconds(a.node.pid) - a0,
            };
          },
          () => rawCopy(config, a, copy),
          'pull A → B',
          a.bytes,
        );
        // Raw copies right after a pull pay for the memory the pull just took and freed:
        // the faster of this row's raw copies and row 19's is the baseline.
        const rawHere = median(result.raw.map((r) => r.ms));
        const raw19 = rawA ? median(rawA.raw.map((r) => r.ms)) : Infinity;
        const baseline = raw19 < rawHere && rawA ? rawA.raw : result.raw;
        return ratioRow(
          21,
          a.bytes,
          { ours: result.ours, raw: baseline },
          TARGETS.transferPullRatio,
          `; ours = CLI \`pull\` (pulling node's CPU as client, source's as node); baseline = ` +
            `${baseline === result.raw ? "this row's" : "row 19's"} raw copies (this row's: ` +
            `${result.raw.map((r) => mibPerSecond(a.bytes, r.ms).toFixed(0)).join('/')} MiB/s)`,
        );
      } finally {
        await nodeB.stop();
      }
    });
    await attempt(22, async () => {
      const [, port] = a.node.address.split(':');
      const proxy = await startDelayProxy(Number(port));
      const proxies: number[] = [];
      try {
        const via = `127.0.0.1:${proxy.port}`;
        const result = await alternate(
          runs,
          () => cliFetch(config, a, out, via, ['--parallel', '1']),
          () =>
            rawCopy(config, a, copy, async (receiverPort) => {
              const p = await startDelayProxy(receiverPort);
              proxies.push(p.pid);
              return p.port;
            }),
          `+${2 * ONE_WAY_DELAY_MS} ms RTT`,
          a.bytes,
        );
        return ratioRow(
          22,
          a.bytes,
          result,
          TARGETS.transferLatencyRatio,
          `; both through a proxy adding ${ONE_WAY_DELAY_MS} ms each way; ours = --parallel 1`,
          false,
        );
      } finally {
        for (const pid of [proxy.pid, ...proxies]) await stopProcess(pid, 1_000);
      }
    });
    await attempt(23, async () => {
      const [, port] = a.node.address.split(':');
      const proxy = await startDelayProxy(Number(port), PER_FLOW_MIB_S);
      try {
        const via = `127.0.0.1:${proxy.port}`;
        const result = await alternate(
          runs,
          () => cliFetch(config, a, out, via, ['--parallel', '4']),
          () => cliFetch(config, a, out, via, ['--parallel', '1']),
          `${PER_FLOW_MIB_S} MiB/s per connection, 4 vs 1 streams`,
          a.bytes,
        );
        const row = ratioRow(23, a.bytes, result, 1, '', false);
        row.baselineText = `${row.baselineText} (1 stream)`;
        row.verdict = verdict((row.ratio ?? 0) > 1);
        row.note =
          `4 ranged streams vs 1 through a proxy adding ${ONE_WAY_DELAY_MS} ms each way and pacing each connection to ${PER_FLOW_MIB_S} MiB/s; ` +
          `per run 4 streams ${result.ours.map((r) => mibPerSecond(a.bytes, r.ms).toFixed(0)).join('/')}, 1 stream ${result.raw.map((r) => mibPerSecond(a.bytes, r.ms).toFixed(0)).join('/')} MiB/s`;
        return row;
      } finally {
        await stopProcess(proxy.pid, 1_000);
      }
    });
    await attempt(24, () => firstByte(config, a));
    a.client.close();
    await nodeA.stop();
    await removeDir(join(tmp, 'node-a'));

    await attempt(20, async () => {
      const nodeR = await startNodeProcess({
        name: 'bench-t-r',
        dataDir: join(tmp, 'node-r'),
        backend: 'rocksdb',
      });
      log(`node R (rocksdb, pid ${nodeR.pid}) on ${nodeR.address}`);
      const r = await loadAndSnapshot(config, nodeR, 'node R');
      try {
        const result = await alternate(
          runs,
          () => cliFetch(config, r, out, r.node.address),
          () => rawCopy(config, r, copy),
          'fetch R',
          r.bytes,
        );
        return ratioRow(20, r.bytes, result, TARGETS.transferFetchRatio, '; checkpoint artifact');
      } finally {
        r.client.close();
        await nodeR.stop();
      }
    });
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}
