/**
 * Shard nodes as separate processes (`bin/shardsnap serve`), started with
 * `process.execPath` and the V8 flags of the bin's shebang, stopped by pid; their
 * resident memory read from /proc/<pid>/status.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stopProcess, trackProcess } from './cleanup';
import { REPO_ROOT, withTimeout } from './util';

export const BIN = join(REPO_ROOT, 'bin', 'shardsnap');

/** The node flags of the bin's `#!/usr/bin/env -S node ...` line (e.g. --max-semi-space-size=64). */
export function shebangFlags(bin = BIN): string[] {
  const first = readFileSync(bin, 'utf8').split('\n', 1)[0] ?? '';
  if (!first.startsWith('#!')) return [];
  const words = first.slice(2).trim().split(/\s+/);
  const at = words.findIndex((w) => w === 'node' || w.endsWith('/node'));
  return at < 0 ? [] : words.slice(at + 1).filter((w) => w.startsWith('-'));
}

/** Keeps the last `limit` characters of a stream, for error messages. */
export class Tail {
  private text = '';
  constructor(private readonly limit = 16_384) {}
  push(piece: Buffer | string): void {
    this.text = (this.text + piece.toString()).slice(-this.limit);
  }
  toString(): string {
    return this.text;
  }
}

/** Resolves with the first regex match on the child's stdout, or rejects on exit/timeout. */
export function waitForStdout(
  child: ChildProcess,
  pattern: RegExp,
  timeoutMs: number,
  what: string,
  stderr?: Tail,
): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('close', onExit);
    };
    const onData = (piece: Buffer): void => {
      seen = (seen + piece.toString()).slice(-65_536);
      const match = pattern.exec(seen);
      if (match) {
        cleanup();
        resolve(match);
      }
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null): void => {
      cleanup();
      reject(
        new Error(
          `${what} exited (code ${code}, signal ${signal}) before printing ${pattern}\nstdout: ${seen}\nstderr: ${stderr?.toString() ?? ''}`,
        ),
      );
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `${what} did not print ${pattern} within ${timeoutMs} ms\nstdout: ${seen}\nstderr: ${stderr?.toString() ?? ''}`,
        ),
      );
    }, timeoutMs);
    child.stdout?.on('data', onData);
    // 'close' (not 'exit'): it comes after the child's stdout has been read to its end.
    child.once('close', onExit);
  });
}

export interface NodeProcess {
  name: string;
  pid: number;
  address: string;
  dataDir: string;
  stderr: Tail;
  stop(): Promise<void>;
}

/** Starts `shardsnap serve` on a free loopback port and waits for `listening on HOST:PORT`. */
export async function startNodeProcess(options: {
  name: string;
  dataDir: string;
  logLevel?: string;
  /** `--backend` of `shardsnap serve`; the node's default (memory) when absent. */
  backend?: string;
  /** More `shardsnap serve` options, e.g. `['--slots', 'none']`. */
  extraArgs?: readonly string[];
  /** More V8/Node flags after the shebang's, e.g. `['--trace-gc']`. */
  nodeFlags?: readonly string[];
  /** Every piece of the node's stdout (after the banner too), e.g. for `--trace-gc` lines. */
  onStdout?: (piece: Buffer) => void;
  /** How long to wait for `listening on` (default 30 s; a node recovering a dataset needs more). */
  startTimeoutMs?: number;
}): Promise<NodeProcess> {
  const args = [
    ...shebangFlags(),
    ...(options.nodeFlags ?? []),
    BIN,
    'serve',
    '--listen',
    '127.0.0.1:0',
    '--data-dir',
    options.dataDir,
    '--node-id',
    options.name,
    '--log-level',
    options.logLevel ?? 'warn',
    ...(options.backend ? ['--backend', options.backend] : []),
    ...(options.extraArgs ?? []),
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  const pid = trackProcess(options.name, child);
  const stderr = new Tail();
  child.stderr?.on('data', (piece: Buffer) => stderr.push(piece));
  // Keep draining stdout after the banner so the pipe never fills.
  child.stdout?.on('data', options.onStdout ?? (() => undefined));
  try {
    const match = await waitForStdout(
      child,
      /listening on (\S+:\d+)/,
      options.startTimeoutMs ?? 30_000,
      `node ${options.name}`,
      stderr,
    );
    const address = match[1] as string;
    return {
      name: options.name,
      pid,
      address,
      dataDir: options.dataDir,
      stderr,
      stop: () => stopProcess(pid),
    };
  } catch (error) {
    await stopProcess(pid);
    throw error;
  }
}

export interface CliRun {
  /** From spawn to exit, ms. */
  ms: number;
  /** The JSON object the command printed (every command takes `--json`). */
  output: Record<string, unknown>;
}

/**
 * Runs one `shardsnap` command as a user runs the bin (`process.execPath`, the shebang's
 * flags, `bin/shardsnap ARGS --json`), tracked by pid, timed from spawn to exit; a non-zero
 * exit, output that is not JSON, or a timeout throws.
 */
export async function runShardsnap(
  args: readonly string[],
  timeoutMs: number,
  what = `shardsnap ${args[0] ?? ''}`,
): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [...shebangFlags(), BIN, ...args, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: REPO_ROOT,
  });
  const pid = trackProcess(what, child);
  const stdout = new Tail(1 << 20);
  const stderr = new Tail();
  child.stdout?.on('data', (piece: Buffer) => stdout.push(piece));
  child.stderr?.on('data', (piece: Buffer) => stderr.push(piece));
  try {
    const code = await withTimeout(
      new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c))),
      timeoutMs,
      what,
    );
    const ms = performance.now() - started;
    const text = stdout.toString().trim();
    if (code !== 0)
      throw new Error(`${what} exited with ${code}: ${text.slice(-2000)} ${stderr.toString()}`);
    let output: Record<string, unknown>;
    try {
      output = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new Error(`${what} printed no JSON object: ${text.slice(-2000)}`);
    }
    return { ms, output };
  } finally {
    await stopProcess(pid, 2_000);
  }
}

/** A field of /proc/<pid>/status in bytes (VmRSS, VmHWM, ...), or NaN when unreadable. */
export function procStatusBytes(
  pid: number,
  field: 'VmRSS' | 'VmHWM' | 'RssAnon' | 'RssFile',
): number {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status);
    return match ? Number(match[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

export const readRss = (pid: number): number => procStatusBytes(pid, 'VmRSS');

/** Resets the kernel's peak-RSS mark (VmHWM) of a process we own; false when not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
