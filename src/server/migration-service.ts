import { cancelled, invalidArgument } from '../core';
import type { MigrationEvent } from '../generated/shardsnap/v1/MigrationEvent';
import type { MigrationHandlers } from '../generated/shardsnap/v1/Migration';
import type { SlotRange as SlotRangeMessage } from '../generated/shardsnap/v1/SlotRange';
import {
  MAX_PAUSE_LIMIT_MS,
  type MigrationJob,
  type MigrationRegistry,
  type MigrationStatus,
  type SourceHandoffs,
  TERMINAL_PHASES,
} from '../migration';
import { slotRangesFromWire } from '../wire/convert';
import { type CallHooks, serverStream, unary } from './calls';
import { parseHostPort } from './config';
import { peerFailure } from './peer-errors';
import { checkPeer } from './snapshot-service';
import type { NodeContext } from './node-context';

export const DEFAULT_MAX_PAUSE_MS = 1_000;

export interface MigrationContext extends NodeContext {
  readonly address: string;
  readonly incarnation: string;
  readonly migrations: MigrationRegistry;
  readonly handoffs: SourceHandoffs;
}

function statusToWire(status: MigrationStatus): MigrationEvent {
  return { ...status };
}

/** Slots of a migration request: required (an empty list would mean every slot). */
function requiredSlots(slots: readonly SlotRangeMessage[] | undefined, what: string) {
  if (!slots || slots.length === 0) throw invalidArgument(`${what}: slots are required`);
  return slotRangesFromWire(slots);
}

function maxPause(ms: number | undefined): number {
  const value = Number(ms ?? 0) || DEFAULT_MAX_PAUSE_MS;
  if (value > MAX_PAUSE_LIMIT_MS) {
    throw invalidArgument(`max pause ${value} ms is above the limit of ${MAX_PAUSE_LIMIT_MS} ms`);
  }
  return value;
}

const MIGRATION_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The caller's migration id (undefined: the node picks one). Ids travel in logs, error
 * metadata and the ownership file, so only plain characters are taken.
 */
function callerMigrationId(id: string | undefined): string | undefined {
  if (!id) return undefined;
  if (!MIGRATION_ID.test(id)) {
    throw invalidArgument(
      `MigrateSlots: migration id ${JSON.stringify(id.slice(0, 80))} must be 1 to 64 of A-Z a-z 0-9 . _ -`,
    );
  }
  return id;
}

/** Waits up to `ms` for the job to end (a cancel returns once the cleanup is done). */
async function settled(job: MigrationJob, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    job.done,
    new Promise((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

export function migrationService(node: MigrationContext, hooks: CallHooks): MigrationHandlers {
  return {
    MigrateSlots: serverStream('MigrateSlots', hooks, async (request, send, signal) => {
      const slots = requiredSlots(request.slots, 'MigrateSlots');
      if (!request.source) throw invalidArgument('MigrateSlots: source is required');
      parseHostPort(request.source);
      const id = callerMigrationId(request.migrationId);
      await checkPeer(node, request.source, 'MigrateSlots');
      const transfer = node.transfers.begin('recv', 'MigrateSlots');
      let job: MigrationJob;
      try {
        job = node.migrations.start(
          {
            source: request.source,
            slots,
            maxPauseMs: maxPause(request.maxPauseMs),
            ...(id === undefined ? {} : { id }),
          },
          { throttle: transfer },
        );
      } catch (error) {
        transfer.end();
        throw error;
      }
      const cancelAtShutdown = (): void => {
        job.cancel('the node is shutting down');
      };
      // At shutdown, a migration past its grace is cancelled like any transfer.
      transfer.signal.addEventListener('abort', cancelAtShutdown, { once: true });
      const ended = (): void => {
        transfer.signal.removeEventListener('abort', cancelAtShutdown);
        transfer.end();
      };
      job.done.then(ended, ended);
      // Progress events of one phase coalesce when the client reads slowly; phase changes never do.
      const pending: MigrationStatus[] = [{ ...job.status }];
      let wake: (() => void) | undefined;
      // How the call ends is decided by the first terminal event (an in-doubt FAILED may
      // later become DONE; this call has reported FAILED by then).
      let ending: { phase: string; failure: Error | undefined } | undefined;
      const unsubscribe = job.subscribe((status) => {
        if (TERMINAL_PHASES.has(status.phase) && !ending) {
          ending = { phase: status.phase, failure: job.failure };
        }
        const last = pending[pending.length - 1];
        if (last && last.phase === status.phase && !TERMINAL_PHASES.has(status.phase)) {
          pending[pending.length - 1] = status;
        } else {
          pending.push(status);
        }
        wake?.();
      });
      const onCancel = (): void => {
        job.cancel('the client cancelled the MigrateSlots call');
      };
      signal.addEventListener('abort', onCancel, { once: true });
      try {
        for (;;) {
          const next = pending.shift();
          if (!next) {
            await new Promise<void>((resolve) => {
              wake = resolve;
            });
            wake = undefined;
            continue;
          }
          if (!signal.aborted) await send(statusToWire(next)).catch(() => undefined);
          if (TERMINAL_PHASES.has(next.phase)) break;
        }
      } finally {
        unsubscribe();
        signal.removeEventListener('abort', onCancel);
      }
      await job.done;
      if (ending?.phase === 'CANCELLED') throw cancelled(job.status.error);
      if (ending?.failure) throw peerFailure(node, ending.failure, request.source, 'MigrateSlots');
    }),

    CancelMigration: unary('CancelMigration', hooks, async (request) => {
      const job = node.migrations.get(request.migrationId);
      job.cancel('cancelled by CancelMigration');
      await settled(job, 10_000);
      return statusToWire(job.status);
    }),

    GetMigration: unary('GetMigration', hooks, (request) =>
      Promise.resolve(statusToWire(node.migrations.get(request.migrationId).status)),
    ),

    PrepareHandoff: unary('PrepareHandoff', hooks, async (request) => {
      const slots = requiredSlots(request.slots, 'PrepareHandoff');
      if (!request.target) throw invalidArgument('PrepareHandoff: target is required');
      parseHostPort(request.target);
      const { seq } = await node.handoffs.prepare({
        id: request.migrationId,
        slots,
        target: request.target,
        maxPauseMs: maxPause(request.maxPauseMs),
      });
      return { seq, incarnation: node.incarnation };
    }),

    CommitHandoff: unary('CommitHandoff', hooks, (request) => {
      if (!request.migrationId) throw invalidArgument('migration id is required');
      return node.handoffs.commit(request.migrationId);
    }),

    AbortHandoff: unary('AbortHandoff', hooks, (request) => {
      if (!request.migrationId) throw invalidArgument('migration id is required');
      const handedTo =
        request.slots.length > 0 && request.target
          ? { slots: slotRangesFromWire(request.slots), target: request.target }
          : undefined;
      return node.handoffs.abort(request.migrationId, handedTo);
    }),
  };
}
