import type { SlotRange } from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { ChunkCompression } from '../snapshot/chunk-codec';
import type { CallOptions } from '../wire/call-options';
import type { Connection } from '../wire/connection';
import { compressionToWire } from '../wire/convert';
import { unary } from '../wire/unary';

export interface CreateSnapshotOptions {
  slots?: readonly SlotRange[];
  strategy?: string;
  compression?: ChunkCompression;
  /** An incremental snapshot of the changes after this seq. */
  sinceSeq?: number;
  labels?: Record<string, string>;
}

/** Asks the node for a snapshot of `slots` (all when empty); resolves once it is registered. */
export function createSnapshot(
  conn: Connection,
  request: CreateSnapshotOptions,
  options: CallOptions = {},
): Promise<SnapshotInfo__Output> {
  return unary<SnapshotInfo__Output>(
    conn,
    'CreateSnapshot',
    (callOptions, cb) =>
      conn.snapshots.CreateSnapshot(
        {
          slots: [...(request.slots ?? [])],
          strategy: request.strategy ?? '',
          compression: compressionToWire(request.compression ?? 'none'),
          ...(request.sinceSeq !== undefined ? { sinceSeq: request.sinceSeq } : {}),
          labels: { ...(request.labels ?? {}) },
        },
        callOptions,
        cb,
      ),
    options,
  );
}

export function getSnapshot(
  conn: Connection,
  id: string,
  options: CallOptions = {},
): Promise<SnapshotInfo__Output> {
  return unary<SnapshotInfo__Output>(
    conn,
    'GetSnapshot',
    (callOptions, cb) => conn.snapshots.GetSnapshot({ snapshotId: id }, callOptions, cb),
    options,
  );
}

/**
 * Deletes a snapshot a transfer created for itself, once the transfer is over. Best
 * effort with a short deadline and no signal (it runs when the transfer was cancelled
 * too): a snapshot left behind expires with the node's TTL.
 */
export async function deleteRemoteSnapshot(conn: Connection, id: string): Promise<void> {
  // With force: the stream that just read it may not have let go of it yet on the node.
  await unary(
    undefined,
    'DeleteSnapshot',
    (callOptions, cb) =>
      conn.snapshots.DeleteSnapshot({ snapshotId: id, force: true }, callOptions, cb),
    { deadlineMs: 5_000 },
  ).catch(() => undefined);
}

/**
 * The snapshot a transfer reads: the one named by `snapshotId` (an unknown id fails here,
 * before the transfer writes anything), or a new one of the request's slots.
 */
export function snapshotToRead(
  conn: Connection,
  request: CreateSnapshotOptions & { snapshotId?: string },
  options: CallOptions = {},
): Promise<SnapshotInfo__Output> {
  return request.snapshotId
    ? getSnapshot(conn, request.snapshotId, options)
    : createSnapshot(conn, request, options);
}
