import {
  ErrorCodes,
  ErrorReasons,
  type SlotRange,
  asError,
  hasReason,
  isShardsnapError,
  unavailable,
} from '../../core';
import { ShardsnapClient } from '../../client';
import { TERMINAL_PHASES } from '../../migration';
import type { ClientSecurity } from '../../wire/security';
import type { MigrationRecord } from '../migration-records';
import type { Controller } from './controller';

/** One node call while settling: short, so that a dead node does not stall the loop. */
const ASK_MS = 3_000;
const POLL_MS = 300;

type Verdict = { kind: 'committed' } | { kind: 'aborted' } | { kind: 'wait'; why: string };

/**
 * Finds out what became of a recorded migration and writes the outcome: the target owns
 * the slots → the topology change is committed; the source owns them and the target
 * neither runs nor imports them → the record is aborted (the topology never changed).
 * Anything else (the migration still running, a commit in doubt, a node unreachable) is
 * waited for, up to `timeoutMs`; then the record stays 'running' for the next controller.
 */
export async function settleMigration(
  controller: Controller,
  record: MigrationRecord,
  options: { security: ClientSecurity | undefined; timeoutMs: number },
): Promise<'committed' | 'aborted'> {
  const security = options.security ?? {};
  const target = new ShardsnapClient(record.toAddress, { security });
  const source = new ShardsnapClient(record.fromAddress, { security });
  const giveUpAt = Date.now() + options.timeoutMs;
  try {
    for (;;) {
      let verdict = await judge(record, target, source);
      try {
        if (verdict.kind === 'committed') {
          await controller.commit(record);
          return 'committed';
        }
        if (verdict.kind === 'aborted') {
          await controller.markRecord(record, 'aborted');
          return 'aborted';
        }
      } catch (error) {
        // The nodes have decided; only writing it down waits, for etcd to come back.
        if (!hasReason(error, ErrorReasons.etcdUnavailable)) throw error;
        verdict = { kind: 'wait', why: `etcd unreachable: ${asError(error).message}` };
      }
      if (Date.now() >= giveUpAt) {
        throw unavailable(
          `migration ${record.id} of slots to ${record.to} cannot be settled yet (${verdict.why}); it stays recorded and the next controller settles it`,
        );
      }
      await controller.pause(POLL_MS);
    }
  } finally {
    target.close();
    source.close();
  }
}

async function judge(
  record: MigrationRecord,
  target: ShardsnapClient,
  source: ShardsnapClient,
): Promise<Verdict> {
  try {
    const status = await target.getMigration({ migrationId: record.id }, { deadlineMs: ASK_MS });
    if (!TERMINAL_PHASES.has(status.phase)) {
      return { kind: 'wait', why: `still ${status.phase} on the target` };
    }
  } catch (error) {
    // A target that restarted (or never got the call) no longer knows the id: its slots tell.
    if (!isShardsnapError(error, ErrorCodes.notFound)) {
      return {
        kind: 'wait',
        why: `target ${record.toAddress} unreachable: ${asError(error).message}`,
      };
    }
  }
  let targetView;
  try {
    targetView = await target.topology({}, { deadlineMs: ASK_MS });
  } catch (error) {
    return {
      kind: 'wait',
      why: `target ${record.toAddress} unreachable: ${asError(error).message}`,
    };
  }
  if (covers(targetView.owned, record.slots)) return { kind: 'committed' };
  if (intersects(targetView.importing, record.slots)) {
    return { kind: 'wait', why: 'the target is still settling its import' };
  }
  try {
    const sourceView = await source.topology({}, { deadlineMs: ASK_MS });
    if (covers(sourceView.owned, record.slots)) return { kind: 'aborted' };
  } catch (error) {
    return {
      kind: 'wait',
      why: `source ${record.fromAddress} unreachable: ${asError(error).message}`,
    };
  }
  return { kind: 'wait', why: 'neither node owns all of the slots (a handoff in doubt)' };
}

function covers(owned: readonly SlotRange[], wanted: readonly SlotRange[]): boolean {
  return wanted.every((w) => owned.some((o) => o.start <= w.start && w.end <= o.end));
}

function intersects(a: readonly SlotRange[], b: readonly SlotRange[]): boolean {
  return a.some((x) => b.some((y) => x.start <= y.end && y.start <= x.end));
}
