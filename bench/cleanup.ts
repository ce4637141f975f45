/**
 * Everything the harness starts (child processes by pid, temp dirs) is registered here,
 * so it is stopped and removed on success, on failure, on SIGINT/SIGTERM, and — as a
 * last resort, synchronously — when the bench process exits.
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { log, sleep } from './util';

interface Tracked {
  name: string;
  child: ChildProcess;
}

const processes = new Map<number, Tracked>();
const dirs = new Set<string>();
let stopping = false;

/** True once SIGINT/SIGTERM arrived: nothing new may start. */
export function isStopping(): boolean {
  return stopping;
}

export function trackProcess(name: string, child: ChildProcess): number {
  const pid = child.pid;
  if (pid === undefined) throw new Error(`${name} did not start (no pid)`);
  if (stopping) {
    child.kill('SIGKILL');
    throw new Error(`${name} not started: the benchmark is stopping`);
  }
  processes.set(pid, { name, child });
  child.once('exit', () => processes.delete(pid));
  return pid;
}

export function trackDir(dir: string): string {
  dirs.add(dir);
  return dir;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Waits for the child to exit, at most `ms`; true once it has. */
function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
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

/** Stops one tracked process by pid: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopProcess(pid: number, graceMs = 10_000): Promise<void> {
  const tracked = processes.get(pid);
  if (!tracked) return;
  const { child, name } = tracked;
  if (alive(child)) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // Already gone.
    }
    if (!(await waitExit(child, graceMs))) {
      log(`${name} (pid ${pid}) ignored SIGTERM for ${graceMs} ms; sending SIGKILL`);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await waitExit(child, 5_000);
    }
  }
  processes.delete(pid);
}

export async function removeDir(dir: string): Promise<void> {
  // A few tries: a node that just stopped may still be closing files in it.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await rm(dir, { recursive: true, force: true });
      dirs.delete(dir);
      return;
    } catch (error) {
      if (attempt === 2) log(`could not remove ${dir}: ${(error as Error).message}`);
      await sleep(200);
    }
  }
}

/** Stops every process still tracked (by pid, one after the other); temp dirs stay. */
export async function stopTrackedProcesses(): Promise<void> {
  for (const pid of [...processes.keys()]) await stopProcess(pid, 5_000);
}

/** Stops every process still tracked and removes every temp dir. */
export async function cleanupAll(): Promise<void> {
  for (const pid of [...processes.keys()]) await stopProcess(pid, 5_000);
  for (const dir of [...dirs]) await removeDir(dir);
}

function cleanupSync(): void {
  for (const [pid, { child }] of processes) {
    if (alive(child)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
  }
  processes.clear();
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Best effort on exit.
    }
  }
  dirs.clear();
}

let installed = false;

/** Installs the signal and exit handlers once. */
export function installCleanupHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      stopping = true;
      log(`${signal}: stopping everything the benchmark started`);
      const hardStop = setTimeout(() => process.exit(130), 20_000);
      hardStop.unref();
      void cleanupAll().finally(() => process.exit(130));
    });
  }
}
