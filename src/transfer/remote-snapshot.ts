import type { SlotRange } from '../core';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { ChunkCompression } from '../snapshot';
import { compressionToWire } from '../wire/convert';
import { type Connection, call } from '../wire/connection';

export interface CreateSnapshotOptions {
  slots?: SlotRange[];
  strategy?: string;
  compression?: ChunkCompression;
}

export function createSnapshot(
  conn: Connection,
  options: CreateSnapshotOptions,
): Promise<SnapshotInfo__Output> {
  return call<SnapshotInfo__Output>('CreateSnapshot', (cb) =>
    conn.snapshots.CreateSnapshot(
      {
        slots: options.slots ?? [],
        strategy: options.strategy ?? '',
        compression: compressionToWire(options.compression ?? 'none'),
      },
      cb,
    ),
  );
}

export function getSnapshot(conn: Connection, id: string): Promise<SnapshotInfo__Output> {
  return call<SnapshotInfo__Output>('GetSnapshot', (cb) => conn.snapshots.GetSnapshot({ id }, cb));
}

/**
 * Deletes a snapshot a transfer created for itself, once the transfer is over. Best
 * effort with a short deadline: a snapshot left behind expires with the node's TTL.
 */
export async function deleteRemoteSnapshot(conn: Connection, id: string): Promise<void> {
  // With force: the stream that just read it may not have let go of it yet on the node.
  await call('DeleteSnapshot', (cb) =>
    conn.snapshots.DeleteSnapshot({ id, force: true }, { deadline: Date.now() + 5_000 }, cb),
  ).catch(() => undefined);
}
