import { ErrorCodes, ShardsnapError, asError, isShardsnapError, retry } from '../core';
import type { MigrationRun } from './run';
import type { HandoffCommit } from './source-peer';

/** Outcome of a commit that got no answer and still has none after retries. */
export class InDoubt extends ShardsnapError {
  constructor(message: string, cause: unknown) {
    super(ErrorCodes.unavailable, message, { cause });
  }
}

/** The source's refusal of a commit: it had ended the pause, the slots stay there. */
const refused = (error: unknown): boolean => isShardsnapError(error, ErrorCodes.failedPrecondition);

/**
 * Sends the commit; a lost answer is retried (the source answers the same for a commit it
 * made) until `inDoubtRetryMs` pass or the node stops, then the outcome is in doubt.
 * Resolves undefined when the source refused.
 */
export async function sendCommit(run: MigrationRun): Promise<HandoffCommit | undefined> {
  const { id, source } = run.request;
  try {
    return await retry(
      () => run.peer.commitHandoff(id, { deadlineMs: run.tuning.commitTimeoutMs }),
      {
        signal: run.deps.stopSignal,
        forMs: run.tuning.inDoubtRetryMs,
        delayMs: 100,
        maxDelayMs: 2_000,
        retryable: (error) => !refused(error),
        onRetry: (error) =>
          run.emit('HANDOFF', { detail: `commit unanswered, retrying: ${asError(error).message}` }),
      },
    );
  } catch (error) {
    if (refused(error)) return undefined;
    throw new InDoubt(
      `no answer from source ${source} to the commit of migration ${id}; the slots stay paused here until it answers`,
      error,
    );
  }
}
