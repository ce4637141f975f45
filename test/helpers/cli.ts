/** Runs the built `shardsnap` CLI (bin/shardsnap → dist/) as child processes. */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { tempDirFor } from './harness';

export const BIN = join(__dirname, '..', '..', 'bin', 'shardsnap');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `shardsnap ...args` to its end (bounded), never throwing on a non-zero exit. */
export function cli(args: readonly string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      },
    );
  });
}

/** Runs a command with `--json` and parses its one JSON object. */
export async function cliJson<T = Record<string, unknown>>(
  args: readonly string[],
): Promise<{ code: number; json: T; raw: CliResult }> {
  const raw = await cli([...args, '--json']);
  let json: T;
  try {
    json = JSON.parse(raw.stdout.trim()) as T;
  } catch {
    throw new Error(
      `shardsnap ${args.join(' ')}: no JSON on stdout (exit ${raw.code}): ${raw.stdout}\n${raw.stderr}`,
    );
  }
  return { code: raw.code, json, raw };
}

export interface ServedNode {
  address: string;
  dataDir: string;
  child: ChildProcess;
}

/** A `shardsnap serve` process started by a test. */
export interface SpawnedServe {
  child: ChildProcess;
  address: string;
  /** Everything the process wrote so far. */
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal that ended the process). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `shardsnap serve --listen 127.0.0.1:0 ...args` and waits for the address it
 * prints (`listening on HOST:PORT`, or `{"listening": ...}` with --json). A process still
 * running when the test ends is stopped by its pid (SIGKILL after 5 s).
 */
export async function spawnServe(
  t: ExecutionContext,
  args: readonly string[],
): Promise<SpawnedServe> {
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid!, 'SIGTERM');
    const timer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
    }, 5_000);
    await exited;
    clearTimeout(timer);
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (data: Buffer) => (out += data.toString()));
  child.stderr.on('data', (data: Buffer) => (err += data.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${out} ${err}`)), 60_000);
    const check = (): void => {
      const match = /listening on (\S+:\d+)/.exec(out) ?? /"listening":"([^"]+:\d+)"/.exec(out);
      if (!match) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      resolve(match[1] as string);
    };
    child.stdout.on('data', check);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve exited before listening: ${out} ${err}`));
    });
  });
  return { child, address, stdout: () => out, stderr: () => err, exited };
}

/**
 * Spawns `shardsnap serve` on 127.0.0.1:0 with a temp data dir (or `existingDataDir`)
 * and waits for it to listen; see spawnServe.
 */
export async function serve(
  t: ExecutionContext,
  extra: readonly string[] = [],
  existingDataDir?: string,
): Promise<ServedNode> {
  const dataDir = existingDataDir ?? (await tempDirFor(t, 'shardsnap-cli-'));
  const { address, child } = await spawnServe(t, [
    '--data-dir',
    dataDir,
    '--log-level',
    'warn',
    ...extra,
  ]);
  return { address, dataDir, child };
}
