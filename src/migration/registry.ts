import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  ErrorCodes,
  ErrorReasons,
  type SlotRange,
  ShardsnapError,
  type Throttle,
  formatSlotRanges,
  invalidArgument,
  notFound,
  slotRangesOverlap,
} from '../core';
import type { Ownership } from '../ownership';
import type { Store } from '../store';
import { MigrationJob } from './migration-job';
import type { MigrationTuning } from './tuning';
import { resolveImport } from './recover';
import type { ClientSecurity } from '../wire/security';

export interface MigrationRegistryDeps {
  store: Store;
  ownership: Ownership;
  address: string;
  logger: Logger;
  /** TLS and token of this node's calls to sources. */
  security?: ClientSecurity;
  /** Keys each migration's snapshot install put into the store (metrics). */
  onInstalled?: (keys: number) => void;
  tuning?: Partial<MigrationTuning>;
  /** See MigrationDeps.cleanupsDone. */
  cleanupsDone?: (slots: readonly SlotRange[]) => Promise<void>;
}

/** Finished migrations kept for GetMigration. */
const KEEP_FINISHED = 64;

const failed = (message: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, message);

/** The migrations this node runs as a target, and the settling of unfinished imports. */
export class MigrationRegistry {
  private readonly jobs = new Map<string, MigrationJob>();
  private readonly background = new Set<Promise<void>>();
  private readonly stopping = new AbortController();

  constructor(private readonly deps: MigrationRegistryDeps) {}

  get runningCount(): number {
    return [...this.jobs.values()].filter((job) => !job.finished).length;
  }

  /**
   * Starts a migration. `id`, when given, is the caller's (a controller's): it must be
   * new to this node, so that a retried call cannot start the same migration twice.
   */
  start(
    request: { source: string; slots: SlotRange[]; maxPauseMs: number; id?: string },
    options: { throttle?: Throttle } = {},
  ): MigrationJob {
    const { ownership } = this.deps;
    const { source, slots, maxPauseMs } = request;
    if (this.stopping.signal.aborted) {
      throw new ShardsnapError(ErrorCodes.unavailable, 'node is stopping');
    }
    if (request.id !== undefined) this.requireNewId(request.id);
    if (source === this.deps.address) {
      throw invalidArgument(`source ${source} is this node`);
    }
    if (ownership.ownsAny(slots)) {
      throw failed(
        `this node already owns some of slots ${formatSlotRanges(slots)} (owns ${formatSlotRanges(ownership.owned())})`,
      );
    }
    for (const job of this.jobs.values()) {
      if (!job.finished && slotRangesOverlap(job.request.slots, slots)) {
        throw failed(
          `slots ${formatSlotRanges(slots)} overlap migration ${job.request.id} in progress`,
        );
      }
    }
    for (const record of ownership.imports()) {
      if (slotRangesOverlap(record.slots, slots)) {
        throw failed(
          `slots ${formatSlotRanges(slots)} overlap unfinished import ${record.id} (${record.phase}); it is being settled`,
        );
      }
    }
    const id = request.id ?? `mig-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    const job = new MigrationJob(
      {
        ...this.deps,
        resolveInDoubt: (migrationId, release) => this.settle(migrationId, release),
        stopSignal: this.stopping.signal,
        ...(options.throttle ? { throttle: options.throttle } : {}),
      },
      { id, source, slots, maxPauseMs },
    );
    this.jobs.set(id, job);
    this.trim();
    return job;
  }

  /** ALREADY_EXISTS for an id this node runs, ran (among those kept) or has an import of. */
  private requireNewId(id: string): void {
    const known =
      this.jobs.has(id) || this.deps.ownership.imports().some((record) => record.id === id);
    if (known) {
      throw new ShardsnapError(
        ErrorCodes.alreadyExists,
        `migration ${id} already exists on this node; GetMigration tells how it went`,
        { reason: ErrorReasons.migrationExists, metadata: { migration_id: id } },
      );
    }
  }

  get(id: string): MigrationJob {
    if (!id) throw invalidArgument('migration id is required');
    const job = this.jobs.get(id);
    if (!job) throw notFound(`migration ${id} is not known to this node`);
    return job;
  }

  /**
   * Settles imports a previous run left 'committing' (their slots stay paused until then).
   * Imports that never reached their commit are dropped by the ownership recovery.
   */
  recover(): void {
    for (const record of this.deps.ownership.imports()) {
      if (record.phase === 'committing') this.settle(record.id, () => undefined);
    }
  }

  private settle(migrationId: string, release: () => void): void {
    const record = this.deps.ownership.imports().find((r) => r.id === migrationId);
    if (!record) {
      release();
      return;
    }
    this.track(
      resolveImport({ ...this.deps, signal: this.stopping.signal }, record, release).then(
        (outcome) => {
          if (outcome) this.jobs.get(migrationId)?.settled(outcome);
        },
        (error: unknown) =>
          this.deps.logger.error({ err: error, migration: migrationId }, 'cannot settle an import'),
      ),
    );
  }

  private track(job: Promise<void>): void {
    this.background.add(job);
    void job.finally(() => this.background.delete(job));
  }

  private trim(): void {
    const finished = [...this.jobs.values()].filter((job) => job.finished);
    for (const job of finished.slice(0, Math.max(0, finished.length - KEEP_FINISHED))) {
      this.jobs.delete(job.request.id);
    }
  }

  /** Cancels what can be cancelled and waits for every migration to end. */
  async close(): Promise<void> {
    this.stopping.abort();
    for (const job of this.jobs.values()) job.cancel('node is stopping');
    await Promise.all([...this.jobs.values()].map((job) => job.done));
    await Promise.all([...this.background]);
  }
}
