/**
 * A real single-member etcd (the system's `etcd`, 3.4 or newer) on free loopback ports with
 * a temp data dir, for tests and benchmarks that need the cluster's topology store.
 * Assertions read keys back with `etcdctl`, not with the client under test, so a bug in
 * that client cannot hide itself.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { freePort } from './limits';

export interface TestEtcd {
  /** `127.0.0.1:PORT`: the client URL without its scheme, what `--etcd` takes. */
  endpoints: string;
  dataDir: string;
  /** The pid of the running etcd (of the latest start after a restart). */
  pid: number;
  /** SIGTERM, then SIGKILL after 5 s; resolves once the process has exited. */
  stop(): Promise<void>;
  /** SIGKILL; resolves once the process has exited. */
  kill(): Promise<void>;
  /** Stops it if it runs, then starts it again on the same ports and data dir. */
  restart(): Promise<void>;
  /** Kills it and removes its data dir; what a test's teardown does. */
  close(): Promise<void>;
  /** The value of `key` (UTF-8), read with etcdctl; undefined when absent. */
  get(key: string): Promise<string | undefined>;
  /** Every key under `prefix` and its value (UTF-8), read with etcdctl. */
  getPrefix(prefix: string): Promise<Map<string, string>>;
  /** Writes `key` with etcdctl. */
  put(key: string, value: string): Promise<void>;
  /** What etcd wrote to stderr lately (its warnings and errors). */
  stderr(): string;
}

const READY_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const STDERR_LIMIT = 64 * 1024;
const ETCDCTL_TIMEOUT_MS = 10_000;

/** Every etcd started here that has not exited: killed when the process exits. */
const running = new Map<number, { child: ChildProcess; dataDir: string; owned: boolean }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test worker that ends early (a failed assertion, a timeout) must not leave etcd behind.
  process.on('exit', () => {
    for (const [pid, entry] of running) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      if (entry.owned) rmSync(entry.dataDir, { recursive: true, force: true });
    }
    running.clear();
  });
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess, ms: number): Promise<boolean> {
  if (!alive(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, ms);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** True once etcd's /health says so (it has a leader and serves reads). */
function healthy(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = httpGet(
      { host: '127.0.0.1', port, path: '/health', agent: false, timeout: 1_000 },
      (response) => {
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (piece: string) => (body += piece));
        response.on('end', () => resolve(response.statusCode === 200 && /"true"/.test(body)));
        response.on('error', () => resolve(false));
      },
    );
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Ports {
  client: number;
  peer: number;
}

async function twoFreePorts(): Promise<Ports> {
  const client = await freePort();
  let peer = await freePort();
  while (peer === client) peer = await freePort();
  return { client, peer };
}

function etcdArgs(name: string, dataDir: string, ports: Ports): string[] {
  const clientUrl = `http://127.0.0.1:${ports.client}`;
  const peerUrl = `http://127.0.0.1:${ports.peer}`;
  return [
    '--name',
    name,
    '--data-dir',
    dataDir,
    '--listen-client-urls',
    clientUrl,
    '--advertise-client-urls',
    clientUrl,
    '--listen-peer-urls',
    peerUrl,
    '--initial-advertise-peer-urls',
    peerUrl,
    '--initial-cluster',
    `${name}=${peerUrl}`,
    '--initial-cluster-state',
    'new',
    '--logger',
    'zap',
    '--log-outputs',
    'stderr',
    '--log-level',
    'warn',
  ];
}

class EtcdProcess implements TestEtcd {
  readonly endpoints: string;
  pid = 0;
  private child: ChildProcess | undefined;
  private output = '';
  private closed = false;

  constructor(
    readonly dataDir: string,
    private readonly ports: Ports,
    private readonly name: string,
    private readonly ownsDataDir: boolean,
  ) {
    this.endpoints = `127.0.0.1:${ports.client}`;
  }

  stderr(): string {
    return this.output;
  }

  /** Spawns etcd and waits until it is healthy; on failure it is killed and the error names why. */
  async start(): Promise<void> {
    if (this.closed) throw new Error('this etcd was closed');
    const child = spawn('etcd', etcdArgs(this.name, this.dataDir, this.ports), {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (piece: string) => {
      this.output = (this.output + piece).slice(-STDERR_LIMIT);
    });
    if (child.pid === undefined) {
      const error = await spawnError;
      throw new Error(
        `could not start etcd (${error.message}); it comes with the etcd-server package`,
      );
    }
    const pid = child.pid;
    this.child = child;
    this.pid = pid;
    installExitHook();
    running.set(pid, { child, dataDir: this.dataDir, owned: this.ownsDataDir });
    child.once('exit', () => running.delete(pid));

    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!alive(child)) {
        const how = child.signalCode ?? `code ${String(child.exitCode)}`;
        throw new Error(`etcd exited (${how}) before it was ready:\n${this.output}`);
      }
      if (await healthy(this.ports.client)) return;
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(
          `etcd on ${this.endpoints} not healthy within ${READY_TIMEOUT_MS} ms:\n${this.output}`,
        );
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !alive(child)) return;
    child.kill('SIGTERM');
    if (!(await exited(child, STOP_GRACE_MS))) {
      child.kill('SIGKILL');
      await exited(child, STOP_GRACE_MS);
    }
  }

  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !alive(child)) return;
    child.kill('SIGKILL');
    await exited(child, STOP_GRACE_MS);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.kill();
    if (this.ownsDataDir) await rm(this.dataDir, { recursive: true, force: true });
  }

  private etcdctl(args: readonly string[]): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        'etcdctl',
        // Short timeouts: a stopped etcd should fail an assertion at once, not in 5 s.
        ['--endpoints', this.endpoints, '--dial-timeout', '1s', '--command-timeout', '3s', ...args],
        {
          env: { ...process.env, ETCDCTL_API: '3' },
          timeout: ETCDCTL_TIMEOUT_MS,
          maxBuffer: 256 * 1024 * 1024,
        },
        (error, stdout, stderr) => {
          if (error)
            reject(new Error(`etcdctl ${args.join(' ')}: ${error.message}\n${stderr}`.trim()));
          else resolve(stdout);
        },
      );
    });
  }

  /** `get -w json` keeps keys and values exact (base64), whatever bytes they hold. */
  private async range(args: readonly string[]): Promise<Map<string, string>> {
    const text = await this.etcdctl(['get', '-w', 'json', ...args]);
    const reply = JSON.parse(text) as { kvs?: Array<{ key: string; value?: string }> };
    const out = new Map<string, string>();
    for (const kv of reply.kvs ?? [])
      out.set(
        Buffer.from(kv.key, 'base64').toString('utf8'),
        Buffer.from(kv.value ?? '', 'base64').toString('utf8'),
      );
    return out;
  }

  async get(key: string): Promise<string | undefined> {
    return (await this.range(['--', key])).get(key);
  }

  getPrefix(prefix: string): Promise<Map<string, string>> {
    // etcdctl reads an empty key with --prefix as "every key".
    return this.range(['--prefix', '--', prefix]);
  }

  async put(key: string, value: string): Promise<void> {
    const out = await this.etcdctl(['put', '--', key, value]);
    if (out.trim() !== 'OK') throw new Error(`etcdctl put ${key}: ${out.trim()}`);
  }
}

/**
 * Starts a single-member etcd on free loopback ports and waits until it is healthy. With
 * `t` it is killed and its data dir removed when the test ends; without it (benchmarks)
 * the caller calls close(). Either way it is killed if this process exits first.
 */
export async function startEtcd(t?: ExecutionContext): Promise<TestEtcd> {
  const dataDir = await mkdtemp(join(tmpdir(), 'shardsnap-etcd-'));
  let current: EtcdProcess | undefined;
  if (t)
    t.teardown(async () => {
      await current?.close();
      await rm(dataDir, { recursive: true, force: true });
    });
  let lastError: unknown;
  // A port that was free a moment ago may be taken by the time etcd binds it: new ports.
  for (let attempt = 0; attempt < 3; attempt++) {
    current = new EtcdProcess(dataDir, await twoFreePorts(), 'test-etcd', true);
    try {
      await current.start();
      return current;
    } catch (error) {
      lastError = error;
      await current.kill();
      if (!/address already in use/.test(current.stderr())) break;
      // A half-made member would refuse the new peer URL.
      await rm(dataDir, { recursive: true, force: true });
      await mkdir(dataDir, { mode: 0o700 });
    }
  }
  await rm(dataDir, { recursive: true, force: true });
  throw lastError;
}
