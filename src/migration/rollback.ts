import type { Logger } from 'pino';
import { dropSlots } from '../store';
import type { MigrationRun } from './run';
import { ABORT_HANDOFF_TIMEOUT_MS } from './tuning';

/** Ends the source's pause (best effort: it also ends by itself at its limit) and this node's. */
export async function endPauses(run: MigrationRun): Promise<void> {
  await run.peer
    .abortHandoff(run.request.id, undefined, { deadlineMs: ABORT_HANDOFF_TIMEOUT_MS })
    .catch(() => undefined);
  run.handoff.resume();
}

/**
 * Undoes an import that never sent its commit: the source's pause and this node's end,
 * the imported keys and the import record go. What fails here is left to a restart,
 * which drops imports that never reached their commit.
 */
export async function rollBack(run: MigrationRun, log: Logger): Promise<void> {
  const { store, ownership } = run.deps;
  const { id, slots } = run.request;
  await endPauses(run);
  try {
    await dropSlots(store, slots);
    await ownership.abandonImport(id);
  } catch (cleanupError) {
    log.error(
      { err: cleanupError },
      'cleanup after a failed migration failed; a restart finishes it',
    );
  }
}
