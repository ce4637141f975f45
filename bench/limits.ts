/**
 * The limits section (rows 25-30): the node's transfer limits and TLS, measured on one
 * READY full snapshot of BENCH_LIMITS_KEYS keys (~296 MiB with the defaults).
 *
 * A seed node is loaded and builds the snapshot, then stops; every node of the section
 * starts on a data dir of its own holding a hard link of that snapshot (READY snapshots
 * are reloaded at start), so each serves the same artifact file with different flags and
 * an empty store.
 *
 * - 25-27, rate limits: `shardsnap fetch --id` from a node started with
 *   `--max-send-rate R` (100 MiB/s, 40 MiB/s), and `shardsnap pull` into an empty node
 *   started with `--max-recv-rate 40MiB`, take N/R within ±10%. The time is the one the
 *   CLI reports (`elapsedMs`: connect to done, process start excluded).
 * - 28-29, adaptive mode: an empty node pulls the snapshot from an unlimited source while
 *   the bench sends it single-key SETs at a steady rate (open loop: each write leaves on
 *   schedule whether or not the earlier ones have answered, so a stalled node is sampled
 *   as often as a quick one), each write timed in the bench. Run 1 has no limit (the
 *   harm, and the idle p99 that sets the target T); run 2 `--snapshot-latency-target-ms
 *   T`; a diagnostic run with the lowest target the flag takes (1 ms), outside the
 *   verdicts; then fixed `--max-recv-rate` values, descending, until one keeps the write
 *   p99 ≤ T. While each pull runs, the node's Prometheus endpoint is read every 500 ms:
 *   the rate limit in force and the node's own histogram of Write latency.
 * - 30, TLS: the same fetch from two nodes alike but for `--tls-cert/--tls-key`, runs
 *   alternating; MiB/s and CPU seconds per GiB of the CLI and the node.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, readdir, writeFile } from 'node:fs/promises';
import * as http from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { ShardsnapClient } from '../src/client/client';
import { keyName } from '../src/client/synthetic';
import { isStopping, removeDir, stopTrackedProcesses } from './cleanup';
import { type BenchConfig, TARGETS } from './config';
import { type NodeProcess, startNodeProcess } from './node-process';
import { type Row, verdict } from './report';
import { cpuSeconds, removeOutputs, runCli } from './transfer';
import {
  MiB,
  collectGarbage,
  formatBytes,
  formatCount,
  formatMs,
  log,
  median,
  mibPerSecond,
  percentile,
  sleep,
  withTimeout,
} from './util';
import { loadLogged } from './load-logged';

const GiB = 1024 * MiB;
/** Rows 25 and 26: `--max-send-rate` of the serving node, MiB/s. */
const SEND_RATES_MIB = { 25: 100, 26: 40 } as const;
/** Row 27: `--max-recv-rate` of the pulling node, MiB/s. */
const RECV_RATE_MIB = 40;
/** Fixed `--max-recv-rate` values tried for row 29, fastest first, MiB/s. */
const FIXED_RATES_MIB = [64, 48, 32, 24, 16, 12, 8, 4, 2] as const;
/** Writes before each pull; the first WARMUP_MS of them (connection, JIT) are not counted. */
const IDLE_MS = 3_000;
/** Run 1's idle phase sets the target, so it is longer. */
const FIRST_IDLE_MS = 5_000;
const WARMUP_MS = 1_000;
/** A pull of the no-limit and adaptive runs is cancelled after this long. */
const OPEN_RUN_MAX_MS = 45_000;
/** A pull at a fixed rate is cancelled after this long (steady state by then). */
const FIXED_RUN_MAX_MS = 20_000;
/** How often the pulling node's metrics are read during a pull. */
const SAMPLE_MS = 500;
/** Writes in flight at most; a write due beyond that is counted as skipped. */
const MAX_IN_FLIGHT = 1_000;
/** The writer itself late by more than this (its own GC, a busy core): missed slots are skipped. */
const WRITER_LATE_MS = 50;

export const LIMITS_ROWS: Record<number, [string, string]> = {
  25: [
    `limits: fetch from a node with --max-send-rate ${SEND_RATES_MIB[25]}MiB`,
    `s / (N/R) in 1 ± ${TARGETS.limitsRateTolerance}`,
  ],
  26: [
    `limits: fetch from a node with --max-send-rate ${SEND_RATES_MIB[26]}MiB`,
    `s / (N/R) in 1 ± ${TARGETS.limitsRateTolerance}`,
  ],
  27: [
    `limits: pull into a node with --max-recv-rate ${RECV_RATE_MIB}MiB`,
    `s / (N/R) in 1 ± ${TARGETS.limitsRateTolerance}`,
  ],
  28: ['limits: write p99 during a pull, --snapshot-latency-target-ms T', 'p99 ≤ T'],
  29: [
    'limits: adaptive pull vs fixed --max-recv-rate of the same p99',
    `≥ ${TARGETS.limitsAdaptiveSpeedup}× MiB/s, p99 ≤ T`,
  ],
  30: ['limits: fetch over TLS vs plaintext', 'reported'],
};

type Attempt = (n: number, body: () => Promise<Row>) => Promise<void>;

const fixed = (x: number, digits = 2): string => (Number.isFinite(x) ? x.toFixed(digits) : '-');

// ------------------------------------------------------------------------------ setup

interface Seeded {
  id: string;
  sha256: string;
  bytes: number;
  keys: number;
  /** The seed node's snapshot directory (artifact.bin, manifest.json). */
  snapshotDir: string;
}

/** Loads a node, builds one full snapshot, stops the node; the snapshot's files stay. */
async function seed(config: BenchConfig, tmp: string): Promise<Seeded> {
  const dataDir = join(tmp, 'seed');
  const node = await startNodeProcess({ name: 'bench-l-seed', dataDir });
  const client = new ShardsnapClient(node.address);
  try {
    const loaded = await loadLogged(client, {
      keys: config.limitsKeys,
      valueSize: config.valueSize,
      seed: config.seed,
      timeoutMs: config.limitsStepTimeoutMs,
      what: 'loading the seed node',
      logPrefix: `  seed: `,
      steps: 3,
    });
    const created = await client.createSnapshot();
    const info = await withTimeout(
      client.waitReady({ snapshotId: created.id }),
      config.limitsStepTimeoutMs,
      'building the seed snapshot',
    );
    log(
      `  seed: ${formatCount(loaded.keys)} keys in ${formatMs(loaded.elapsedMs)}; snapshot ${info.id} ` +
        `${formatBytes(Number(info.sizeBytes))}`,
    );
    return {
      id: info.id,
      sha256: info.sha256,
      bytes: Number(info.sizeBytes),
      keys: Number(info.keyCount),
      snapshotDir: join(dataDir, 'snapshots', info.id),
    };
  } finally {
    client.close();
    await node.stop();
  }
}

/** A fresh data dir holding hard links of the seeded snapshot's files. */
async function dataDirWithSnapshot(tmp: string, name: string, seeded: Seeded): Promise<string> {
  const dataDir = join(tmp, name);
  const dir = join(dataDir, 'snapshots', seeded.id);
  await mkdir(dir, { recursive: true });
  for (const file of await readdir(seeded.snapshotDir)) {
    await link(join(seeded.snapshotDir, file), join(dir, file));
  }
  return dataDir;
}

/** A loopback port nobody listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const execFileAsync = promisify(execFile);

/** A CA and a node certificate for 127.0.0.1 signed by it (EC P-256), made with openssl. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  await mkdir(dir, { recursive: true });
  const openssl = (args: string[]): Promise<unknown> =>
    execFileAsync('openssl', args, { cwd: dir });
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl([
    'req',
    '-x509',
    ...ecKey,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=shardsnap-bench-ca',
  ]);
  await openssl([
    'req',
    ...ecKey,
    '-keyout',
    'node.key',
    '-out',
    'node.csr',
    '-subj',
    '/CN=shardsnap-bench-node',
  ]);
  await writeFile(
    join(dir, 'node.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n',
  );
  await openssl([
    'x509',
    '-req',
    '-in',
    'node.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'node.pem',
    '-days',
    '1',
    '-extfile',
    'node.ext',
  ]);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'node.pem'), key: join(dir, 'node.key') };
}

// ------------------------------------------------------------------------- 25-27

interface CliTransfer {
  /** What the CLI reports: from connecting to done (process start excluded). */
  ms: number;
  /** From spawn to exit. */
  wallMs: number;
  clientCpu: number;
  nodeCpu: number;
}

/** `shardsnap fetch --id` of the seeded snapshot from `node`, checked against its SHA-256. */
async function cliFetch(
  config: BenchConfig,
  seeded: Seeded,
  node: NodeProcess,
  out: string,
  extra: readonly string[] = [],
): Promise<CliTransfer> {
  await removeOutputs(out);
  const node0 = cpuSeconds(node.pid);
  const run = await runCli(
    ['fetch', '--from', node.address, '--id', seeded.id, '--out', out, ...extra],
    config.limitsStepTimeoutMs,
  );
  const nodeCpu = cpuSeconds(node.pid) - node0;
  await removeOutputs(out);
  if (run.json.sha256 !== seeded.sha256 || Number(run.json.bytes) !== seeded.bytes) {
    throw new Error(
      `fetch wrote ${String(run.json.bytes)} bytes with sha256 ${String(run.json.sha256)}, ` +
        `expected ${seeded.bytes} / ${seeded.sha256}`,
    );
  }
  return { ms: Number(run.json.elapsedMs), wallMs: run.ms, clientCpu: run.cpu, nodeCpu };
}

/** `shardsnap pull` of the seeded snapshot from `source` into `target`, keys checked. */
async function cliPull(
  config: BenchConfig,
  seeded: Seeded,
  source: NodeProcess,
  target: NodeProcess,
): Promise<CliTransfer> {
  const target0 = cpuSeconds(target.pid);
  const source0 = cpuSeconds(source.pid);
  const run = await runCli(
    ['pull', '--to', target.address, '--from', source.address, '--id', seeded.id],
    config.limitsStepTimeoutMs,
  );
  const keys = Number(run.json.keysInstalled ?? NaN);
  if (keys !== seeded.keys) throw new Error(`pull installed ${keys} keys, expected ${seeded.keys}`);
  return {
    ms: Number(run.json.elapsedMs),
    wallMs: run.ms,
    clientCpu: cpuSeconds(target.pid) - target0,
    nodeCpu: cpuSeconds(source.pid) - source0,
  };
}

function rateRow(
  n: 25 | 26 | 27,
  seeded: Seeded,
  rateMiB: number,
  runs: CliTransfer[],
  reference: CliTransfer,
  what: string,
): Row {
  const expectedMs = (seeded.bytes / (rateMiB * MiB)) * 1000;
  const ms = median(runs.map((r) => r.ms));
  const ratio = ms / expectedMs;
  const ratios = runs.map((r) => r.ms / expectedMs);
  const burst = Math.max((rateMiB * MiB) / 8, MiB);
  log(
    `  row ${n}: ${runs.map((r) => formatMs(r.ms)).join(' / ')} against ${formatMs(expectedMs)}; ` +
      `ratios ${ratios.map((r) => fixed(r, 3)).join(' / ')}`,
  );
  return {
    n,
    name: LIMITS_ROWS[n]?.[0] ?? '',
    value: ms / 1000,
    valueText: `${fixed(ms / 1000)} s`,
    baseline: expectedMs / 1000,
    baselineText: `${fixed(expectedMs / 1000)} s (N/R)`,
    ratio,
    ratioText: fixed(ratio, 3),
    target: LIMITS_ROWS[n]?.[1] ?? '',
    verdict: verdict(Math.abs(ratio - 1) <= TARGETS.limitsRateTolerance),
    note:
      `${what}; N = ${formatBytes(seeded.bytes)}, R = ${rateMiB} MiB/s; per run ` +
      `${runs.map((r) => `${fixed(r.ms / 1000)} s (${fixed(mibPerSecond(seeded.bytes, r.ms), 1)} MiB/s, ratio ${fixed(r.ms / expectedMs, 3)})`).join(', ')}; ` +
      `time = the CLI's elapsedMs (spawn to exit: ${runs.map((r) => fixed(r.wallMs / 1000)).join('/')} s); ` +
      `the bucket starts full, so ${formatBytes(burst)} pass at once ((N-burst)/R = ${fixed((seeded.bytes - burst) / (rateMiB * MiB))} s); ` +
      `without the limit: ${fixed(mibPerSecond(seeded.bytes, reference.ms), 0)} MiB/s`,
    details: { bytes: seeded.bytes, rateBytes: rateMiB * MiB, expectedMs, runs, reference },
  };
}

async function sendRateRow(
  config: BenchConfig,
  tmp: string,
  seeded: Seeded,
  source: NodeProcess,
  n: 25 | 26,
): Promise<Row> {
  const rateMiB = SEND_RATES_MIB[n];
  const out = join(tmp, 'fetched.snap');
  const node = await startNodeProcess({
    name: `bench-l-send-${rateMiB}`,
    dataDir: await dataDirWithSnapshot(tmp, `send-${rateMiB}`, seeded),
    extraArgs: ['--max-send-rate', `${rateMiB}MiB`],
  });
  try {
    // Untimed: warms the CLI and the page cache, and shows the speed without the limit.
    const reference = await cliFetch(config, seeded, source, out);
    const runs: CliTransfer[] = [];
    for (let run = 0; run < config.runs && !isStopping(); run++) {
      runs.push(await cliFetch(config, seeded, node, out));
    }
    return rateRow(n, seeded, rateMiB, runs, reference, '`shardsnap fetch --id` (one stream)');
  } finally {
    await node.stop();
    await removeDir(node.dataDir);
  }
}

async function recvRateRow(
  config: BenchConfig,
  tmp: string,
  seeded: Seeded,
  source: NodeProcess,
): Promise<Row> {
  const pullInto = async (extraArgs: string[], name: string): Promise<CliTransfer> => {
    const target = await startNodeProcess({ name, dataDir: join(tmp, name), extraArgs });
    try {
      return await cliPull(config, seeded, source, target);
    } finally {
      await target.stop();
      await removeDir(target.dataDir);
    }
  };
  const reference = await pullInto([], 'bench-l-pull-free');
  const runs: CliTransfer[] = [];
  for (let run = 0; run < config.runs && !isStopping(); run++) {
    runs.push(
      await pullInto(['--max-recv-rate', `${RECV_RATE_MIB}MiB`], `bench-l-recv-${run + 1}`),
    );
    collectGarbage();
  }
  return rateRow(
    27,
    seeded,
    RECV_RATE_MIB,
    runs,
    reference,
    '`shardsnap pull` into an empty memory node (a new one per run), install and commit included',
  );
}

// ------------------------------------------------------------------------- 28-29

interface WriteSample {
  /** When the write left (performance.now()). */
  at: number;
  ms: number;
}

/**
 * Single-key SETs at a steady rate, open loop: each is sent when due, whether or not the
 * ones before it have answered, so a node that stalls is sampled as often as one that
 * does not. Latency runs from the send to the answer, in this process.
 */
class SteadyWriter {
  readonly samples: WriteSample[] = [];
  errors = 0;
  firstError: string | undefined;
  skipped = 0;
  private inFlight = 0;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly values: Buffer[];
  private state = 0x9e3779b9;

  constructor(
    private readonly client: ShardsnapClient,
    private readonly ratePerSec: number,
    private readonly keys: number,
    valueSize: number,
  ) {
    this.values = Array.from({ length: 16 }, () => randomBytes(valueSize));
  }

  start(): void {
    this.running = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
  }

  /** Latencies of the writes sent in [from, to). */
  between(from: number, to: number): number[] {
    const out: number[] = [];
    for (const s of this.samples) if (s.at >= from && s.at < to) out.push(s.ms);
    return out;
  }

  private async loop(): Promise<void> {
    const interval = 1000 / this.ratePerSec;
    let due = performance.now();
    while (!this.stopped) {
      const now = performance.now();
      if (now - due > WRITER_LATE_MS) {
        const missed = Math.floor((now - due) / interval);
        this.skipped += missed;
        due += missed * interval;
      }
      while (due <= now) {
        if (this.inFlight >= MAX_IN_FLIGHT) this.skipped++;
        else this.send();
        due += interval;
      }
      await sleep(Math.max(1, due - performance.now()));
    }
    const deadline = performance.now() + 30_000;
    while (this.inFlight > 0 && performance.now() < deadline) await sleep(5);
  }

  private send(): void {
    // xorshift32 over the snapshot's keys.
    this.state ^= this.state << 13;
    this.state ^= this.state >>> 17;
    this.state ^= this.state << 5;
    this.state >>>= 0;
    const key = keyName(this.state % this.keys);
    const value = this.values[this.state & 15] as Buffer;
    const at = performance.now();
    this.inFlight++;
    this.client.write({ mutations: [{ op: 'set', key, value, expireAtMs: 0 }] }).then(
      () => {
        this.inFlight--;
        this.samples.push({ at, ms: performance.now() - at });
      },
      (error: unknown) => {
        this.inFlight--;
        this.errors++;
        this.firstError ??= error instanceof Error ? error.message : String(error);
      },
    );
  }
}

function scrapeMetrics(port: number): Promise<string> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/metrics', timeout: 2_000 }, (r) => {
      const parts: Buffer[] = [];
      r.on('data', (p: Buffer) => parts.push(p));
      r.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
      r.on('error', () => resolve(''));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(''));
  });
}

interface NodeMetricsSample {
  /** The recv rate limit in force, bytes/s; 0 = unlimited; NaN when unread. */
  recvLimit: number;
  /** Cumulative counts of the node's Write latency histogram, by upper bound in seconds. */
  writeBuckets: Array<[number, number]>;
}

function parseMetrics(text: string): NodeMetricsSample {
  let recvLimit = NaN;
  const writeBuckets: Array<[number, number]> = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('shardsnap_transfer_rate_limit_bytes{') && line.includes('"recv"')) {
      recvLimit = Number(line.slice(line.lastIndexOf(' ') + 1));
    } else if (line.startsWith('shardsnap_write_seconds_bucket{')) {
      const le = /le="([^"]+)"/.exec(line)?.[1];
      if (le !== undefined) {
        writeBuckets.push([
          le === '+Inf' ? Infinity : Number(le),
          Number(line.slice(line.lastIndexOf(' ') + 1)),
        ]);
      }
    }
  }
  writeBuckets.sort((a, b) => a[0] - b[0]);
  return { recvLimit, writeBuckets };
}

/** Writes the node timed between two scrapes, and the upper bound of their p99 (ms). */
function nodeWrites(
  before: NodeMetricsSample,
  after: NodeMetricsSample,
): { count: number; p99UpperMs: number } {
  const delta = after.writeBuckets.map(
    ([le, n]) => [le, n - (before.writeBuckets.find(([b]) => b === le)?.[1] ?? 0)] as const,
  );
  const count = delta.at(-1)?.[1] ?? 0;
  if (count <= 0) return { count: 0, p99UpperMs: NaN };
  const rank = Math.ceil(0.99 * count);
  const bucket = delta.find(([, n]) => n >= rank);
  return { count, p99UpperMs: (bucket?.[0] ?? Infinity) * 1000 };
}

/** One point of a pull's time series: the interval ending `t` ms after the pull started. */
interface SeriesPoint {
  t: number;
  mibPerSec: number;
  /** The node's recv limit at `t`, MiB/s; Infinity = unlimited. */
  limitMiB: number;
  clientWrites: number;
  clientP99Ms: number;
  nodeWrites: number;
  nodeP99UpperMs: number;
}

interface PullRun {
  label: string;
  flags: string[];
  idle: { writes: number; p50Ms: number; p99Ms: number };
  completed: boolean;
  ms: number;
  bytes: number;
  mibPerSec: number;
  writes: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  /** The node's own view of the same writes (histogram upper bound of p99), ms. */
  nodeWrites: number;
  nodeP99UpperMs: number;
  skipped: number;
  errors: number;
  /** The bench's own event-loop delay during the pull (its share of the write latencies), ms. */
  benchLoopDelay: { p99Ms: number; maxMs: number };
  /** The node's recv limit when the pull started, MiB/s (Infinity: unlimited). */
  limitAtStartMiB: number;
  series: SeriesPoint[];
}

/** The gauge's bytes/s in MiB/s; its 0 means unlimited. */
const limitMiB = (bytes: number): number => (bytes === 0 ? Infinity : bytes / MiB);

const limitText = (mib: number): string =>
  Number.isNaN(mib) ? '?' : mib === Infinity ? 'unlimited' : `${mib.toFixed(1)}`;

/**
 * A fresh empty node started with `flags` takes steady writes for `idleMs`, then pulls
 * the seeded snapshot from `source` under them (cancelled after `maxMs`).
 */
async function pullUnderWrites(
  config: BenchConfig,
  tmp: string,
  seeded: Seeded,
  source: NodeProcess,
  options: { label: string; flags: string[]; idleMs: number; maxMs: number },
): Promise<PullRun> {
  collectGarbage();
  const metricsPort = await freePort();
  const name = `bench-l-${options.label.replace(/[^a-z0-9]+/gi, '-').toLowerCase()}`;
  const target = await startNodeProcess({
    name,
    dataDir: join(tmp, name),
    extraArgs: [...options.flags, '--metrics-listen', `127.0.0.1:${metricsPort}`],
  });
  const writerClient = new ShardsnapClient(target.address);
  const pullClient = new ShardsnapClient(target.address);
  const writer = new SteadyWriter(
    writerClient,
    config.limitsWriteRate,
    seeded.keys,
    config.valueSize,
  );
  try {
    await writerClient.stats();
    const writesFrom = performance.now();
    writer.start();
    await sleep(options.idleMs);
    const loopDelay = monitorEventLoopDelay({ resolution: 5 });
    loopDelay.enable();
    const pullStart = performance.now();
    const idle = writer.between(writesFrom + WARMUP_MS, pullStart);

    let bytes = 0;
    let completed = false;
    let keysInstalled = NaN;
    const points: Array<{ t: number; bytes: number; metrics: NodeMetricsSample }> = [];
    points.push({ t: 0, bytes: 0, metrics: parseMetrics(await scrapeMetrics(metricsPort)) });
    let sampling = true;
    const sampler = (async () => {
      let next = pullStart + SAMPLE_MS;
      while (sampling) {
        await sleep(Math.max(1, next - performance.now()));
        next += SAMPLE_MS;
        if (!sampling) break;
        const at = performance.now();
        const seen = bytes;
        const metrics = parseMetrics(await scrapeMetrics(metricsPort));
        points.push({ t: at - pullStart, bytes: seen, metrics });
      }
    })();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), options.maxMs);
    let pullEnd = pullStart;
    try {
      for await (const progress of pullClient.pull(
        { source: source.address, snapshotId: seeded.id },
        { signal: abort.signal },
      )) {
        bytes = Number(progress.bytesReceived);
        if (progress.done) {
          completed = true;
          keysInstalled = Number(progress.result?.keysInstalled ?? NaN);
          break;
        }
      }
    } catch (error) {
      if (!abort.signal.aborted) throw error;
    } finally {
      clearTimeout(timer);
      pullEnd = performance.now();
      sampling = false;
      loopDelay.disable();
    }
    await sampler;
    points.push({
      t: pullEnd - pullStart,
      bytes: completed ? seeded.bytes : bytes,
      metrics: parseMetrics(await scrapeMetrics(metricsPort)),
    });
    await writer.stop();
    if (completed && keysInstalled !== seeded.keys) {
      throw new Error(
        `${options.label}: pull installed ${keysInstalled} keys, expected ${seeded.keys}`,
      );
    }
    if (writer.errors > 0.01 * writer.samples.length) {
      throw new Error(
        `${options.label}: ${writer.errors} writes failed (first: ${writer.firstError ?? '?'})`,
      );
    }
    const during = writer.between(pullStart, pullEnd);
    const ms = pullEnd - pullStart;
    const moved = completed ? seeded.bytes : bytes;
    const series: SeriesPoint[] = [];
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1] as (typeof points)[number];
      const b = points[i] as (typeof points)[number];
      const writes = writer.between(pullStart + a.t, pullStart + b.t);
      const node = nodeWrites(a.metrics, b.metrics);
      series.push({
        t: b.t,
        mibPerSec: mibPerSecond(b.bytes - a.bytes, b.t - a.t),
        limitMiB: limitMiB(b.metrics.recvLimit),
        clientWrites: writes.length,
        clientP99Ms: percentile(writes, 99),
        nodeWrites: node.count,
        nodeP99UpperMs: node.p99UpperMs,
      });
    }
    const whole = nodeWrites(
      (points[0] as (typeof points)[number]).metrics,
      (points.at(-1) as (typeof points)[number]).metrics,
    );
    const run: PullRun = {
      label: options.label,
      flags: options.flags,
      idle: {
        writes: idle.length,
        p50Ms: percentile(idle, 50),
        p99Ms: percentile(idle, 99),
      },
      completed,
      ms,
      bytes: moved,
      mibPerSec: mibPerSecond(moved, ms),
      writes: during.length,
      p50Ms: percentile(during, 50),
      p99Ms: percentile(during, 99),
      p999Ms: percentile(during, 99.9),
      maxMs: during.length > 0 ? Math.max(...during) : NaN,
      nodeWrites: whole.count,
      nodeP99UpperMs: whole.p99UpperMs,
      skipped: writer.skipped,
      errors: writer.errors,
      benchLoopDelay: {
        p99Ms: loopDelay.percentile(99) / 1e6,
        maxMs: loopDelay.max / 1e6,
      },
      limitAtStartMiB: limitMiB((points[0] as (typeof points)[number]).metrics.recvLimit),
      series,
    };
    log(
      `  ${run.label}: idle p99 ${formatMs(run.idle.p99Ms)} (${run.idle.writes} writes); ` +
        `${completed ? 'pulled' : 'cancelled after'} ${formatBytes(moved)} in ${formatMs(ms)} = ${fixed(run.mibPerSec, 1)} MiB/s; ` +
        `${run.writes} writes: p50 ${formatMs(run.p50Ms)}, p99 ${formatMs(run.p99Ms)}, max ${formatMs(run.maxMs)}; ` +
        `node's own p99 ≤ ${formatMs(run.nodeP99UpperMs)} (${run.nodeWrites} writes)` +
        `; bench loop delay p99 ${formatMs(run.benchLoopDelay.p99Ms)}, max ${formatMs(run.benchLoopDelay.maxMs)}` +
        (run.skipped > 0 ? `; ${run.skipped} writes skipped` : ''),
    );
    return run;
  } finally {
    await writer.stop().catch(() => undefined);
    writerClient.close();
    pullClient.close();
    await target.stop();
    await removeDir(target.dataDir);
  }
}

function logSeries(run: PullRun): void {
  log(
    `  ${run.label}, every ${SAMPLE_MS} ms: t s | MiB/s | limit MiB/s | client writes, p99 | node writes, p99 ≤`,
  );
  for (const p of run.series) {
    log(
      `    ${fixed(p.t / 1000, 1).padStart(5)} | ${fixed(p.mibPerSec, 1).padStart(6)} | ${limitText(p.limitMiB).padStart(9)} | ` +
        `${String(p.clientWrites).padStart(4)}, ${formatMs(p.clientP99Ms).padStart(7)} | ` +
        `${String(p.nodeWrites).padStart(4)}, ${formatMs(p.nodeP99UpperMs)}`,
    );
  }
}

/** The limits in force during a run, in order, repeats collapsed: `unlimited → 128.0 → 64.0`. */
function limitPath(run: PullRun): string {
  const path: string[] = [limitText(run.limitAtStartMiB)];
  for (const p of run.series) {
    const text = limitText(p.limitMiB);
    if (path.at(-1) !== text) path.push(text);
  }
  return path.length > 12
    ? `${path.slice(0, 6).join(' → ')} … ${path.slice(-5).join(' → ')}`
    : path.join(' → ');
}

interface AdaptiveResult {
  /** Bytes of the pulled artifact. */
  bytes: number;
  targetMs: number;
  free: PullRun;
  adaptive: PullRun;
  /**
   * Diagnostic: adaptive with the lowest target the flag takes (1 ms), which the node's
   * own view of its writes does cross: shows what the controller does once it acts.
   */
  lowest: PullRun;
  fixedRuns: Array<{ rateMiB: number; run: PullRun }>;
  /** The fastest fixed rate whose write p99 stayed ≤ T, if any. */
  chosen: { rateMiB: number; run: PullRun } | undefined;
}

async function adaptiveRuns(
  config: BenchConfig,
  tmp: string,
  seeded: Seeded,
  source: NodeProcess,
): Promise<AdaptiveResult> {
  const free = await pullUnderWrites(config, tmp, seeded, source, {
    label: 'no limit',
    flags: [],
    idleMs: FIRST_IDLE_MS,
    maxMs: OPEN_RUN_MAX_MS,
  });
  logSeries(free);
  const targetMs = Math.max(2, Math.ceil(TARGETS.limitsTargetOverIdleP99 * free.idle.p99Ms));
  log(
    `  target T = ${targetMs} ms (${TARGETS.limitsTargetOverIdleP99} × the idle p99 ${formatMs(free.idle.p99Ms)}, rounded up)`,
  );
  const adaptive = await pullUnderWrites(config, tmp, seeded, source, {
    label: `adaptive T=${targetMs}ms`,
    flags: ['--snapshot-latency-target-ms', String(targetMs)],
    idleMs: IDLE_MS,
    maxMs: OPEN_RUN_MAX_MS,
  });
  logSeries(adaptive);
  const lowest = await pullUnderWrites(config, tmp, seeded, source, {
    label: 'adaptive T=1ms (diagnostic)',
    flags: ['--snapshot-latency-target-ms', '1'],
    idleMs: IDLE_MS,
    maxMs: OPEN_RUN_MAX_MS,
  });
  logSeries(lowest);
  const fixedRuns: AdaptiveResult['fixedRuns'] = [];
  let chosen: AdaptiveResult['chosen'];
  for (const rateMiB of FIXED_RATES_MIB) {
    if (isStopping()) break;
    const run = await pullUnderWrites(config, tmp, seeded, source, {
      label: `fixed ${rateMiB}MiB`,
      flags: ['--max-recv-rate', `${rateMiB}MiB`],
      idleMs: IDLE_MS,
      maxMs: FIXED_RUN_MAX_MS,
    });
    fixedRuns.push({ rateMiB, run });
    if (run.p99Ms <= targetMs) {
      chosen = { rateMiB, run };
      break;
    }
  }
  return { bytes: seeded.bytes, targetMs, free, adaptive, lowest, fixedRuns, chosen };
}

const runSummary = (run: PullRun): string =>
  `${fixed(run.mibPerSec, 1)} MiB/s${run.completed ? '' : ' (cancelled)'}, ${run.writes} writes p99 ${formatMs(run.p99Ms)} ` +
  `(idle ${formatMs(run.idle.p99Ms)}), node's own p99 ≤ ${formatMs(run.nodeP99UpperMs)}, ` +
  `bench loop delay p99 ${formatMs(run.benchLoopDelay.p99Ms)}`;

function runDetails(run: PullRun): Record<string, unknown> {
  return { ...run };
}

/** Limit cuts seen between samples of a run. */
const cutsOf = (run: PullRun): number =>
  run.series.filter((p, i) => i > 0 && p.limitMiB < (run.series[i - 1] as SeriesPoint).limitMiB)
    .length;

function adaptiveRow(result: AdaptiveResult, config: BenchConfig): Row {
  const { targetMs, free, adaptive, lowest } = result;
  const clientOver = adaptive.series.filter((p) => p.clientP99Ms > targetMs).length;
  const nodeOver = adaptive.series.filter((p) => p.nodeP99UpperMs > targetMs).length;
  return {
    n: 28,
    name: LIMITS_ROWS[28]?.[0] ?? '',
    value: adaptive.p99Ms,
    valueText: `p99 ${formatMs(adaptive.p99Ms)}`,
    baseline: targetMs,
    baselineText: `T = ${targetMs} ms`,
    ratio: adaptive.p99Ms / targetMs,
    ratioText: fixed(adaptive.p99Ms / targetMs),
    target: LIMITS_ROWS[28]?.[1] ?? '',
    verdict: verdict(adaptive.p99Ms <= targetMs),
    note:
      `${formatBytes(result.bytes)} full snapshot pulled into an empty memory node under ${config.limitsWriteRate} single-key SETs/s (open loop, timed in the bench); ` +
      `T = ${TARGETS.limitsTargetOverIdleP99} × idle p99; no limit: ${runSummary(free)}; ` +
      `adaptive: ${runSummary(adaptive)}; limit over the pull (MiB/s): ${limitPath(adaptive)}; ` +
      `${cutsOf(adaptive)} cut(s); of ${adaptive.series.length} ${SAMPLE_MS} ms intervals, ${clientOver} had a client p99 above T, ` +
      `${nodeOver} a node-side p99 above T; diagnostic T = 1 ms: ${runSummary(lowest)}, limit ${limitPath(lowest)}, ${cutsOf(lowest)} cut(s)`,
    details: {
      targetMs,
      free: runDetails(free),
      adaptive: runDetails(adaptive),
      lowestTarget: runDetails(lowest),
    },
  };
}

function speedupRow(result: AdaptiveResult): Row {
  const { targetMs, adaptive, fixedRuns, chosen } = result;
  const tried = fixedRuns
    .map(
      ({ rateMiB, run }) =>
        `${rateMiB}: ${fixed(run.mibPerSec, 1)} MiB/s p99 ${formatMs(run.p99Ms)}`,
    )
    .join('; ');
  const ratio = chosen ? adaptive.mibPerSec / chosen.run.mibPerSec : NaN;
  const pass =
    chosen !== undefined && ratio >= TARGETS.limitsAdaptiveSpeedup && adaptive.p99Ms <= targetMs;
  return {
    n: 29,
    name: LIMITS_ROWS[29]?.[0] ?? '',
    value: adaptive.mibPerSec,
    valueText: `${fixed(adaptive.mibPerSec, 1)} MiB/s`,
    baseline: chosen?.run.mibPerSec ?? null,
    baselineText: chosen
      ? `${fixed(chosen.run.mibPerSec, 1)} MiB/s (${chosen.rateMiB}MiB)`
      : 'none ≤ T',
    ratio: Number.isFinite(ratio) ? ratio : null,
    ratioText: Number.isFinite(ratio) ? `${fixed(ratio)}×` : '-',
    target: LIMITS_ROWS[29]?.[1] ?? '',
    verdict: verdict(pass),
    note:
      `adaptive (T = ${targetMs} ms): ${fixed(adaptive.mibPerSec, 1)} MiB/s at write p99 ${formatMs(adaptive.p99Ms)}` +
      `${adaptive.p99Ms > targetMs ? ' (above T: the comparison does not hold)' : ''}; ` +
      `fixed --max-recv-rate tried, descending, until p99 ≤ T (each pull cancelled after ${FIXED_RUN_MAX_MS / 1000} s) — ${tried}` +
      (chosen ? '' : '; none kept p99 ≤ T'),
    details: {
      targetMs,
      adaptive: { mibPerSec: adaptive.mibPerSec, p99Ms: adaptive.p99Ms },
      fixed: fixedRuns.map(({ rateMiB, run }) => ({ rateMiB, ...runDetails(run) })),
      chosenRateMiB: chosen?.rateMiB ?? null,
    },
  };
}

// ---------------------------------------------------------------------------- 30

async function tlsRow(
  config: BenchConfig,
  tmp: string,
  seeded: Seeded,
  plain: NodeProcess,
): Promise<Row> {
  const certs = await makeCertificates(join(tmp, 'pki'));
  const node = await startNodeProcess({
    name: 'bench-l-tls',
    dataDir: await dataDirWithSnapshot(tmp, 'tls', seeded),
    extraArgs: ['--tls-cert', certs.cert, '--tls-key', certs.key],
  });
  const out = join(tmp, 'fetched.snap');
  try {
    const tls = (): Promise<CliTransfer> =>
      cliFetch(config, seeded, node, out, ['--tls-ca', certs.ca]);
    const clear = (): Promise<CliTransfer> => cliFetch(config, seeded, plain, out);
    // One untimed run of each, then alternating which goes first.
    await clear();
    await tls();
    const result = { tls: [] as CliTransfer[], clear: [] as CliTransfer[] };
    for (let run = 0; run < config.runs && !isStopping(); run++) {
      const order = run % 2 === 0 ? (['clear', 'tls'] as const) : (['tls', 'clear'] as const);
      for (const side of order) result[side].push(await (side === 'tls' ? tls() : clear()));
      const t = result.tls.at(-1) as CliTransfer;
      const c = result.clear.at(-1) as CliTransfer;
      log(
        `  TLS run ${run + 1}: TLS ${fixed(mibPerSecond(seeded.bytes, t.ms), 0)} MiB/s (CLI ${fixed(t.clientCpu)} s, node ${fixed(t.nodeCpu)} s CPU), ` +
          `plaintext ${fixed(mibPerSecond(seeded.bytes, c.ms), 0)} MiB/s (CLI ${fixed(c.clientCpu)} s, node ${fixed(c.nodeCpu)} s CPU)`,
      );
    }
    const gib = seeded.bytes / GiB;
    const perGiB = (runs: CliTransfer[], side: 'clientCpu' | 'nodeCpu'): number =>
      median(runs.map((r) => r[side])) / gib;
    const value = mibPerSecond(seeded.bytes, median(result.tls.map((r) => r.ms)));
    const baseline = mibPerSecond(seeded.bytes, median(result.clear.map((r) => r.ms)));
    const ratio = value / baseline;
    return {
      n: 30,
      name: LIMITS_ROWS[30]?.[0] ?? '',
      value,
      valueText: `${fixed(value, 1)} MiB/s`,
      baseline,
      baselineText: `${fixed(baseline, 1)} MiB/s`,
      ratio,
      ratioText: fixed(ratio),
      target: LIMITS_ROWS[30]?.[1] ?? '',
      verdict: 'INFO',
      note:
        `${formatBytes(seeded.bytes)} artifact, \`shardsnap fetch --id\` (one stream; --tls-ca for TLS, EC P-256 certificate), ` +
        `two nodes alike but for --tls-cert/--tls-key; time = the CLI's elapsedMs (handshake included); per run TLS ` +
        `${result.tls.map((r) => fixed(mibPerSecond(seeded.bytes, r.ms), 0)).join('/')}, plaintext ` +
        `${result.clear.map((r) => fixed(mibPerSecond(seeded.bytes, r.ms), 0)).join('/')} MiB/s; CPU s/GiB: ` +
        `TLS CLI ${fixed(perGiB(result.tls, 'clientCpu'))} + node ${fixed(perGiB(result.tls, 'nodeCpu'))}, ` +
        `plaintext CLI ${fixed(perGiB(result.clear, 'clientCpu'))} + node ${fixed(perGiB(result.clear, 'nodeCpu'))}`,
      details: { bytes: seeded.bytes, ...result },
    };
  } finally {
    await node.stop();
    await removeDir(node.dataDir);
  }
}

// ----------------------------------------------------------------------- section

export async function limitsSuite(
  config: BenchConfig,
  tmp: string,
  attempt: Attempt,
): Promise<void> {
  try {
    let ready: Seeded;
    let plain: NodeProcess;
    try {
      ready = await seed(config, tmp);
      plain = await startNodeProcess({
        name: 'bench-l-source',
        dataDir: await dataDirWithSnapshot(tmp, 'source', ready),
      });
      log(`source node (memory, no limits, pid ${plain.pid}) on ${plain.address}`);
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const n of Object.keys(LIMITS_ROWS).map(Number)) {
        await attempt(n, () => Promise.reject(failure));
      }
      return;
    }
    const s = ready;
    const source = plain;
    await attempt(25, () => sendRateRow(config, tmp, s, source, 25));
    await attempt(26, () => sendRateRow(config, tmp, s, source, 26));
    await attempt(27, () => recvRateRow(config, tmp, s, source));
    let adaptive: AdaptiveResult | undefined;
    await attempt(28, async () => {
      adaptive = await adaptiveRuns(config, tmp, s, source);
      return adaptiveRow(adaptive, config);
    });
    await attempt(29, () => {
      if (!adaptive) return Promise.reject(new Error('the runs of row 28 did not complete'));
      return Promise.resolve(speedupRow(adaptive));
    });
    await attempt(30, () => tlsRow(config, tmp, s, source));
  } finally {
    await stopTrackedProcesses();
    await removeDir(tmp);
  }
}
