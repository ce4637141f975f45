import { failedPrecondition, retry } from '../core';
import { catchUp } from './catch-up';
import { HandoffAborted, attemptHandoff } from './handoff-attempt';
import type { SnapshotAttempt } from './run';

/**
 * HANDOFF: catches up, then tries a handoff; an aborted one (the slots stayed with the
 * source) is tried again, up to `maxHandoffAttempts` times in all.
 */
export async function handOff(attempt: SnapshotAttempt): Promise<void> {
  const { run, feed, applier } = attempt;
  const { maxHandoffAttempts } = run.tuning;
  try {
    await retry(
      async (n) => {
        run.emit('HANDOFF', { handoffAttempts: n, lag: applier.lag(feed.headSeq) });
        await catchUp(attempt);
        // Recorded before the pause: a restart from here asks the source for the outcome.
        await run.deps.ownership.markCommitting(run.request.id);
        await attemptHandoff(attempt).catch((error: unknown) => {
          if (error instanceof HandoffAborted) {
            run.emit('HANDOFF', { detail: `handoff aborted: ${error.message}` });
          }
          throw error;
        });
      },
      {
        signal: run.signal,
        attempts: maxHandoffAttempts,
        delayMs: 0,
        retryable: (error) => error instanceof HandoffAborted,
      },
    );
  } catch (error) {
    if (!(error instanceof HandoffAborted)) throw error;
    throw failedPrecondition(
      `handoff aborted ${maxHandoffAttempts} times; the source keeps the slots: ${error.message}`,
    );
  }
}
