import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  invalidArgument,
  shuttingDown,
  snapshotNotFound,
} from '../core';
import { SnapshotEntry } from './snapshot-entry';
import { type SnapshotMeta, isValidSnapshotId } from './snapshot-meta';

export interface CatalogOptions {
  /** The node's data dir; snapshots live in `<dataDir>/snapshots/<id>/`. */
  dataDir: string;
  /** Unused READY/FAILED snapshots are removed this long after their last use. */
  ttlMs: number;
  maxConcurrentBuilds: number;
  /** Snapshots stored at once (any state); a create beyond is RESOURCE_EXHAUSTED. 0 = no cap. */
  maxSnapshots?: number;
  /** Keep at most this many READY snapshots (oldest removed first); 0 = no limit. */
  keepRecent?: number;
  /** How often to look for expired snapshots. */
  gcIntervalMs?: number;
  onError?: (error: unknown, context: string) => void;
  /** A snapshot left the catalog: deleted by a call, expired (TTL) or over `keepRecent`. */
  onRemoved?: (entry: SnapshotEntry, reason: RemovalReason) => void;
}

export type RemovalReason = 'deleted' | 'expired' | 'retention';

export interface Lease {
  readonly entry: SnapshotEntry;
  release(): void;
}

/**
 * The snapshots of a node: directories with an artifact and a manifest written by
 * temp + rename, so a manifest on disk is always whole. READY snapshots are reloaded at
 * start; anything that was still building when the node stopped is removed.
 */
/** RESOURCE_EXHAUSTED because the catalog holds `maxSnapshots` already. */
export class CatalogFullError extends ShardsnapError {
  constructor(message: string) {
    super(ErrorCodes.resourceExhausted, message, { reason: ErrorReasons.catalogFull });
  }
}

export class SnapshotCatalog {
  private readonly entries = new Map<string, SnapshotEntry>();
  private readonly root: string;
  private gcTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: CatalogOptions) {
    this.root = join(options.dataDir, 'snapshots');
  }

  async load(): Promise<void> {
    await mkdir(this.root, { recursive: true });
    for (const name of await readdir(this.root)) {
      const dir = join(this.root, name);
      const meta = await readManifest(join(dir, 'manifest.json'));
      const size = meta
        ? await stat(join(dir, 'artifact.bin')).then(
            (s) => s.size,
            () => -1,
          )
        : -1;
      if (meta?.state === 'READY' && size === meta.sizeBytes && isValidSnapshotId(name)) {
        this.entries.set(meta.id, new SnapshotEntry(meta, dir));
      } else {
        await rm(dir, { recursive: true, force: true });
      }
    }
    const interval =
      this.options.gcIntervalMs ?? Math.min(60_000, Math.max(1_000, this.options.ttlMs / 4));
    this.gcTimer = setInterval(() => {
      this.collectGarbage().catch((e: unknown) => this.options.onError?.(e, 'snapshot gc'));
    }, interval);
    this.gcTimer.unref();
  }

  get buildingCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.meta.state === 'BUILDING') n++;
    return n;
  }

  get leaseCount(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.leases;
    return n;
  }

  get storedBytes(): number {
    let n = 0;
    for (const e of this.entries.values()) n += e.meta.bytesWritten;
    return n;
  }

  list(): SnapshotEntry[] {
    return [...this.entries.values()].sort((a, b) => a.meta.createdAtMs - b.meta.createdAtMs);
  }

  get(id: string): SnapshotEntry {
    if (!isValidSnapshotId(id)) throw invalidArgument(`malformed snapshot id "${id}"`);
    const entry = this.entries.get(id);
    if (!entry) throw snapshotNotFound(id);
    return entry;
  }

  /** Reserves a build slot and a directory for a new snapshot (RESOURCE_EXHAUSTED when full). */
  async create(
    meta: Omit<SnapshotMeta, 'id' | 'state' | 'createdAtMs' | 'bytesWritten'>,
  ): Promise<SnapshotEntry> {
    const cap = this.options.maxSnapshots ?? 0;
    if (cap > 0 && this.entries.size >= cap) {
      throw new CatalogFullError(
        `${this.entries.size} snapshots are stored (limit ${cap}, --max-snapshots); delete some or let them expire`,
      );
    }
    if (this.buildingCount >= this.options.maxConcurrentBuilds) {
      throw new ShardsnapError(
        ErrorCodes.resourceExhausted,
        `too many snapshot builds in progress (limit ${this.options.maxConcurrentBuilds})`,
      );
    }
    const createdAtMs = Date.now();
    const id = `${createdAtMs.toString(36)}-${randomBytes(4).toString('hex')}`;
    const dir = join(this.root, id);
    const entry = new SnapshotEntry(
      { ...meta, id, state: 'BUILDING', createdAtMs, bytesWritten: 0 },
      dir,
    );
    // Registered before any await so concurrent creates see the build slot taken.
    this.entries.set(id, entry);
    try {
      await mkdir(dir, { recursive: true });
      await this.saveManifest(entry);
    } catch (error) {
      this.entries.delete(id);
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
    return entry;
  }

  async saveManifest(entry: SnapshotEntry, meta: SnapshotMeta = entry.meta): Promise<void> {
    const temp = `${entry.manifestPath}.tmp`;
    const file = await open(temp, 'w');
    try {
      await file.writeFile(JSON.stringify(meta, null, 2));
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, entry.manifestPath);
  }

  /** Takes a lease: the snapshot is neither collected nor removed while leased. */
  lease(id: string): Lease {
    const entry = this.get(id);
    entry.leases++;
    entry.lastUsedAtMs = Date.now();
    let released = false;
    return {
      entry,
      release: () => {
        if (released) return;
        released = true;
        entry.leases--;
        entry.lastUsedAtMs = Date.now();
        if (entry.deleted && entry.leases === 0) void this.removeDir(entry);
      },
    };
  }

  /** Removes a snapshot: stops its build; its files go once no stream reads them. */
  async delete(id: string, reason: RemovalReason = 'deleted'): Promise<void> {
    const entry = this.get(id);
    this.entries.delete(id);
    this.options.onRemoved?.(entry, reason);
    entry.deleted = true;
    entry.build.abort(new ShardsnapError(ErrorCodes.cancelled, `snapshot ${id} was deleted`));
    entry.notify();
    if (entry.leases === 0) await this.removeDir(entry);
  }

  /** Drops a failed build's files but keeps its FAILED entry so callers can see why. */
  async discardArtifact(entry: SnapshotEntry): Promise<void> {
    await rm(entry.artifactPath, { force: true });
  }

  /**
   * Applies the retention: removes the oldest READY snapshots beyond `keepRecent`.
   * A snapshot being streamed is skipped and goes in a later round.
   */
  async applyRetention(): Promise<string[]> {
    const keep = this.options.keepRecent ?? 0;
    if (keep <= 0) return [];
    const ready = this.list().filter((e) => e.meta.state === 'READY');
    const removed: string[] = [];
    for (const entry of ready.slice(0, Math.max(0, ready.length - keep))) {
      if (entry.leases > 0) continue;
      await this.delete(entry.meta.id, 'retention');
      removed.push(entry.meta.id);
    }
    return removed;
  }

  async collectGarbage(now = Date.now()): Promise<string[]> {
    const removed: string[] = [];
    for (const entry of this.list()) {
      const idle = entry.leases === 0 && entry.meta.state !== 'BUILDING';
      if (idle && now - entry.lastUsedAtMs >= this.options.ttlMs) {
        await this.delete(entry.meta.id, 'expired');
        removed.push(entry.meta.id);
      }
    }
    removed.push(...(await this.applyRetention()));
    return removed;
  }

  private async removeDir(entry: SnapshotEntry): Promise<void> {
    try {
      await rm(entry.dir, { recursive: true, force: true });
    } catch (error) {
      this.options.onError?.(error, `removing snapshot ${entry.meta.id}`);
    }
  }

  /** Stops collection and running builds, and waits until the builds have cleaned up. */
  async close(): Promise<void> {
    if (this.gcTimer) clearInterval(this.gcTimer);
    const builds: Array<Promise<void>> = [];
    for (const entry of this.entries.values()) {
      entry.build.abort(shuttingDown('node is shutting down'));
      builds.push(entry.buildDone);
    }
    await Promise.allSettled(builds);
  }
}

async function readManifest(path: string): Promise<SnapshotMeta | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as SnapshotMeta;
  } catch {
    return undefined;
  }
}
