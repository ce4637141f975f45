import { dataLoss } from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';

/** What a node publishes at `/shardsnap/NAME/nodes/<id>` while its lease lives. */
export interface NodeInfo {
  id: string;
  /** host:port peers and clients dial (`--advertise`). */
  address: string;
  backend: string;
  /** What the node may hold (memory or disk), in bytes; 0 = unknown. */
  capacityBytes: number;
  startedAtMs: number;
  pid: number;
}

export function decodeNodeInfo(text: string, key: string): NodeInfo {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (error) {
    throw dataLoss(`node record ${key} is not JSON`, error);
  }
  if (typeof doc.id !== 'string' || typeof doc.address !== 'string') {
    throw dataLoss(`node record ${key} has no id or address`);
  }
  return doc as unknown as NodeInfo;
}

/** The nodes registered now (their leases live), by id. */
export async function listNodes(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<Map<string, NodeInfo>> {
  const answer = await etcdCall(conn, 'listing nodes', () =>
    conn.client.getAll().prefix(keys.nodes).exec(),
  );
  const nodes = new Map<string, NodeInfo>();
  for (const kv of answer.kvs) {
    const info = decodeNodeInfo(kv.value.toString('utf8'), kv.key.toString('utf8'));
    nodes.set(info.id, info);
  }
  return nodes;
}

/** Nodes drained and deregistered by remove-node. */
export async function listRemoved(conn: EtcdConnection, keys: ClusterKeys): Promise<Set<string>> {
  const answer = await etcdCall(conn, 'listing removed nodes', () =>
    conn.client.getAll().prefix(keys.removed).keys(),
  );
  return new Set(answer.map((key) => keys.nameIn(keys.removed, key)));
}
