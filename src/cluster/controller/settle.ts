import {
  ErrorCodes,
  ErrorReasons,
  asError,
  hasReason,
  isShardsnapError,
  slotRangesCover,
  slotRangesOverlap,
  unavailable,
} from '../../core';
import { ShardsnapClient } from '../../client';
import { TERMINAL_PHASES } from '../../migration';
import type { ClientSecurity } from '../../wire/security';
import type { MigrationRecord } from '../migration-records';
import { listNodes } from '../node-info';
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
  const clients = new Map<string, ShardsnapClient>();
  const clientOf = (address: string): ShardsnapClient => {
    let client = clients.get(address);
    if (!client) {
      client = new ShardsnapClient(address, { security: options.security ?? {} });
      clients.set(address, client);
    }
    return client;
  };
  const giveUpAt = Date.now() + options.timeoutMs;
  try {
    for (;;) {
      // A node that restarted elsewhere (a new address) is asked where it is now.
      const nodes = await listNodes(controller.conn, controller.keys).catch(() => undefined);
      const target = clientOf(nodes?.get(record.to)?.address ?? record.toAddress);
      const source = clientOf(nodes?.get(record.from)?.address ?? record.fromAddress);
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
    for (const client of clients.values()) client.close();
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
        why: `target ${target.address} unreachable: ${asError(error).message}`,
      };
    }
  }
  let targetView;
  try {
    targetView = await target.topology({}, { deadlineMs: ASK_MS });
  } catch (error) {
    return {
      kind: 'wait',
      why: `target ${target.address} unreachable: ${asError(error).message}`,
    };
  }
  if (slotRangesCover(targetView.owned, record.slots)) return { kind: 'committed' };
  if (slotRangesOverlap(targetView.importing, record.slots)) {
    return { kind: 'wait', why: 'the target is still settling its import' };
  }
  try {
    const sourceView = await source.topology({}, { deadlineMs: ASK_MS });
    if (slotRangesCover(sourceView.owned, record.slots)) return { kind: 'aborted' };
  } catch (error) {
    return {
      kind: 'wait',
      why: `source ${source.address} unreachable: ${asError(error).message}`,
    };
  }
  return { kind: 'wait', why: 'neither node owns all of the slots (a handoff in doubt)' };
}
