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

/**
 * Spawns `shardsnap serve` on 127.0.0.1:0 with a temp data dir and waits for its
 * `listening on HOST:PORT` line. The process is stopped by its pid when the test ends.
 */
export async function serve(
  t: ExecutionContext,
  extra: readonly string[] = [],
  existingDataDir?: string,
): Promise<ServedNode> {
  const dataDir = existingDataDir ?? (await tempDirFor(t, 'shardsnap-cli-'));
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--log-level',
      'warn',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, 'SIGTERM');
      const timer = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null)
          process.kill(child.pid!, 'SIGKILL');
      }, 3_000);
      await exited;
      clearTimeout(timer);
    }
  });
  let stderr = '';
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString()));
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(
      () => reject(new Error(`serve did not start in time: ${out} ${stderr}`)),
      60_000,
    );
    child.stdout.on('data', (data: Buffer) => {
      out += data.toString();
      const match = /listening on (\S+:\d+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1] as string);
      }
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`serve exited before listening: ${out} ${stderr}`));
    });
  });
  return { address, dataDir, child };
}
