import type { Logger } from 'pino';
import { formatSlotRanges } from '../core';
import { Connection } from '../wire/connection';
import type { ClientSecurity } from '../wire/security';
import { abortHandoff } from './handoff-calls';
import type { ImportRecord, Ownership } from '../ownership';
import { type Store, dropSlots } from '../store';

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
  const conn = new Connection(record.source, { security: deps.security });
  let delay = 200;
  try {
    while (!deps.signal.aborted) {
      try {
        const answer = await abortHandoff(conn, record.id, {
          slots: record.slots,
          target: deps.address,
        });
        if (answer.committed) {
          await deps.ownership.completeImport(record.id);
          log.info('in-doubt import resolved: the source committed, the slots are here');
          return 'committed';
        }
        await dropSlots(deps.store, record.slots);
        await deps.ownership.abandonImport(record.id);
        log.info('in-doubt import resolved: the source kept the slots; imported keys dropped');
        return 'dropped';
      } catch (error) {
        if (deps.signal.aborted) return undefined;
        log.warn({ err: error }, 'cannot reach the source to settle an import; retrying');
        await sleep(delay, deps.signal);
        delay = Math.min(delay * 2, 5_000);
      }
    }
    return undefined;
  } finally {
    release();
    conn.close();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
