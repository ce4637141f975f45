import { type Throttle, cancelled } from '../core';
import type { SnapshotCatalog, SnapshotEntry } from '../snapshot';
import { type ArchiveRecord, archiveSnapshot } from './archive-snapshot';
import { listArchives, pruneArchives } from './catalog';
import { nodeArchivesPrefix } from './layout';
import type { ArchiveTargets } from './target';
import { archiveUri } from './uri';

export interface ArchiveSchedule {
  /** Time between the end of one run and the start of the next. */
  everyMs: number;
  bucket: string;
  prefix: string;
  /** Keep this node's newest N archives (under the prefix); 0 = keep all. */
  keep: number;
}

export interface SchedulerDeps {
  catalog: SnapshotCatalog;
  targets: ArchiveTargets;
  nodeId: string;
  /** The store's current seq: a run with nothing new since the last archive is skipped. */
  currentSeq(): Promise<number>;
  /** Starts a full snapshot build (its entry is READY or FAILED once `buildDone` settles). */
  createFullSnapshot(): Promise<SnapshotEntry>;
  /**
   * Admits the upload as one of the node's transfers (its rate limit and count): the
   * returned throttle is paid per piece, its signal cancels the run, `end` releases it.
   * Throws when the node cannot take a transfer now (the run fails, the next one comes).
   */
  beginUpload?(): { throttle: Throttle; signal: AbortSignal; end(): void };
  log: {
    info(fields: object, message: string): void;
    warn(fields: object, message: string): void;
  };
}

export type RunOutcome =
  | { kind: 'archived'; record: ArchiveRecord; pruned: ArchiveRecord[] }
  | { kind: 'skipped'; seq: number }
  | { kind: 'failed'; error: unknown };

/**
 * Archives the node on a schedule: a full snapshot, uploaded, then this node's archives
 * beyond `keep` deleted, then the snapshot removed unless a stream still reads it. Runs
 * never overlap; a failed run is logged and the next one comes as planned. `stop` aborts
 * a running upload (its multipart upload is aborted) and waits for it.
 */
export class ArchiveScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<RunOutcome> | undefined;
  private readonly stopping = new AbortController();
  private lastArchivedSeq: number | undefined;
  private held = false;
  /** Runs by outcome, for stats and tests. */
  readonly counts = { archived: 0, skipped: 0, failed: 0, pruned: 0 };
  lastOutcome: RunOutcome | undefined;

  constructor(
    private readonly schedule: ArchiveSchedule,
    private readonly deps: SchedulerDeps,
  ) {}

  start(): void {
    if (this.stopping.signal.aborted || this.held || this.timer) return;
    this.timer = setTimeout(() => void this.tick(), this.schedule.everyMs);
  }

  /** No new runs from now on; a run in progress goes on (see `stop`). */
  hold(): void {
    this.held = true;
    clearTimeout(this.timer);
  }

  /** Aborts a running upload and waits for it to wind down, at most `graceMs`. */
  async stop(graceMs = 5_000): Promise<void> {
    this.stopping.abort(cancelled('node is stopping'));
    clearTimeout(this.timer);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.running,
      new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
    ]);
    clearTimeout(timer);
  }

  private async tick(): Promise<void> {
    this.running = this.runOnce();
    const outcome = await this.running;
    this.running = undefined;
    this.lastOutcome = outcome;
    this.counts[outcome.kind]++;
    if (outcome.kind === 'archived') this.counts.pruned += outcome.pruned.length;
    if (!this.stopping.signal.aborted && !this.held) {
      this.timer = setTimeout(() => void this.tick(), this.schedule.everyMs);
    }
  }

  /** One run; never throws. */
  async runOnce(): Promise<RunOutcome> {
    const { deps, schedule } = this;
    let signal = this.stopping.signal;
    const started = Date.now();
    let entry: SnapshotEntry | undefined;
    let upload: ReturnType<NonNullable<SchedulerDeps['beginUpload']>> | undefined;
    try {
      const seq = await deps.currentSeq();
      if (seq === this.lastArchivedSeq) return { kind: 'skipped', seq };
      upload = deps.beginUpload?.();
      if (upload) signal = AbortSignal.any([signal, upload.signal]);
      entry = await deps.createFullSnapshot();
      const target = deps.targets.open(schedule.bucket);
      const record = await archiveSnapshot(deps.catalog, entry.meta.id, target, {
        prefix: schedule.prefix,
        signal,
        ...(upload ? { throttle: upload.throttle } : {}),
      });
      this.lastArchivedSeq = record.manifest.snapshot.seq;
      const mine = await listArchives(target, nodeArchivesPrefix(schedule.prefix, deps.nodeId), {
        signal,
      });
      const pruned = await pruneArchives(target, mine, schedule.keep, signal);
      deps.log.info(
        {
          uri: archiveUri(record.location),
          seq: record.manifest.snapshot.seq,
          bytes: record.manifest.size,
          ms: Date.now() - started,
          pruned: pruned.map((r) => archiveUri(r.location)),
        },
        'scheduled archive done',
      );
      return { kind: 'archived', record, pruned };
    } catch (error) {
      if (!signal.aborted) deps.log.warn({ err: error }, 'scheduled archive failed');
      return { kind: 'failed', error };
    } finally {
      upload?.end();
      if (entry) await this.discard(entry);
    }
  }

  /**
   * The snapshot was made for the archive: it goes (a build still running is stopped),
   * unless a stream reads it, and then the TTL takes it.
   */
  private async discard(entry: SnapshotEntry): Promise<void> {
    if (entry.deleted || entry.leases > 0) return;
    await this.deps.catalog.delete(entry.meta.id).catch((error: unknown) => {
      this.deps.log.warn({ err: error }, `removing archived snapshot ${entry.meta.id}`);
    });
  }
}
