import { internal } from '../core/errors';
import type { MigrationEvent__Output } from '../generated/shardsnap/v1/MigrationEvent';
import type { MigrationStatus } from '../migration/status';
import type { CallOptions } from '../wire/call-options';
import type { Connection } from '../wire/connection';
import { grpcStream, serverStream } from '../wire/server-stream';
import { unary } from '../wire/unary';
import type { MigrateSlotsRequest, MigrationRequest } from './requests';

export function statusFromWire(event: MigrationEvent__Output): MigrationStatus {
  return {
    migrationId: event.migrationId,
    phase: event.phase,
    slots: event.slots.map((r) => ({ start: r.start, end: r.end })),
    source: event.source,
    target: event.target,
    bytes: event.bytes,
    totalBytes: event.totalBytes,
    keys: event.keys,
    lag: event.lag,
    changesApplied: event.changesApplied,
    writePauseMs: event.writePauseMs,
    elapsedMs: event.elapsedMs,
    snapshotAttempts: event.snapshotAttempts,
    handoffAttempts: event.handoffAttempts,
    detail: event.detail,
    error: event.error,
  };
}

export interface MigrateOptions extends CallOptions {
  /** Each status as the migration goes (see migrationEvents for the iterable form). */
  onEvent?: (status: MigrationStatus) => void;
}

/**
 * The MigrateSlots call on the node of `conn` (the target): its statuses as they come, the
 * last one DONE. A FAILED or CANCELLED migration is yielded, then thrown as the node's
 * error. Stopping the iteration (or the signal) cancels the migration on the node.
 */
export function migrationEvents(
  conn: Connection,
  request: MigrateSlotsRequest,
  options: CallOptions = {},
): AsyncGenerator<MigrationStatus> {
  const events = serverStream<MigrationEvent__Output>(
    conn,
    'MigrateSlots',
    (callOptions) =>
      grpcStream(
        conn.migration.MigrateSlots(
          {
            source: request.source,
            slots: [...request.slots],
            maxPauseMs: request.maxPauseMs ?? 0,
            migrationId: request.migrationId ?? '',
          },
          callOptions,
        ),
      ),
    options,
  );
  return (async function* () {
    for await (const event of events) yield statusFromWire(event);
  })();
}

/**
 * Runs a migration on `target` (a client of the target node, or its connection) and
 * resolves with its DONE status; a FAILED or CANCELLED migration rejects with the node's
 * error, after `onEvent` saw it. Aborting the signal cancels the migration on the node.
 */
export async function migrateSlots(
  target: Connection | { readonly connection: Connection },
  request: MigrateSlotsRequest,
  options: MigrateOptions = {},
): Promise<MigrationStatus> {
  const conn = 'connection' in target ? target.connection : target;
  let last: MigrationStatus | undefined;
  for await (const status of migrationEvents(conn, request, options)) {
    last = status;
    options.onEvent?.(status);
  }
  if (last?.phase !== 'DONE') throw internal('MigrateSlots: the stream ended before DONE');
  return last;
}

export async function getMigration(
  conn: Connection,
  request: MigrationRequest,
  options: CallOptions = {},
): Promise<MigrationStatus> {
  const event = await unary<MigrationEvent__Output>(
    conn,
    'GetMigration',
    (callOptions, cb) =>
      conn.migration.GetMigration({ migrationId: request.migrationId }, callOptions, cb),
    options,
  );
  return statusFromWire(event);
}

export async function cancelMigration(
  conn: Connection,
  request: MigrationRequest,
  options: CallOptions = {},
): Promise<MigrationStatus> {
  const event = await unary<MigrationEvent__Output>(
    conn,
    'CancelMigration',
    (callOptions, cb) =>
      conn.migration.CancelMigration({ migrationId: request.migrationId }, callOptions, cb),
    options,
  );
  return statusFromWire(event);
}
