import { type SlotRange, dataLoss, normalizeSlotRanges } from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';

export type MigrationState = 'running' | 'done' | 'aborted';

/**
 * A migration the controller planned, written to `/shardsnap/NAME/migrations/<id>` before
 * it starts. 'running' until the controller commits the topology change in the same
 * transaction that makes it 'done', or finds it did not happen ('aborted').
 */
export interface MigrationRecord {
  id: string;
  slots: SlotRange[];
  from: string;
  to: string;
  fromAddress: string;
  toAddress: string;
  state: MigrationState;
  /** The topology version it was planned on, and the one its commit wrote. */
  baseVersion: number;
  committedVersion?: number;
  /** Why it was planned: move, rebalance, remove-node. */
  purpose: string;
  controller: string;
  createdAtMs: number;
  updatedAtMs: number;
  /** Bytes and keys moved, write pause (from the target's final event). */
  bytes?: number;
  keys?: number;
  writePauseMs?: number;
  error?: string;
}

export function encodeMigration(record: MigrationRecord): string {
  return JSON.stringify(record);
}

export function decodeMigration(text: string, key: string): MigrationRecord {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw dataLoss(`migration record ${key} is not JSON`, error);
  }
  const { id, slots, from, to, state } = doc;
  if (
    typeof id !== 'string' ||
    typeof from !== 'string' ||
    typeof to !== 'string' ||
    !Array.isArray(slots) ||
    (state !== 'running' && state !== 'done' && state !== 'aborted')
  ) {
    throw dataLoss(`migration record ${key} is malformed`);
  }
  return {
    ...(doc as unknown as MigrationRecord),
    slots: normalizeSlotRanges(slots as SlotRange[]),
  };
}

/** Every recorded migration, oldest first. */
export async function listMigrations(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<MigrationRecord[]> {
  const answer = await etcdCall(conn, 'listing migrations', () =>
    conn.client.getAll().prefix(keys.migrations).exec(),
  );
  return answer.kvs
    .map((kv) => decodeMigration(kv.value.toString('utf8'), kv.key.toString('utf8')))
    .sort((a, b) => a.createdAtMs - b.createdAtMs || a.id.localeCompare(b.id));
}
