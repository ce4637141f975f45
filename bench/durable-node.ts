/**
 * Memory nodes with a write-ahead log, for the durability section: which durability
 * flags this build of `shardsnap serve` has, the local snapshots a node wrote (their
 * sidecars), a crash by SIGKILL, and the recovery a restarted node reports in Stats.
 */
import { spawnSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ShardsnapClient } from '../src/client/client';
import { stopProcess } from './cleanup';
import { BIN, shebangFlags } from './node-process';
import { now, sleep } from './util';

/** The flags of `shardsnap serve` the section needs, by feature. */
const WAL_FLAGS = ['--wal-fsync', '--no-wal'];
const LOCAL_SNAPSHOT_FLAGS = ['--local-snapshot-interval', '--local-snapshot-wal-bytes'];

export interface DurabilitySupport {
  wal: boolean;
  localSnapshots: boolean;
  /** The flags `shardsnap serve --help` does not list. */
  missing: string[];
}

/** Reads `shardsnap serve --help` of the built bin. */
export function durabilitySupport(): DurabilitySupport {
  const result = spawnSync(process.execPath, [...shebangFlags(), BIN, 'serve', '--help'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const help = `${result.stdout ?? ''}${result.stderr ?? ''}`;
  const missing = [...WAL_FLAGS, ...LOCAL_SNAPSHOT_FLAGS].filter(
    (flag) => !new RegExp(`${flag}\\b`).test(help),
  );
  return {
    wal: WAL_FLAGS.every((f) => !missing.includes(f)),
    localSnapshots: LOCAL_SNAPSHOT_FLAGS.every((f) => !missing.includes(f)),
    missing,
  };
}

export interface LocalSnapshotFile {
  path: string;
  seq: number;
  lsn: number;
  bytes: number;
}

const SIDECAR = /^local-\d{20}\.snap\.json$/;

/** Complete local snapshots under `dir` (a snapshot is complete once its sidecar exists). */
export async function localSnapshotFiles(dir: string, depth = 3): Promise<LocalSnapshotFile[]> {
  const found: LocalSnapshotFile[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory() && depth > 0) {
      found.push(...(await localSnapshotFiles(path, depth - 1)));
    } else if (entry.isFile() && SIDECAR.test(entry.name)) {
      try {
        const sidecar = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
        found.push({
          path: path.slice(0, -'.json'.length),
          seq: Number(sidecar.seq),
          lsn: Number(sidecar.lsn),
          bytes: Number(sidecar.bytes),
        });
      } catch {
        // Being replaced, or removed beyond --local-snapshot-keep: not complete.
      }
    }
  }
  return found.sort((a, b) => a.lsn - b.lsn);
}

/** Waits for a complete local snapshot at `seq` or later; resolves with it. */
export async function waitLocalSnapshot(
  dataDir: string,
  seq: number,
  timeoutMs: number,
): Promise<LocalSnapshotFile & { waitedMs: number }> {
  const started = now();
  for (;;) {
    const newest = (await localSnapshotFiles(dataDir)).filter((s) => s.seq >= seq).pop();
    if (newest) return { ...newest, waitedMs: now() - started };
    if (now() - started > timeoutMs)
      throw new Error(`no local snapshot at seq ≥ ${seq} within ${Math.round(timeoutMs / 1000)} s`);
    await sleep(100);
  }
}

/** SIGKILL: the node gets no chance to flush or snapshot, as in a crash. */
export async function killNode(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
  await stopProcess(pid, 5_000);
}

/** What a restarted node reports of its recovery (Stats.recovery), numbers as numbers. */
export type Recovery = Record<string, unknown> & {
  snapshotSeq?: number;
  recordsReplayed?: number;
  durationMs?: number;
};

/** Stats.recovery when this build reports one (read loosely: the field is optional). */
export function recoveryOf(stats: object): Recovery | undefined {
  const value = (stats as { recovery?: unknown }).recovery;
  return value && typeof value === 'object' ? (value as Recovery) : undefined;
}

/**
 * Polls Stats until the node answers with its recovery reported (and not in progress,
 * when it says so); resolves with the ms since `started`.
 */
export async function waitRecovered(
  client: ShardsnapClient,
  started: number,
  timeoutMs: number,
): Promise<{ ms: number; recovery: Recovery | undefined; keyCount: number; seq: number }> {
  for (;;) {
    const stats = await client.stats({}, { deadlineMs: 5_000 }).catch(() => undefined);
    if (stats) {
      const recovery = recoveryOf(stats);
      const inProgress =
        recovery !== undefined &&
        (recovery.inProgress === true ||
          (typeof recovery.state === 'string' && /progress|running|replay/i.test(recovery.state)));
      if (recovery && !inProgress)
        return {
          ms: now() - started,
          recovery,
          keyCount: Number(stats.keyCount),
          seq: Number(stats.seq),
        };
    }
    if (now() - started > timeoutMs)
      throw new Error(
        `the restarted node did not report its recovery in Stats within ${Math.round(timeoutMs / 1000)} s`,
      );
    await sleep(5);
  }
}
