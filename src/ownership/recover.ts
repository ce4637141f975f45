import type { Logger } from 'pino';
import { type Store, dropSlots } from '../store';
import type { Ownership } from './ownership';
import { describeRanges } from './slot-bitmap';

export interface RecoveryDeps {
  store: Store;
  ownership: Ownership;
  logger: Logger;
  /** True once the node is stopping: failures then are expected (the store closes). */
  stopping: () => boolean;
}

/**
 * Finishes at start what a crash interrupted, in the background:
 * - an import still 'importing' never got its data committed: whatever it installed is
 *   removed and the import forgotten (the migration is started again from scratch);
 * - slots given away whose keys were not removed yet are removed now.
 * Imports found 'committing' stay paused (see Ownership) for the migration to settle.
 * Never rejects: failures are logged and retried at the next start.
 */
export async function recoverOwnership(deps: RecoveryDeps): Promise<void> {
  const { store, ownership, logger } = deps;
  for (const record of ownership.imports()) {
    if (record.phase !== 'importing') continue;
    await step(deps, `leftovers of import ${record.id}`, async () => {
      await dropSlots(store, record.slots);
      await ownership.abandonImport(record.id);
      logger.info(
        { migration: record.id, slots: describeRanges(record.slots) },
        'removed the keys of an interrupted import',
      );
    });
  }
  const pending = ownership.pendingCleanup();
  if (pending.length === 0) return;
  await step(deps, `slots ${describeRanges(pending)} given away`, async () => {
    await dropSlots(store, pending);
    await ownership.cleaned(pending);
    logger.info({ slots: describeRanges(pending) }, 'removed the keys of slots given away');
  });
}

async function step(deps: RecoveryDeps, what: string, run: () => Promise<void>): Promise<void> {
  if (deps.stopping()) return;
  try {
    await run();
  } catch (error) {
    if (deps.stopping()) {
      deps.logger.debug({ err: error }, `cleanup of ${what} stopped with the node`);
    } else {
      deps.logger.warn(
        { err: error },
        `cleanup of ${what} failed; it is retried at the next start`,
      );
    }
  }
}
