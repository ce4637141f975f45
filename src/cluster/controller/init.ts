import { MAX_SLOT, abortableSleep, failedPrecondition } from '../../core';
import type { EtcdConnection } from '../etcd';
import type { ClusterKeys } from '../keys';
import { listNodes } from '../node-info';
import { type Topology, encodeTopology } from '../topology';
import { readTopology } from '../topology-store';
import { commitIf, putOp } from '../txn';

/**
 * Writes the first topology: every slot to `node`, version 1. Only once per cluster (the
 * transaction requires that no topology exists), and only to a node that is registered
 * (a node just started may take a moment: it is waited for up to `waitMs`).
 */
export async function initCluster(
  conn: EtcdConnection,
  keys: ClusterKeys,
  node: string,
  options: { waitMs?: number } = {},
): Promise<Topology> {
  const giveUpAt = Date.now() + (options.waitMs ?? 0);
  while (!(await listNodes(conn, keys)).has(node)) {
    if (Date.now() >= giveUpAt) {
      throw failedPrecondition(
        `node ${node} is not registered in cluster ${keys.cluster}; start it with --etcd and --cluster ${keys.cluster} first`,
      );
    }
    await abortableSleep(200, undefined, 'waiting for the node to register');
  }
  const topology: Topology = {
    version: 1,
    cluster: keys.cluster,
    slots: [{ start: 0, end: MAX_SLOT, node }],
    updatedAtMs: Date.now(),
  };
  const { succeeded } = await commitIf(
    conn,
    'writing the first topology',
    [{ key: keys.topology, target: 'Create', op: '==', value: 0 }],
    [putOp(keys.topology, encodeTopology(topology))],
  );
  if (!succeeded) {
    const { topology: existing } = await readTopology(conn, keys);
    throw failedPrecondition(
      `cluster ${keys.cluster} already has a topology (version ${existing.version}); init runs once`,
      { metadata: { version: existing.version } },
    );
  }
  return topology;
}
