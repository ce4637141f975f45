import type * as grpc from '@grpc/grpc-js';
import { type SlotRange, ShardsnapError, ErrorCodes, cancelled } from '../core';
import type { MigrationEvent__Output } from '../generated/shardsnap/v1/MigrationEvent';
import type { MigrationStatus } from '../migration/status';
import { fromServiceError } from '../wire/status';
import { type Connection, call } from '../wire/connection';

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

export interface MigrateOptions {
  /** host:port of the node that owns the slots now. */
  source: string;
  slots: SlotRange[];
  /** Longest write pause the handoff may cause (default 1000 ms on the node). */
  maxPauseMs?: number;
  signal?: AbortSignal;
  onEvent?: (status: MigrationStatus) => void;
}

/**
 * Runs a migration on the node of `conn` (the target) and resolves with its DONE status.
 * A FAILED or CANCELLED migration rejects with the node's error, after `onEvent` saw it.
 * Aborting `signal` cancels the migration on the node.
 */
export function migrateSlots(conn: Connection, options: MigrateOptions): Promise<MigrationStatus> {
  return new Promise<MigrationStatus>((resolve, reject) => {
    let last: MigrationStatus | undefined;
    const stream = conn.migration.MigrateSlots({
      source: options.source,
      slots: options.slots,
      maxPauseMs: options.maxPauseMs ?? 0,
    });
    const onAbort = (): void => stream.cancel();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (error?: Error): void => {
      options.signal?.removeEventListener('abort', onAbort);
      if (error !== undefined) reject(error);
      else if (last?.phase === 'DONE') resolve(last);
      else reject(new ShardsnapError(ErrorCodes.internal, 'MigrateSlots: stream ended early'));
    };
    stream.on('data', (event: MigrationEvent__Output) => {
      last = statusFromWire(event);
      options.onEvent?.(last);
    });
    stream.on('error', (error: grpc.ServiceError) => {
      finish(
        options.signal?.aborted
          ? cancelled('migration cancelled')
          : fromServiceError(error, 'MigrateSlots'),
      );
    });
    stream.on('end', () => finish());
  });
}

export async function getMigration(
  conn: Connection,
  migrationId: string,
): Promise<MigrationStatus> {
  const event = await call<MigrationEvent__Output>('GetMigration', (cb) =>
    conn.migration.GetMigration({ migrationId }, cb),
  );
  return statusFromWire(event);
}

export async function cancelMigration(
  conn: Connection,
  migrationId: string,
): Promise<MigrationStatus> {
  const event = await call<MigrationEvent__Output>('CancelMigration', (cb) =>
    conn.migration.CancelMigration({ migrationId }, cb),
  );
  return statusFromWire(event);
}
