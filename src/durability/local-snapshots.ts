import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  ErrorReasons,
  ShardsnapError,
  dataLoss,
  hasReason,
  internal,
  invalidArgument,
  isFullRange,
  isNoSpace,
  noSpace,
  normalizeSlotRanges,
  throwIfAborted,
} from '../core';
import { ArtifactInstaller, ArtifactWriter, FORMAT_VERSION } from '../snapshot';
import type { Store, StoreView } from '../store';
import { memoryScan, writeViewArtifact } from '../strategies';

// The schedule is part of this module's contract; it lives in its own file.
export { LocalSnapshotSchedule, type LocalSnapshotScheduleOptions } from './schedule';

export interface LocalSnapshotInfo {
  /** DIR/snapshots/local-<lsn, 20 digits>.snap */
  path: string;
  /** The store seq the snapshot is consistent at. */
  seq: number;
  /** The WAL position it covers: every WAL record with lsn <= this is in it. */
  lsn: number;
  /** Of the whole artifact file (kept in the sidecar `<path>.json`). */
  sha256: string;
  bytes: number;
  createdAtMs: number;
}

export interface LocalSnapshotsOptions {
  /** DIR/snapshots (created if missing). */
  dir: string;
  /** How many complete snapshots to keep (>= 1). */
  keep: number;
  /** The artifact header's node_id (informational). */
  nodeId?: string;
  /**
   * Failures that do not fail a take: deleting snapshots beyond `keep` (retried at the
   * next take, as the extra snapshots are still listed).
   */
  onError?: (error: ShardsnapError) => void;
}

export interface LoadResult {
  loaded: LocalSnapshotInfo | undefined;
  skipped: Array<{ path: string; reason: string }>;
}

const ARTIFACT_NAME = /^local-(\d{20})\.snap$/;
const SIDECAR_NAME = /^local-(\d{20})\.snap\.json$/;
const SIDECAR_SUFFIX = '.json';
const TEMP_SUFFIX = '.tmp';
const SIDECAR_VERSION = 1;
const READ_PIECE_BYTES = 1 << 20;

/** What the sidecar holds: the info minus its path (the file name says where it is). */
interface Sidecar {
  version: number;
  seq: number;
  lsn: number;
  sha256: string;
  bytes: number;
  createdAtMs: number;
  keyCount: number;
}

const isCount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** A file-system failure as a domain error: a full disk is NO_SPACE, the rest internal. */
function storageError(what: string, path: string, cause: unknown): ShardsnapError {
  if (cause instanceof ShardsnapError) return cause;
  const detail = cause instanceof Error ? cause.message : String(cause);
  return isNoSpace(cause)
    ? noSpace(`${what}: the disk is full (${detail})`, path, cause)
    : internal(`${what}: ${detail}`, cause);
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function parseSidecar(text: string, lsn: number): Sidecar {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw dataLoss('sidecar is not valid JSON', cause);
  }
  const s = (value ?? {}) as Partial<Record<keyof Sidecar, unknown>>;
  if (s.version !== SIDECAR_VERSION) throw dataLoss(`unknown sidecar version ${String(s.version)}`);
  if (!isCount(s.seq) || !isCount(s.lsn) || !isCount(s.bytes) || !isCount(s.createdAtMs)) {
    throw dataLoss('sidecar lacks seq, lsn, bytes or createdAtMs');
  }
  if (typeof s.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(s.sha256)) {
    throw dataLoss('sidecar has no valid sha256');
  }
  if (s.lsn !== lsn) throw dataLoss(`sidecar says lsn ${s.lsn}, the file name ${lsn}`);
  return {
    version: s.version,
    seq: s.seq,
    lsn: s.lsn,
    sha256: s.sha256,
    bytes: s.bytes,
    createdAtMs: s.createdAtMs,
    keyCount: isCount(s.keyCount) ? s.keyCount : 0,
  };
}

/**
 * The local snapshots of a memory node: point-in-time records artifacts of the whole
 * store, each with a sidecar naming the WAL position (lsn) it covers, so that a restart
 * loads the newest and replays the WAL after it.
 *
 * A snapshot exists once its sidecar does: the artifact is written under a temp name,
 * fsynced, renamed into place (directory fsynced), and only then is the sidecar written
 * the same way. A crash at any point therefore leaves either no new snapshot (a temp file
 * or a sidecar-less artifact, both removed by `list`) or a complete one, and the older
 * snapshots are deleted only after the new one is complete. Takes are serialized.
 */
export class LocalSnapshots {
  private readonly dir: string;
  private readonly keep: number;
  /** Files a take of this instance is writing: `list` must not take them for leftovers. */
  private readonly busy = new Set<string>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: LocalSnapshotsOptions) {
    if (!Number.isSafeInteger(options.keep) || options.keep < 1) {
      throw invalidArgument(`keep must be an integer >= 1, not ${options.keep}`);
    }
    this.dir = options.dir;
    this.keep = options.keep;
  }

  pathOf(lsn: number): string {
    return join(this.dir, `local-${String(lsn).padStart(20, '0')}.snap`);
  }

  /** Newest (highest lsn) first; only complete ones. Removes leftovers of interrupted takes. */
  async list(): Promise<LocalSnapshotInfo[]> {
    return (await this.scan()).complete;
  }

  take(
    openView: () => Promise<{ view: StoreView; lsn: number }>,
    options: { signal?: AbortSignal } = {},
  ): Promise<LocalSnapshotInfo> {
    const run = this.queue.then(() => this.takeNow(openView, options.signal));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Loads the newest snapshot that verifies (the sidecar's size and SHA-256 of the whole
   * file, and the artifact's own structure and trailer as the installer reads it) into
   * `store` as a full install. A snapshot that does not verify is reported in `skipped`
   * and left on disk, and the next older one is tried; nothing of a failed one stays
   * staged in the store.
   */
  async loadNewest(store: Store, options: { signal?: AbortSignal } = {}): Promise<LoadResult> {
    const { signal } = options;
    const { complete, broken } = await this.scan();
    const skipped = [...broken];
    for (const info of complete) {
      throwIfAborted(signal);
      try {
        await this.install(store, info, signal);
        return { loaded: info, skipped };
      } catch (error) {
        if (signal?.aborted || hasReason(error, ErrorReasons.storeClosed)) throw error;
        skipped.push({
          path: info.path,
          reason: error instanceof Error ? error.message : String(error),
        });
      }
    }
    return { loaded: undefined, skipped };
  }

  /** The oldest kept snapshot's lsn: WAL segments entirely at or below it may go. */
  async oldestKeptLsn(): Promise<number | undefined> {
    return (await this.list()).at(-1)?.lsn;
  }

  private async takeNow(
    openView: () => Promise<{ view: StoreView; lsn: number }>,
    signal: AbortSignal | undefined,
  ): Promise<LocalSnapshotInfo> {
    throwIfAborted(signal);
    await this.ensureDir();
    const { view, lsn } = await openView();
    const path = this.pathOf(lsn);
    const temp = `${path}${TEMP_SUFFIX}`;
    const owned = [
      temp,
      path,
      `${path}${SIDECAR_SUFFIX}`,
      `${path}${SIDECAR_SUFFIX}${TEMP_SUFFIX}`,
    ];
    try {
      if (!isCount(lsn))
        throw invalidArgument(`a snapshot lsn must be a safe integer >= 0, not ${String(lsn)}`);
      // Same lsn, same content: the snapshot already there covers it.
      const existing = await this.readComplete(lsn);
      if (existing) return existing;
      for (const file of owned) this.busy.add(file);
      const createdAtMs = Date.now();
      const written = await this.writeArtifact(view, temp, lsn, createdAtMs, signal);
      const info: LocalSnapshotInfo = {
        path,
        seq: view.seq,
        lsn,
        sha256: written.sha256,
        bytes: written.size,
        createdAtMs,
      };
      await this.publish(info, temp, written.keyCount, signal);
      // Complete now: it counts among the kept ones.
      for (const file of owned) this.busy.delete(file);
      await this.prune();
      return info;
    } finally {
      view.close();
      for (const file of owned) this.busy.delete(file);
    }
  }

  private async writeArtifact(
    view: StoreView,
    temp: string,
    lsn: number,
    createdAtMs: number,
    signal: AbortSignal | undefined,
  ): Promise<{ size: number; sha256: string; keyCount: number }> {
    let writer: ArtifactWriter | undefined;
    try {
      await rm(temp, { force: true });
      writer = await ArtifactWriter.create(temp, () => undefined);
      const slots = normalizeSlotRanges(view.slots);
      const { keyCount } = await writeViewArtifact(
        view,
        writer,
        {
          format_version: FORMAT_VERSION,
          kind: 'records',
          snapshot_id: basename(this.pathOf(lsn), '.snap'),
          node_id: this.options.nodeId ?? '',
          backend: 'memory',
          strategy: memoryScan.name,
          seq: view.seq,
          slots,
          full: isFullRange(slots),
          created_at_ms: createdAtMs,
        },
        signal,
      );
      // The view pins copy-on-write copies of what changed since: let them go before the fsync.
      view.close();
      const { size, sha256 } = await writer.finish();
      writer = undefined;
      throwIfAborted(signal);
      return { size, sha256, keyCount };
    } catch (error) {
      await writer?.abandon();
      await rm(temp, { force: true }).catch(() => undefined);
      throw storageError(`writing local snapshot ${temp}`, temp, error);
    }
  }

  /** Renames the fsynced artifact into place, then writes the sidecar: the commit point. */
  private async publish(
    info: LocalSnapshotInfo,
    temp: string,
    keyCount: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const sidecarPath = `${info.path}${SIDECAR_SUFFIX}`;
    const sidecarTemp = `${sidecarPath}${TEMP_SUFFIX}`;
    const sidecar: Sidecar = {
      version: SIDECAR_VERSION,
      seq: info.seq,
      lsn: info.lsn,
      sha256: info.sha256,
      bytes: info.bytes,
      createdAtMs: info.createdAtMs,
      keyCount,
    };
    try {
      await rename(temp, info.path);
      await syncDir(this.dir);
      throwIfAborted(signal);
      const file = await open(sidecarTemp, 'w');
      try {
        await file.writeFile(`${JSON.stringify(sidecar, null, 2)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(sidecarTemp, sidecarPath);
      await syncDir(this.dir);
    } catch (error) {
      // Not complete: nothing of it may stay to be taken for a snapshot.
      for (const file of [sidecarPath, sidecarTemp, info.path, temp]) {
        await rm(file, { force: true }).catch(() => undefined);
      }
      throw storageError(`publishing local snapshot ${info.path}`, info.path, error);
    }
  }

  /** Deletes the complete snapshots beyond `keep`, sidecar first (it makes them incomplete). */
  private async prune(): Promise<void> {
    try {
      const { complete } = await this.scan();
      const extra = complete.slice(this.keep);
      for (const info of extra) {
        await rm(`${info.path}${SIDECAR_SUFFIX}`, { force: true });
        await rm(info.path, { force: true });
      }
      if (extra.length > 0) await syncDir(this.dir);
    } catch (error) {
      this.options.onError?.(storageError('deleting old local snapshots', this.dir, error));
    }
  }

  private async ensureDir(): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (error) {
      throw storageError(`creating ${this.dir}`, this.dir, error);
    }
  }

  private async readComplete(lsn: number): Promise<LocalSnapshotInfo | undefined> {
    const path = this.pathOf(lsn);
    try {
      const sidecar = parseSidecar(await readFile(`${path}${SIDECAR_SUFFIX}`, 'utf8'), lsn);
      await stat(path);
      return this.infoOf(path, sidecar);
    } catch {
      return undefined;
    }
  }

  private infoOf(path: string, s: Sidecar): LocalSnapshotInfo {
    return {
      path,
      seq: s.seq,
      lsn: s.lsn,
      sha256: s.sha256,
      bytes: s.bytes,
      createdAtMs: s.createdAtMs,
    };
  }

  /**
   * Sorts the directory: complete snapshots (newest first), and those whose sidecar cannot
   * be read (reported, kept for a look). Leftovers of an interrupted take or deletion —
   * temp files, an artifact without its sidecar, a sidecar without its artifact — go.
   */
  private async scan(): Promise<{
    complete: LocalSnapshotInfo[];
    broken: Array<{ path: string; reason: string }>;
  }> {
    await this.ensureDir();
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      throw storageError(`listing ${this.dir}`, this.dir, error);
    }
    const present = new Set(names);
    const complete: LocalSnapshotInfo[] = [];
    const broken: Array<{ path: string; reason: string }> = [];
    const leftovers: string[] = [];
    for (const name of names) {
      const path = join(this.dir, name);
      if (this.busy.has(path)) continue;
      if (name.endsWith(TEMP_SUFFIX)) {
        if (name.startsWith('local-')) leftovers.push(path);
        continue;
      }
      if (SIDECAR_NAME.test(name)) {
        if (!present.has(name.slice(0, -SIDECAR_SUFFIX.length))) leftovers.push(path);
        continue;
      }
      const match = ARTIFACT_NAME.exec(name);
      if (!match?.[1]) continue;
      if (!present.has(`${name}${SIDECAR_SUFFIX}`)) {
        leftovers.push(path);
        continue;
      }
      const lsn = Number(match[1]);
      try {
        const text = await readFile(`${path}${SIDECAR_SUFFIX}`, 'utf8');
        complete.push(this.infoOf(path, parseSidecar(text, lsn)));
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        broken.push({ path, reason: `unreadable sidecar: ${reason}` });
      }
    }
    for (const path of leftovers) {
      try {
        await rm(path, { force: true });
      } catch (error) {
        throw storageError(`removing the leftover ${path}`, path, error);
      }
    }
    complete.sort((a, b) => b.lsn - a.lsn);
    broken.sort((a, b) => (a.path < b.path ? 1 : -1));
    return { complete, broken };
  }

  private async install(
    store: Store,
    info: LocalSnapshotInfo,
    signal?: AbortSignal,
  ): Promise<void> {
    const { size } = await stat(info.path);
    if (size !== info.bytes) {
      throw dataLoss(`the artifact is ${size} bytes, its sidecar says ${info.bytes}`);
    }
    const installer = new ArtifactInstaller(store);
    const file = await open(info.path, 'r');
    // One piece read ahead: the disk reads the next while the install decodes this one.
    const readAt = async (at: number): Promise<Buffer> => {
      // A fresh buffer per piece, as a restore from a file does: cheap next to the install.
      const piece = Buffer.allocUnsafe(READ_PIECE_BYTES);
      const { bytesRead } = await file.read(piece, 0, piece.length, at);
      return piece.subarray(0, bytesRead);
    };
    let next = readAt(0);
    try {
      let offset = 0;
      for (;;) {
        throwIfAborted(signal);
        const piece = await next;
        if (piece.length === 0) break;
        next = readAt(offset + piece.length);
        await installer.push(offset, piece);
        offset += piece.length;
      }
      const seq = installer.artifactHeader?.seq;
      if (seq !== undefined && seq !== info.seq) {
        throw dataLoss(`the artifact's seq is ${seq}, its sidecar says ${info.seq}`);
      }
      await installer.finish(info.sha256);
    } finally {
      // The read ahead finishes (or fails) before its file is closed.
      await next.catch(() => undefined);
      await installer.abort();
      await file.close();
    }
  }
}
