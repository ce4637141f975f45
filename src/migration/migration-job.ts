import type { Logger } from 'pino';
import {
  ErrorCodes,
  ShardsnapError,
  asError,
  cancelled,
  formatSlotRanges,
  internal,
  isShardsnapError,
  retry,
  untilAborted,
} from '../core';
import { dropSlots } from '../store';
import { catchUp } from './catch-up';
import { InDoubt } from './handoff-commit';
import { handOff } from './handoff-phase';
import { HandoffState } from './handoff-state';
import type { MigrationDeps, MigrationRequest, MigrationRun, SnapshotAttempt } from './run';
import { beginAttempt, checkSource, installSnapshot } from './snapshot-phase';
import { rollBack } from './rollback';
import { SourcePeer } from './source-peer';
import {
  type MigrationPhase,
  type MigrationStatus,
  TERMINAL_PHASES,
  initialStatus,
} from './status';
import { StatusPublisher } from './status-publisher';
import { DEFAULT_TUNING, type MigrationTuning } from './tuning';

/** The phases of one snapshot attempt, in order; each runs until its work is done. */
const PHASES: ReadonlyArray<(attempt: SnapshotAttempt) => Promise<void>> = [
  installSnapshot,
  catchUp,
  handOff,
];

/** The source's change log no longer holds what followed the snapshot: take a fresh one. */
class ChangeLogGap extends ShardsnapError {
  constructor(
    readonly gap: ShardsnapError,
    readonly afterSeq: number,
  ) {
    super(ErrorCodes.outOfRange, gap.message, { cause: gap });
  }
}

/**
 * One migration of slots from a source node to this node (the target), as a sequence of
 * phases (see PHASES and docs/design/migration.md):
 *
 * 1. SNAPSHOT: a slot-range snapshot of the source at seq S is pulled and installed; the
 *    source's changes after S are read into a buffer meanwhile.
 * 2. CATCH_UP: the buffered and live changes are applied until little is pending.
 * 3. HANDOFF: the source pauses writes, this node drains to the seq it names, the source
 *    commits (ownership moves there, durably), then this node takes the slots.
 *
 * A gap in the source's change log restarts from a fresh snapshot. Until the commit is
 * sent, failure or cancel leaves the slots with the source and drops what was imported
 * here. The import is recorded durably first, so a restart finishes the cleanup (or,
 * after a commit was sent, asks the source for the outcome).
 */
export class MigrationJob {
  /** Resolves with the final status (never rejects). */
  readonly done: Promise<MigrationStatus>;
  private readonly controller = new AbortController();
  private readonly publisher: StatusPublisher;
  private readonly tuning: MigrationTuning;
  private readonly handoff = new HandoffState();
  private failureError: ShardsnapError | undefined;
  /**
   * Snapshots taken on the source, deleted when the migration ends: removing a large file
   * right before the handoff would make the source's durable commit wait for the
   * file system to free it.
   */
  private readonly snapshotIds: string[] = [];

  constructor(
    private readonly deps: MigrationDeps,
    readonly request: MigrationRequest,
  ) {
    this.tuning = { ...DEFAULT_TUNING, ...deps.tuning };
    this.publisher = new StatusPublisher(
      initialStatus(request, deps.address),
      this.tuning.progressEveryMs,
    );
    this.done = this.run();
  }

  get status(): MigrationStatus {
    return this.publisher.status;
  }

  get finished(): boolean {
    return TERMINAL_PHASES.has(this.status.phase);
  }

  /** Listens to every status change; returns the unsubscribe. */
  subscribe(listener: (status: MigrationStatus) => void): () => void {
    return this.publisher.subscribe(listener);
  }

  /** Cancels unless the commit was already sent (then the migration runs to its end). */
  cancel(reason = 'migration cancelled'): boolean {
    if (this.handoff.commitSent || this.finished) return false;
    this.controller.abort(cancelled(reason));
    return true;
  }

  private emit(phase: MigrationPhase, changes?: Partial<MigrationStatus>, force?: boolean): void {
    this.publisher.emit(phase, changes, force);
  }

  private async run(): Promise<MigrationStatus> {
    const { ownership, logger, security } = this.deps;
    const { id, slots, source } = this.request;
    const log = logger.child({ migration: id, slots: formatSlotRanges(slots), source });
    const peer = SourcePeer.connect(source, security);
    const run: MigrationRun = {
      deps: this.deps,
      request: this.request,
      tuning: this.tuning,
      peer,
      signal: this.controller.signal,
      status: this.status,
      handoff: this.handoff,
      emit: (phase, changes, force) => this.emit(phase, changes, force),
    };
    try {
      const cleanups = this.deps.cleanupsDone?.(slots);
      if (cleanups) await untilAborted(cleanups, run.signal);
      await ownership.beginImport({ id, slots, source });
      this.emit('SNAPSHOT');
      await this.migrate(run, await checkSource(run));
      // The handoff's steps (detail) say where a long write pause went.
      const { writePauseMs, keys, detail } = this.status;
      log.info({ writePauseMs, keys, handoff: detail }, 'migration done');
      this.emit('DONE', { lag: 0 });
    } catch (error) {
      await this.fail(run, error, log);
    } finally {
      await Promise.all(this.snapshotIds.map((snapshotId) => peer.deleteSnapshot(snapshotId)));
      peer.close();
    }
    return { ...this.status };
  }

  /** Snapshot attempts: a gap in the source's change log is never skipped, it restarts. */
  private async migrate(run: MigrationRun, incarnation: string): Promise<void> {
    const { maxSnapshotAttempts } = this.tuning;
    const retrying = async (gap: ChangeLogGap): Promise<void> => {
      this.deps.logger.info(
        { err: gap.gap, migration: this.request.id },
        'change log gap; taking a fresh snapshot',
      );
      this.emit('SNAPSHOT', {
        detail: `the source's change log no longer holds what followed seq ${gap.afterSeq}; taking a fresh snapshot`,
      });
      await dropSlots(this.deps.store, this.request.slots);
    };
    await retry((n) => this.attempt(run, incarnation, n), {
      signal: run.signal,
      attempts: maxSnapshotAttempts,
      delayMs: 0,
      retryable: (error) => error instanceof ChangeLogGap,
      onRetry: (error) => retrying(error as ChangeLogGap),
    }).catch((error: unknown) => {
      if (!(error instanceof ChangeLogGap)) throw error;
      throw new ShardsnapError(
        ErrorCodes.resourceExhausted,
        `the source's change log could not cover ${maxSnapshotAttempts} snapshot installs; raise its --change-log-size [${error.message}]`,
        { cause: error.gap },
      );
    });
  }

  /** Runs the phases on one snapshot; a failed change feed is why a phase stopped. */
  private async attempt(run: MigrationRun, incarnation: string, n: number): Promise<void> {
    this.emit('SNAPSHOT', { snapshotAttempts: n, bytes: 0, keys: 0, totalBytes: 0 });
    const attempt = await beginAttempt(run, incarnation, (id) => this.snapshotIds.push(id));
    const { feed } = attempt;
    try {
      for (const phase of PHASES) await phase(attempt);
    } catch (error) {
      await feed.close();
      const gap = feed.failed;
      if (gap === undefined || run.signal.aborted || this.handoff.commitSent) throw error;
      if (isShardsnapError(gap, ErrorCodes.outOfRange)) {
        throw new ChangeLogGap(gap, attempt.snapshot.seq);
      }
      throw asError(gap);
    } finally {
      await feed.close();
    }
  }

  private async fail(run: MigrationRun, error: unknown, log: Logger): Promise<void> {
    const { id } = this.request;
    const signal = this.controller.signal;
    const wasCancelled = signal.aborted && !(error instanceof InDoubt);
    const reason = wasCancelled
      ? ((signal.reason as Error | undefined)?.message ?? 'migration cancelled')
      : asError(error).message;
    this.failureError = error instanceof ShardsnapError ? error : internal(reason, error);
    // Once the commit was sent the slots may be ours: never drop, let the settling decide.
    if (error instanceof InDoubt || this.handoff.commitSent) {
      // The slots stay paused here until the source tells the outcome.
      log.error({ err: error }, 'migration in doubt');
      this.deps.resolveInDoubt(id, this.handoff.handOver());
      this.emit('FAILED', { error: reason });
      return;
    }
    await rollBack(run, log);
    log.warn({ err: error }, wasCancelled ? 'migration cancelled' : 'migration failed');
    this.emit(wasCancelled ? 'CANCELLED' : 'FAILED', { error: reason });
  }

  /** The outcome of a commit that was in doubt when the migration ended, once known. */
  settled(outcome: 'committed' | 'dropped'): void {
    if (outcome === 'committed') {
      this.failureError = undefined;
      this.emit('DONE', {
        error: '',
        detail: 'the commit was in doubt; the source confirmed it: the slots moved',
      });
    } else {
      this.emit('FAILED', {
        detail: 'the commit was in doubt; the source kept the slots: imported keys dropped',
      });
    }
  }

  /** The error a failed or cancelled migration ended with (for the RPC status). */
  get failure(): ShardsnapError | undefined {
    if (this.status.phase === 'CANCELLED') return cancelled(this.status.error);
    if (this.status.phase !== 'FAILED') return undefined;
    return this.failureError;
  }
}
