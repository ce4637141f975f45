import type { Logger } from 'pino';
import { formatSlotRanges, retry } from '../core';
import type { ClientSecurity } from '../wire/security';
import type { ImportRecord, Ownership } from '../ownership';
import { type Store, dropSlots } from '../store';
import { SourcePeer } from './source-peer';
import { ABORT_HANDOFF_TIMEOUT_MS } from './tuning';

export interface ImportSettlingDeps {
  store: Store;
  ownership: Ownership;
  logger: Logger;
  /** This node's address: where the source's MOVED points once the handoff committed. */
  address: string;
  security?: ClientSecurity;
  /** Fires when the node stops; an unresolved import stays recorded for the next start. */
  signal: AbortSignal;
}

/**
 * Settles an import whose commit may or may not have reached the source. The source's
 * answer to AbortHandoff is final: either the handoff committed (the slots are ours) or
 * its pause is over and a commit would be refused (what was imported is dropped).
 * Retries until the source answers; `release` ends the local pause of the slots.
 */
export async function resolveImport(
  deps: ImportSettlingDeps,
  record: Pick<ImportRecord, 'id' | 'slots' | 'source'>,
  release: () => void,
): Promise<'committed' | 'dropped' | undefined> {
  const log = deps.logger.child({
    migration: record.id,
    slots: formatSlotRanges(record.slots),
    source: record.source,
  });
  const peer = SourcePeer.connect(record.source, deps.security);
  const { signal } = deps;
  try {
    return await retry(
      async () => {
        const answer = await peer.abortHandoff(
          record.id,
          { slots: record.slots, target: deps.address },
          { signal, deadlineMs: ABORT_HANDOFF_TIMEOUT_MS },
        );
        if (answer.committed) {
          await deps.ownership.completeImport(record.id);
          log.info('in-doubt import resolved: the source committed, the slots are here');
          return 'committed' as const;
        }
        await dropSlots(deps.store, record.slots);
        await deps.ownership.abandonImport(record.id);
        log.info('in-doubt import resolved: the source kept the slots; imported keys dropped');
        return 'dropped' as const;
      },
      {
        signal,
        delayMs: 200,
        maxDelayMs: 5_000,
        retryable: () => true,
        onRetry: (error) =>
          log.warn({ err: error }, 'cannot reach the source to settle an import; retrying'),
      },
    );
  } catch (error) {
    // Stopping: the import stays recorded, the next start settles it.
    if (signal.aborted) return undefined;
    throw error;
  } finally {
    release();
    peer.close();
  }
}
