/**
 * Baseline of measurement 2: the same keys and value bytes in a `redis-server` on a free
 * loopback port (no persistence, diskless replication sync), loaded by RESP mass
 * insertion through `redis-cli --pipe`, then dumped with `redis-cli --rdb FILE` — which
 * asks the server for a fresh RDB and streams it to a file, Redis's create + fetch.
 */
import { spawn, spawnSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import * as net from 'node:net';
import { syntheticBatches } from '../src/client/synthetic';
import { stopProcess, trackProcess } from './cleanup';
import { Tail } from './node-process';
import { sleep, withTimeout } from './util';

export interface RedisTools {
  server: string;
  cli: string;
  version: string;
}

/** The versions of redis-server and redis-cli, or why they cannot be used. */
export function findRedis(): RedisTools | { missing: string } {
  const server = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (server.error || server.status !== 0) return { missing: 'redis-server not found on PATH' };
  const cli = spawnSync('redis-cli', ['--version'], { encoding: 'utf8' });
  if (cli.error || cli.status !== 0) return { missing: 'redis-cli not found on PATH' };
  return { server: 'redis-server', cli: 'redis-cli', version: server.stdout.trim() };
}

export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Sends one command in RESP and returns the first reply line. */
function redisCommand(port: number, args: string[], timeoutMs = 2_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis ${args[0]} timed out`));
    }, timeoutMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('data', (piece: Buffer) => {
      reply += piece.toString('latin1');
      const end = reply.indexOf('\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        socket.destroy();
        resolve(reply.slice(0, end));
      }
    });
    socket.write(
      `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`,
    );
  });
}

export interface RedisServer {
  pid: number;
  port: number;
  stderr: Tail;
  stop(): Promise<void>;
  command(args: string[]): Promise<string>;
}

/** `extraArgs`: more `redis-server` options, e.g. `['--repl-diskless-load', 'on-empty-db']`. */
export async function startRedis(
  dir: string,
  extraArgs: readonly string[] = [],
): Promise<RedisServer> {
  const port = await freeLoopbackPort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--repl-diskless-sync',
    'yes',
    '--repl-diskless-sync-delay',
    '0',
    '--dir',
    dir,
    '--daemonize',
    'no',
    ...extraArgs,
  ];
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess('redis-server', child);
  const output = new Tail();
  child.stdout?.on('data', (p: Buffer) => output.push(p));
  child.stderr?.on('data', (p: Buffer) => output.push(p));
  const server: RedisServer = {
    pid,
    port,
    stderr: output,
    stop: () => stopProcess(pid),
    command: (a) => redisCommand(port, a),
  };
  try {
    for (let attempt = 0; ; attempt++) {
      if (child.exitCode !== null)
        throw new Error(`redis-server exited with ${child.exitCode}: ${output.toString()}`);
      const reply = await redisCommand(port, ['PING']).catch((e: Error) => e.message);
      if (reply === '+PONG') return server;
      if (attempt >= 200)
        throw new Error(
          `redis-server on port ${port} did not answer PING: ${reply}\n${output.toString()}`,
        );
      await sleep(50);
    }
  } catch (error) {
    await stopProcess(pid);
    throw error;
  }
}

function respSet(key: Buffer, value: Buffer): Buffer[] {
  return [
    Buffer.from(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n`),
    key,
    Buffer.from(`\r\n$${value.length}\r\n`),
    value,
    Buffer.from('\r\n'),
  ];
}

/** Loads the synthetic string dataset with `redis-cli --pipe`; returns the reply count. */
export async function loadRedis(
  server: RedisServer,
  options: { keys: number; valueSize: number; seed: number },
  timeoutMs: number,
): Promise<{ replies: number; ms: number }> {
  const started = performance.now();
  const child = spawn('redis-cli', ['-p', String(server.port), '--pipe'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const pid = trackProcess('redis-cli --pipe', child);
  const output = new Tail();
  child.stdout?.on('data', (p: Buffer) => output.push(p));
  child.stderr?.on('data', (p: Buffer) => output.push(p));
  const exited = new Promise<number | null>((resolve) =>
    child.once('close', (code) => resolve(code)),
  );
  try {
    const stdin = child.stdin;
    if (!stdin) throw new Error('redis-cli --pipe has no stdin');
    let broken: Error | undefined;
    let closed = false;
    stdin.on('error', (error) => (broken = error));
    child.once('close', () => (closed = true));
    const drained = (): Promise<void> =>
      new Promise<void>((resolve) => {
        const done = (): void => {
          stdin.off('drain', done);
          child.off('close', done);
          resolve();
        };
        stdin.once('drain', done);
        child.once('close', done);
      });
    const feed = async (): Promise<void> => {
      for (const batch of syntheticBatches({
        keys: options.keys,
        valueSize: options.valueSize,
        types: 'string',
        seed: options.seed,
      })) {
        if (broken) throw broken;
        if (closed) throw new Error(`redis-cli --pipe exited early: ${output.toString()}`);
        const parts: Buffer[] = [];
        for (const m of batch) {
          if (m.op !== 'set') throw new Error(`unexpected synthetic op ${m.op}`);
          parts.push(...respSet(m.key, m.value));
        }
        if (!stdin.write(Buffer.concat(parts))) {
          await drained();
        }
      }
      stdin.end();
    };
    await withTimeout(feed(), timeoutMs, 'redis mass insertion');
    const code = await withTimeout(exited, timeoutMs, 'redis-cli --pipe');
    const text = output.toString();
    const match = /errors:\s*(\d+),\s*replies:\s*(\d+)/.exec(text);
    if (code !== 0 || !match || match[1] !== '0')
      throw new Error(`redis-cli --pipe failed (exit ${code}): ${text}`);
    return { replies: Number(match[2]), ms: performance.now() - started };
  } finally {
    await stopProcess(pid, 2_000);
  }
}

/** `redis-cli -p PORT --rdb FILE`: time from spawn to exit, and the RDB's size. */
export async function fetchRdb(
  server: RedisServer,
  out: string,
  timeoutMs: number,
): Promise<{ ms: number; bytes: number }> {
  const started = performance.now();
  const child = spawn('redis-cli', ['-p', String(server.port), '--rdb', out], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = trackProcess('redis-cli --rdb', child);
  const output = new Tail();
  child.stdout?.on('data', (p: Buffer) => output.push(p));
  child.stderr?.on('data', (p: Buffer) => output.push(p));
  try {
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c))),
      timeoutMs,
      'redis-cli --rdb',
    );
    const ms = performance.now() - started;
    if (code !== 0) throw new Error(`redis-cli --rdb exited with ${code}: ${output.toString()}`);
    return { ms, bytes: (await stat(out)).size };
  } finally {
    await stopProcess(pid, 2_000);
  }
}
