/**
 * Redis with an append-only file, the baseline of the durability section: a
 * `redis-server` started (or restarted on the same dir) and timed until it answers PING
 * with its dataset loaded, a writer sending the synthetic dataset as MSET batches with a
 * fixed number of batches in flight, BGREWRITEAOF until done, and INFO fields.
 */
import { spawn } from 'node:child_process';
import { syntheticBatches } from '../src/client/synthetic';
import { stopProcess, trackProcess } from './cleanup';
import { Tail } from './node-process';
import { freeLoopbackPort } from './redis-baseline';
import { RespConnection, RespError } from './resp';
import { now, sleep, withTimeout } from './util';

export type AppendFsync = 'always' | 'everysec' | 'no';

/** `appendonly no`, or an AOF with an RDB preamble and the given fsync policy. */
export function aofArgs(fsync: AppendFsync | 'off'): string[] {
  if (fsync === 'off') return ['--appendonly', 'no'];
  return ['--appendonly', 'yes', '--appendfsync', fsync, '--aof-use-rdb-preamble', 'yes'];
}

export interface TimedRedis {
  pid: number;
  port: number;
  dir: string;
  /** stdout and stderr (the server logs to stdout without a logfile). */
  output: Tail;
  /** From spawn until PING answered PONG and INFO persistence said loading:0. */
  readyMs: number;
  /** The server's own figure from its log, seconds (undefined when it loaded nothing). */
  loadedSeconds?: number;
  stop(): Promise<void>;
  /** SIGKILL: no shutdown work, like a crash. */
  kill(): Promise<void>;
}

/** `INFO <section>` as key → value. */
export async function redisInfo(
  conn: RespConnection,
  section: string,
): Promise<Record<string, string>> {
  const text = await conn.text(['INFO', section]);
  const out: Record<string, string> = {};
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) out[line.slice(0, at)] = line.slice(at + 1);
  }
  return out;
}

const POLL_MS = 5;

/**
 * Polls until the server answers PING with PONG (it answers LOADING while it reads its
 * files) and reports loading:0; resolves with the ms since `started`.
 */
async function waitLoaded(
  port: number,
  started: number,
  timeoutMs: number,
  exited: () => string | undefined,
): Promise<number> {
  for (;;) {
    const gone = exited();
    if (gone) throw new Error(gone);
    if (now() - started > timeoutMs)
      throw new Error(`redis-server on port ${port} not loaded within ${timeoutMs} ms`);
    let conn: RespConnection | undefined;
    try {
      conn = await RespConnection.connect(port, 1_000);
      for (;;) {
        const reply = await conn.call(['PING'], 5_000);
        if (reply === 'PONG') {
          const info = await redisInfo(conn, 'persistence');
          if (info.loading === '0') return now() - started;
        } else if (!(reply instanceof RespError && reply.message.startsWith('LOADING'))) {
          throw new Error(`PING answered ${String(reply)}`);
        }
        if (now() - started > timeoutMs) break;
        await sleep(POLL_MS);
      }
    } catch {
      // Not listening yet.
      await sleep(POLL_MS);
    } finally {
      conn?.close();
    }
  }
}

/**
 * Starts `redis-server` on `dir` (what is there is loaded) with `extraArgs` after the
 * common ones, timed from spawn until it has loaded and answers.
 */
export async function startTimedRedis(
  dir: string,
  extraArgs: readonly string[],
  timeoutMs: number,
): Promise<TimedRedis> {
  const port = await freeLoopbackPort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--dir',
    dir,
    '--daemonize',
    'no',
    ...extraArgs,
  ];
  const started = now();
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = trackProcess('redis-server', child);
  const output = new Tail(65_536);
  child.stdout?.on('data', (p: Buffer) => output.push(p));
  child.stderr?.on('data', (p: Buffer) => output.push(p));
  const exited = (): string | undefined =>
    child.exitCode !== null || child.signalCode !== null
      ? `redis-server exited (${child.exitCode ?? child.signalCode}): ${output.toString().slice(-2000)}`
      : undefined;
  try {
    const readyMs = await waitLoaded(port, started, timeoutMs, exited);
    const logged = /DB loaded from append only file: ([\d.]+) seconds/.exec(output.toString());
    return {
      pid,
      port,
      dir,
      output,
      readyMs,
      loadedSeconds: logged ? Number(logged[1]) : undefined,
      stop: () => stopProcess(pid),
      kill: async () => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
        await stopProcess(pid, 5_000);
      },
    };
  } catch (error) {
    await stopProcess(pid, 2_000);
    throw error;
  }
}

export interface MsetLoad {
  keys: number;
  batches: number;
  ms: number;
}

/**
 * The synthetic dataset (the same batches `shardsnap load` writes) as one MSET per batch,
 * with `concurrency` connections each keeping one batch in flight: an MSET is applied
 * and appended to the AOF as one unit, as a Write batch is one WAL record.
 */
export async function msetLoad(
  port: number,
  options: { keys: number; valueSize: number; seed: number; concurrency: number },
  timeoutMs: number,
): Promise<MsetLoad> {
  const conns: RespConnection[] = [];
  try {
    for (let i = 0; i < options.concurrency; i++) conns.push(await RespConnection.connect(port));
    const started = now();
    const batches = syntheticBatches({
      keys: options.keys,
      valueSize: options.valueSize,
      types: 'string',
      seed: options.seed,
    });
    let keys = 0;
    let count = 0;
    const worker = async (conn: RespConnection): Promise<void> => {
      for (;;) {
        const next = batches.next();
        if (next.done) return;
        const args: (string | Buffer)[] = ['MSET'];
        for (const m of next.value) {
          if (m.op !== 'set') throw new Error(`unexpected synthetic op ${m.op}`);
          args.push(m.key, m.value);
        }
        await conn.ok(args, timeoutMs);
        keys += next.value.length;
        count++;
      }
    };
    await withTimeout(Promise.all(conns.map(worker)), timeoutMs, 'MSET load');
    return { keys, batches: count, ms: now() - started };
  } finally {
    for (const c of conns) c.close();
  }
}

/** Until INFO persistence shows no AOF rewrite running or scheduled. */
async function rewriteIdle(
  conn: RespConnection,
  started: number,
  timeoutMs: number,
): Promise<Record<string, string>> {
  for (;;) {
    const info = await redisInfo(conn, 'persistence');
    if (info.aof_rewrite_in_progress === '0' && info.aof_rewrite_scheduled === '0') return info;
    if (now() - started > timeoutMs)
      throw new Error(`the AOF rewrite did not finish within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(20);
  }
}

/**
 * BGREWRITEAOF once no automatic rewrite runs (Redis refuses a second one), then until it
 * is done: the AOF is then one RDB-preamble base file holding everything written so far.
 */
export async function rewriteAof(conn: RespConnection, timeoutMs: number): Promise<number> {
  const started = now();
  await rewriteIdle(conn, started, timeoutMs);
  await conn.ok(['BGREWRITEAOF']);
  const info = await rewriteIdle(conn, started, timeoutMs);
  if (info.aof_last_bgrewrite_status !== 'ok')
    throw new Error(`BGREWRITEAOF ended with status ${info.aof_last_bgrewrite_status}`);
  return now() - started;
}
