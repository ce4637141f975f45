import { performance } from 'node:perf_hooks';
import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  asError,
  failedPrecondition,
  hasReason,
  isShardsnapError,
} from '../core';
import { sendCommit } from './handoff-commit';
import { endPauses } from './rollback';
import type { SnapshotAttempt } from './run';
import type { HandoffCommit } from './source-peer';

/** A handoff attempt that ended with the slots on the source; another one may succeed. */
export class HandoffAborted extends ShardsnapError {
  constructor(
    message: string,
    /** The source ended the pause by itself (it refused the commit): nothing to abort there. */
    readonly pauseEnded = false,
  ) {
    super(ErrorCodes.failedPrecondition, message);
  }
}

/**
 * No answer within the pause limit (the source ends such a pause by itself), or a pause of
 * an earlier attempt the source still holds: the attempt is over, not the migration.
 */
function pauseUnconfirmed(error: unknown): boolean {
  return (
    isShardsnapError(error, ErrorCodes.unavailable) ||
    isShardsnapError(error, ErrorCodes.deadlineExceeded) ||
    hasReason(error, ErrorReasons.handoffAlreadyPrepared)
  );
}

/**
 * One handoff: the source pauses writes to the slots and names the seq that covers every
 * write it accepted; once that seq is applied here, the commit is sent, and on its answer
 * this node takes the slots. Throws HandoffAborted when the slots stay with the source.
 * Until the commit is sent, any way out (an aborted attempt, an error, a cancel) ends the
 * source's pause and this node's: nothing stays paused.
 */
export async function attemptHandoff(attempt: SnapshotAttempt): Promise<void> {
  const { run, feed, applier, incarnation } = attempt;
  const { deps, request, peer, handoff } = run;
  const { id, slots, maxPauseMs } = request;
  const pausedAt = performance.now();
  handoff.pause(deps.ownership, slots);
  let preparedAt = pausedAt;
  let drainedAt = pausedAt;
  let committed: HandoffCommit | undefined;
  try {
    const prepared = await peer
      .prepareHandoff(
        { migrationId: id, slots, target: deps.address, maxPauseMs },
        { signal: run.signal, deadlineMs: maxPauseMs },
      )
      .catch((error: unknown) => {
        if (run.signal.aborted || !pauseUnconfirmed(error)) throw error;
        throw new HandoffAborted(
          `the source did not confirm the pause within ${maxPauseMs} ms (${asError(error).message})`,
        );
      });
    if (prepared.incarnation && prepared.incarnation !== incarnation) {
      throw failedPrecondition(`source ${request.source} restarted during the migration`);
    }
    preparedAt = performance.now();
    // Leave a quarter of the limit for the commit round trip.
    if (!(await applier.applyUntil(feed, prepared.seq, pausedAt + maxPauseMs * 0.75, run.signal))) {
      throw new HandoffAborted(
        `applying the last changes (to seq ${prepared.seq}) would pause writes for more than ${maxPauseMs} ms`,
      );
    }
    // A cancel that came during the drain wins over the commit.
    run.signal.throwIfAborted();
    handoff.commitSent = true;
    drainedAt = performance.now();
    committed = await sendCommit(run);
    if (!committed) {
      handoff.commitSent = false;
      throw new HandoffAborted(
        `the source ended the pause before the commit arrived (limit ${maxPauseMs} ms)`,
        true,
      );
    }
  } catch (error) {
    if (error instanceof HandoffAborted && error.pauseEnded) handoff.resume();
    else if (!handoff.commitSent) await endPauses(run);
    throw error;
  }
  const committedAt = performance.now();
  await feed.close();
  await deps.ownership.completeImport(id);
  handoff.resume();
  run.status.writePauseMs = committed.writePauseMs;
  run.status.detail =
    `handoff: prepare ${Math.round(preparedAt - pausedAt)} ms, ` +
    `drain ${Math.round(drainedAt - preparedAt)} ms, commit ${Math.round(committedAt - drainedAt)} ms; ` +
    `on the source: commit arrived after ${committed.waitedMs} ms, persisted in ${committed.persistMs} ms`;
}
