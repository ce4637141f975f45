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
