import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import {
  ErrorCodes,
  type Mutation,
  type SlotRange,
  ShardsnapError,
  type Throttle,
  cancelled,
  formatSlotRanges,
  isShardsnapError,
  normalizeSlotRanges,
} from '../core';
import { Connection, call } from '../wire/connection';
import type { ClientSecurity } from '../wire/security';
import { streamChanges } from '../transfer/change-stream';
import { abortHandoff, commitHandoff, prepareHandoff } from './handoff-calls';
import { pullIntoStore } from '../transfer/pull';
import { createSnapshot, deleteRemoteSnapshot } from '../transfer/remote-snapshot';
import type { ShardStats__Output } from '../generated/shardsnap/v1/ShardStats';
import type { Ownership } from '../ownership';
import { type Store, dropSlots } from '../store';
import { ChangeFeed, type FeedBatch } from './change-feed';
import type { MigrationPhase, MigrationStatus } from './status';

export interface MigrationTuning {
  /** Fresh snapshots taken when the source's change log cannot cover an install. */
  maxSnapshotAttempts: number;
  maxHandoffAttempts: number;
  /** Changes buffered here while the snapshot installs. */
  feedBufferBytes: number;
  /** How long the target waits for a commit answer before the outcome is in doubt. */
  commitTimeoutMs: number;
  /** How long an in-doubt commit is retried before the migration reports it. */
  inDoubtRetryMs: number;
  /** Minimum spacing of progress events. */
  progressEveryMs: number;
  /** How long catch-up waits for a small lag before a handoff is tried anyway. */
  catchUpPatienceMs: number;
}

export const DEFAULT_TUNING: MigrationTuning = {
  maxSnapshotAttempts: 3,
  maxHandoffAttempts: 3,
  feedBufferBytes: 64 << 20,
  commitTimeoutMs: 5_000,
  inDoubtRetryMs: 30_000,
  progressEveryMs: 100,
  catchUpPatienceMs: 5_000,
};

export interface MigrationDeps {
  store: Store;
  ownership: Ownership;
  /** This node's address, where MOVED points once the slots are here. */
  address: string;
  logger: Logger;
  /** TLS and token of this node's calls to the source. */
  security?: ClientSecurity;
  /** Paid for every snapshot chunk received (rate limits, byte counts). */
  throttle?: Throttle;
  /** Keys the snapshot install put into the store (metrics). */
  onInstalled?: (keys: number) => void;
  tuning?: Partial<MigrationTuning>;
  /** Takes over an import whose commit got no answer; `release` ends its local pause. */
  resolveInDoubt: (migrationId: string, release: () => void) => void;
  /** Fires when the node stops: an unanswered commit is then left to the next start. */
  stopSignal?: AbortSignal;
}

export interface MigrationRequest {
  id: string;
  source: string;
  slots: SlotRange[];
  maxPauseMs: number;
}

const MAX_MERGED_MUTATIONS = 4096;
/** Deadline of the target's status calls to the source. */
const SOURCE_CALL_TIMEOUT_MS = 5_000;
/** Source seqs a target may trail by when it starts a handoff. */
const CAUGHT_UP_LAG = 64;

const CHANGE_STREAM_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_receive_message_length': 64 << 20,
};

/** Outcome of a commit that got no answer and still has none after retries. */
class InDoubt extends ShardsnapError {
  constructor(message: string, cause: unknown) {
    super(ErrorCodes.unavailable, message, { cause });
  }
}

/**
 * One migration of slots from a source node to this node (the target):
 *
 * 1. SNAPSHOT: a slot-range snapshot of the source at seq S is pulled and installed; the
 *    source's changes after S are read into a buffer meanwhile.
 * 2. CATCH_UP: the buffered and live changes are applied until nothing is pending.
 * 3. HANDOFF: the source pauses writes to the slots and names the seq that covers every
 *    write it accepted; once that seq is applied here, the source commits (ownership moves,
 *    durably, and writes resume there with MOVED to this node), then this node takes the
 *    slots. A drain slower than the pause limit aborts the handoff; the source also ends
 *    the pause by itself at the limit, and a late commit is refused.
 *
 * Until the commit is sent, failure or cancel leaves the slots with the source and drops
 * what was imported here. The import is recorded durably first, so a restart finishes
 * the cleanup (or, after a commit was sent, asks the source for the outcome).
 */
export class MigrationJob {
  readonly status: MigrationStatus;
  private readonly controller = new AbortController();
  private readonly listeners = new Set<(status: MigrationStatus) => void>();
  private readonly tuning: MigrationTuning;
  private readonly startedAt = performance.now();
  private lastProgressAt = 0;
  private commitSent = false;
  private appliedSeq = 0;
  private releaseLocalPause: (() => void) | undefined;
  /**
   * Snapshots taken on the source, deleted when the migration ends: removing a large file
   * right before the handoff would make the source's durable commit wait for the
   * file system to free it.
   */
  private readonly snapshotIds: string[] = [];
  /** Resolves with the final status (never rejects). */
  readonly done: Promise<MigrationStatus>;

  constructor(
    private readonly deps: MigrationDeps,
    readonly request: MigrationRequest,
  ) {
    this.tuning = { ...DEFAULT_TUNING, ...deps.tuning };
    this.status = {
      migrationId: request.id,
      phase: 'SNAPSHOT',
      slots: request.slots,
      source: request.source,
      target: deps.address,
      bytes: 0,
      totalBytes: 0,
      keys: 0,
      lag: 0,
      changesApplied: 0,
      writePauseMs: 0,
      elapsedMs: 0,
      snapshotAttempts: 0,
      handoffAttempts: 0,
      detail: '',
      error: '',
    };
    this.done = this.run();
  }

  get finished(): boolean {
    return (
      this.status.phase === 'DONE' ||
      this.status.phase === 'FAILED' ||
      this.status.phase === 'CANCELLED'
    );
  }

  /** Listens to every status change; returns the unsubscribe. */
  subscribe(listener: (status: MigrationStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Cancels unless the commit was already sent (then the migration runs to its end). */
  cancel(reason = 'migration cancelled'): boolean {
    if (this.commitSent || this.finished) return false;
    this.controller.abort(cancelled(reason));
    return true;
  }

  private get signal(): AbortSignal {
    return this.controller.signal;
  }

  private emit(phase: MigrationPhase, changes: Partial<MigrationStatus> = {}, force = true): void {
    const now = performance.now();
    if (
      !force &&
      phase === this.status.phase &&
      now - this.lastProgressAt < this.tuning.progressEveryMs
    ) {
      Object.assign(this.status, changes);
      return;
    }
    this.lastProgressAt = now;
    Object.assign(this.status, changes, { phase, elapsedMs: Math.round(now - this.startedAt) });
    const snapshot = { ...this.status, slots: [...this.status.slots] };
    for (const listener of this.listeners) listener(snapshot);
  }

  private async run(): Promise<MigrationStatus> {
    const { ownership, logger } = this.deps;
    const { id, slots, source } = this.request;
    const log = logger.child({ migration: id, slots: formatSlotRanges(slots), source });
    const conn = new Connection(source, { security: this.deps.security });
    try {
      await ownership.beginImport({ id, slots, source });
      this.emit('SNAPSHOT');
      const incarnation = await this.checkSource(conn);
      await this.migrate(conn, incarnation);
      log.info(
        { writePauseMs: this.status.writePauseMs, keys: this.status.keys },
        'migration done',
      );
      this.emit('DONE', { lag: 0 });
    } catch (error) {
      await this.fail(conn, error, log);
    } finally {
      await Promise.all(this.snapshotIds.map((id) => deleteRemoteSnapshot(conn, id)));
      conn.close();
    }
    return { ...this.status };
  }

  /** The source must own every slot now; its incarnation pins the change stream's history. */
  private async checkSource(conn: Connection): Promise<string> {
    const stats = await call<ShardStats__Output>(
      'Stats',
      (cb) => conn.shard.Stats({}, { deadline: Date.now() + SOURCE_CALL_TIMEOUT_MS }, cb),
      this.signal,
    );
    const owned = stats.ownedSlots.map((r) => ({ start: r.start, end: r.end }));
    const covered = this.request.slots.every((want) =>
      owned.some((have) => have.start <= want.start && want.end <= have.end),
    );
    if (!covered) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `source ${this.request.source} does not own all of slots ${formatSlotRanges(this.request.slots)} (owns ${formatSlotRanges(owned) || 'none'})`,
      );
    }
    return stats.incarnation;
  }

  /**
   * Installs a snapshot and hands off. When the source's change log no longer holds what
   * this node still has to apply (a gap), what was installed is dropped and a fresh
   * snapshot taken: a gap is never skipped.
   */
  private async migrate(conn: Connection, incarnation: string): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let feed: ChangeFeed | undefined;
      let snapshotSeq = 0;
      try {
        this.emit('SNAPSHOT', { snapshotAttempts: attempt, bytes: 0, keys: 0, totalBytes: 0 });
        const info = await createSnapshot(conn, { slots: this.request.slots });
        snapshotSeq = info.seq;
        feed = this.openFeed(info.seq, incarnation);
        this.snapshotIds.push(info.id);
        await this.install(info.id, info.seq, feed);
        await this.catchUp(conn, feed);
        await this.handOff(conn, feed, incarnation);
        return;
      } catch (error) {
        await feed?.close();
        const gap = feed?.failed;
        if (
          this.signal.aborted ||
          this.commitSent ||
          !isShardsnapError(gap, ErrorCodes.outOfRange)
        ) {
          throw gap !== undefined && !this.signal.aborted && !this.commitSent ? gap : error;
        }
        if (attempt >= this.tuning.maxSnapshotAttempts) {
          throw new ShardsnapError(
            ErrorCodes.resourceExhausted,
            `the source's change log could not cover ${attempt} snapshot installs; raise its --change-log-size [${gap.message}]`,
            { cause: gap },
          );
        }
        this.deps.logger.info(
          { err: gap, migration: this.request.id },
          'change log gap; taking a fresh snapshot',
        );
        this.emit('SNAPSHOT', {
          detail: `the source's change log no longer holds what followed seq ${snapshotSeq}; taking a fresh snapshot`,
        });
        await dropSlots(this.deps.store, this.request.slots);
      } finally {
        await feed?.close();
      }
    }
  }

  /** The source's changes after `fromSeq`, read into a buffer from now on. */
  private openFeed(fromSeq: number, incarnation: string): ChangeFeed {
    const { slots, source } = this.request;
    // Its own channel with ordinary HTTP/2 windows: while the feed's buffer is full, the
    // stream waits in the source's change log rather than in transport buffers.
    const feedConn = new Connection(source, {
      security: this.deps.security,
      channelOptions: CHANGE_STREAM_CHANNEL_OPTIONS,
    });
    return new ChangeFeed(
      (feedSignal) =>
        streamChanges(feedConn, {
          slots,
          fromSeq,
          incarnation,
          signal: AbortSignal.any([this.signal, feedSignal]),
        }),
      this.tuning.feedBufferBytes,
      () => feedConn.close(),
    );
  }

  /** Pulls and installs the snapshot; stops early if the change feed fails meanwhile. */
  private async install(snapshotId: string, seq: number, feed: ChangeFeed): Promise<void> {
    const signal = AbortSignal.any([this.signal, feed.failureSignal]);
    const outcome = await pullIntoStore(this.deps.store, {
      source: this.request.source,
      security: this.deps.security,
      throttle: this.deps.throttle,
      // The source's artifact must hold exactly the slots being imported, nothing more.
      admit: (header) => {
        const wanted = formatSlotRanges(normalizeSlotRanges(this.request.slots));
        const got = formatSlotRanges(normalizeSlotRanges(header.slots));
        if (got !== wanted) {
          throw new ShardsnapError(
            ErrorCodes.failedPrecondition,
            `the source sent an artifact of slots ${got}; the migration imports ${wanted}`,
          );
        }
      },
      snapshotId,
      signal,
      onProgress: (p) =>
        this.emit(
          'SNAPSHOT',
          { bytes: p.bytesReceived, totalBytes: p.totalBytes, keys: p.keysStaged },
          false,
        ),
    });
    this.appliedSeq = seq;
    this.deps.onInstalled?.(outcome.keysInstalled);
    this.emit('CATCH_UP', {
      keys: outcome.keysInstalled,
      bytes: outcome.bytes,
      totalBytes: outcome.bytes,
    });
  }

  /**
   * Applies changes until this node trails the source by little: nothing buffered, and the
   * source's current seq (asked, since batches that waited in buffers carry an old one) is
   * close to what was applied, so that a handoff drains in a moment.
   */
  private async catchUp(conn: Connection, feed: ChangeFeed): Promise<void> {
    const patientUntil = performance.now() + this.tuning.catchUpPatienceMs;
    // Before a handoff attempt, catching up is part of the handoff: the phase stays.
    const phase = this.status.phase === 'HANDOFF' ? 'HANDOFF' : 'CATCH_UP';
    for (;;) {
      const batches = await feed.take(50, this.signal);
      await this.apply(batches);
      this.emit(phase, { lag: Math.max(0, feed.headSeq - this.appliedSeq) }, false);
      if (!feed.established) continue;
      // Writes that come faster than they apply here would keep the lag up for ever: past
      // the patience, the handoff is tried anyway (the pause stops them; its limit holds).
      if (performance.now() > patientUntil) return;
      if (feed.buffered > 0 || this.appliedSeq < feed.receivedSeq) continue;
      if (feed.headSeq - this.appliedSeq > CAUGHT_UP_LAG) continue;
      const { seq } = await call<ShardStats__Output>(
        'Stats',
        (cb) => conn.shard.Stats({}, { deadline: Date.now() + SOURCE_CALL_TIMEOUT_MS }, cb),
        this.signal,
      );
      const lag = Math.max(0, seq - this.appliedSeq);
      this.emit(phase, { lag }, false);
      if (lag <= CAUGHT_UP_LAG) return;
    }
  }

  /**
   * Applies source batches in order, merged into few local writes: a merged batch has the
   * effect of its parts in sequence (types are checked mutation by mutation, and each
   * mutation is applied at the clock reading of its source batch, so expiries are decided
   * as they were on the source). Fewer writes let the target keep up with a source
   * written from many clients.
   */
  private async apply(batches: readonly FeedBatch[]): Promise<void> {
    const writes: Array<Promise<unknown>> = [];
    let merged: Mutation[] = [];
    let clocks: number[] = [];
    let lastSeq = this.appliedSeq;
    let parts = 0;
    const flush = (): void => {
      if (merged.length === 0) return;
      // Issued without waiting: the store applies writes in call order.
      writes.push(this.deps.store.write(merged, { atMs: clocks }));
      merged = [];
      clocks = [];
    };
    for (const batch of batches) {
      if (batch.seq <= lastSeq) continue;
      if (batch.mutations.length > 0) {
        if (merged.length >= MAX_MERGED_MUTATIONS) flush();
        // A source too old to send its clock reading: this node's clock decides.
        const at = batch.atMs > 0 ? batch.atMs : Date.now();
        for (const m of batch.mutations) {
          merged.push(m);
          clocks.push(at);
        }
        parts++;
      }
      lastSeq = batch.seq;
    }
    flush();
    await Promise.all(writes);
    this.appliedSeq = lastSeq;
    this.status.changesApplied += parts;
  }

  /** Applies changes until `seq` is reached, or gives up at `deadline` (performance.now()). */
  private async drainTo(feed: ChangeFeed, seq: number, deadline: number): Promise<boolean> {
    while (this.appliedSeq < seq) {
      const wait = deadline - performance.now();
      if (wait <= 0) return false;
      await this.apply(await feed.take(Math.min(wait, 20), this.signal));
    }
    return true;
  }

  private async handOff(conn: Connection, feed: ChangeFeed, incarnation: string): Promise<void> {
    let lastReason = '';
    for (let attempt = 1; attempt <= this.tuning.maxHandoffAttempts; attempt++) {
      this.emit('HANDOFF', {
        handoffAttempts: attempt,
        lag: Math.max(0, feed.headSeq - this.appliedSeq),
      });
      await this.catchUp(conn, feed);
      // Recorded before the pause: a restart from here asks the source for the outcome.
      await this.deps.ownership.markCommitting(this.request.id);
      const outcome = await this.tryHandOff(conn, feed, incarnation);
      if (outcome.done) return;
      lastReason = outcome.reason;
      this.emit('HANDOFF', { detail: `handoff aborted: ${lastReason}` });
    }
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `handoff aborted ${this.tuning.maxHandoffAttempts} times; the source keeps the slots: ${lastReason}`,
    );
  }

  /**
   * One handoff attempt. Until the commit is sent, any way out of it (an aborted attempt,
   * an error, a cancel) ends the source's pause and this node's: nothing stays paused.
   */
  private async tryHandOff(
    conn: Connection,
    feed: ChangeFeed,
    incarnation: string,
  ): Promise<{ done: true } | { done: false; reason: string }> {
    const { ownership, address } = this.deps;
    const { id, slots, maxPauseMs } = this.request;
    const pausedAt = performance.now();
    this.releasePause();
    this.releaseLocalPause = ownership.pause(slots);
    const abort = async (): Promise<void> => {
      await abortHandoff(conn, id).catch(() => undefined);
      this.releasePause();
    };
    let committed: Awaited<ReturnType<MigrationJob['commit']>>;
    let preparedAt: number;
    let drainedAt: number;
    try {
      let prepared: { seq: number; incarnation: string };
      try {
        prepared = await prepareHandoff(
          conn,
          { migrationId: id, slots, target: address, maxPauseMs },
          this.signal,
        );
      } catch (error) {
        // No answer within the pause limit (the source ends such a pause by itself), or a
        // pause of an earlier attempt the source still holds: this attempt is over.
        const retryable =
          isShardsnapError(error, ErrorCodes.unavailable) ||
          (isShardsnapError(error, ErrorCodes.failedPrecondition) &&
            /already prepared/.test(error.message));
        if (this.signal.aborted || !retryable) throw error;
        await abort();
        return {
          done: false,
          reason: `the source did not confirm the pause within ${maxPauseMs} ms (${(error as Error).message})`,
        };
      }
      if (prepared.incarnation && prepared.incarnation !== incarnation) {
        throw new ShardsnapError(
          ErrorCodes.failedPrecondition,
          `source ${this.request.source} restarted during the migration`,
        );
      }
      preparedAt = performance.now();
      // Leave a quarter of the limit for the commit round trip.
      const drained = await this.drainTo(feed, prepared.seq, pausedAt + maxPauseMs * 0.75);
      if (!drained) {
        await abort();
        return {
          done: false,
          reason: `applying the last changes (to seq ${prepared.seq}) would pause writes for more than ${maxPauseMs} ms`,
        };
      }
      // A cancel that came during the drain wins over the commit.
      this.signal.throwIfAborted();
      this.commitSent = true;
      drainedAt = performance.now();
      committed = await this.commit(conn);
    } catch (error) {
      if (!this.commitSent) await abort();
      throw error;
    }
    const committedAt = performance.now();
    if (!committed) {
      this.commitSent = false;
      this.releasePause();
      return {
        done: false,
        reason: `the source ended the pause before the commit arrived (limit ${maxPauseMs} ms)`,
      };
    }
    await feed.close();
    await ownership.completeImport(id);
    this.releasePause();
    this.status.writePauseMs = committed.writePauseMs;
    this.status.detail =
      `handoff: prepare ${Math.round(preparedAt - pausedAt)} ms, ` +
      `drain ${Math.round(drainedAt - preparedAt)} ms, commit ${Math.round(committedAt - drainedAt)} ms; ` +
      `on the source: commit arrived after ${committed.waitedMs} ms, persisted in ${committed.persistMs} ms`;
    return { done: true };
  }

  /**
   * Sends the commit; a lost answer is retried (the source answers the same for a commit it
   * made). Resolves undefined when the source refused (it had ended the pause).
   */
  private async commit(
    conn: Connection,
  ): Promise<{ writePauseMs: number; waitedMs: number; persistMs: number } | undefined> {
    const { id } = this.request;
    const giveUpAt = performance.now() + this.tuning.inDoubtRetryMs;
    let delay = 100;
    for (;;) {
      try {
        return await commitHandoff(conn, id, this.tuning.commitTimeoutMs);
      } catch (error) {
        if (isShardsnapError(error, ErrorCodes.failedPrecondition)) return undefined;
        if (performance.now() > giveUpAt || this.deps.stopSignal?.aborted) {
          throw new InDoubt(
            `no answer from source ${this.request.source} to the commit of migration ${id}; the slots stay paused here until it answers`,
            error,
          );
        }
        this.emit('HANDOFF', {
          detail: `commit unanswered, retrying: ${(error as Error).message}`,
        });
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 2_000);
      }
    }
  }

  private releasePause(): void {
    this.releaseLocalPause?.();
    this.releaseLocalPause = undefined;
  }

  private async fail(conn: Connection, error: unknown, log: Logger): Promise<void> {
    const { ownership, store } = this.deps;
    const { id, slots } = this.request;
    const wasCancelled = this.signal.aborted && !(error instanceof InDoubt);
    const reason = wasCancelled
      ? ((this.signal.reason as Error | undefined)?.message ?? 'migration cancelled')
      : error instanceof Error
        ? error.message
        : String(error);
    this.failureError =
      error instanceof ShardsnapError
        ? error
        : new ShardsnapError(ErrorCodes.internal, reason, { cause: error });
    // Once the commit was sent the slots may be ours: never drop, let the settling decide.
    if (error instanceof InDoubt || this.commitSent) {
      // The slots stay paused here until the source tells the outcome.
      log.error({ err: error }, 'migration in doubt');
      const release = this.releaseLocalPause ?? (() => undefined);
      this.releaseLocalPause = undefined;
      this.deps.resolveInDoubt(id, release);
      this.emit('FAILED', { error: reason });
      return;
    }
    await abortHandoff(conn, id).catch(() => undefined);
    this.releasePause();
    try {
      await dropSlots(store, slots);
      await ownership.abandonImport(id);
    } catch (cleanupError) {
      log.error(
        { err: cleanupError },
        'cleanup after a failed migration failed; a restart finishes it',
      );
    }
    log.warn({ err: error }, wasCancelled ? 'migration cancelled' : 'migration failed');
    this.emit(wasCancelled ? 'CANCELLED' : 'FAILED', { error: reason });
  }

  /**
   * The outcome of a commit that was in doubt when the migration ended, once the source
   * told it: the status says what became of the slots.
   */
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

  private failureError: ShardsnapError | undefined;
}
