import { MAX_SLOT, abortableSleep, failedPrecondition, formatSlotRanges } from '../../core';
import { ShardsnapClient } from '../../client';
import type { ClientSecurity } from '../../wire/security';
import type { EtcdConnection } from '../etcd';
import type { ClusterKeys } from '../keys';
import { type NodeInfo, listNodes } from '../node-info';
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
  options: { waitMs?: number; security?: ClientSecurity } = {},
): Promise<Topology> {
  const { security } = options;
  const giveUpAt = Date.now() + (options.waitMs ?? 0);
  while (!(await listNodes(conn, keys)).has(node)) {
    if (Date.now() >= giveUpAt) {
      throw failedPrecondition(
        `node ${node} is not registered in cluster ${keys.cluster}; start it with --etcd and --cluster ${keys.cluster} first`,
      );
    }
    await abortableSleep(200, undefined, 'waiting for the node to register');
  }
  await requireOthersOwnNothing(await listNodes(conn, keys), node, security);
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

/**
 * A node that joined with slots of its own (a lone node turned cluster member) would keep
 * serving them beside the node given every slot: init is refused then.
 */
async function requireOthersOwnNothing(
  nodes: Map<string, NodeInfo>,
  chosen: string,
  security: ClientSecurity | undefined,
): Promise<void> {
  for (const [id, info] of nodes) {
    if (id === chosen) continue;
    const client = new ShardsnapClient(info.address, { security: security ?? {} });
    try {
      const { owned } = await client.topology({}, { deadlineMs: ASK_MS });
      if (owned.length > 0) {
        throw failedPrecondition(
          `node ${id} owns slots ${formatSlotRanges(owned)} of its own: init names the node that holds the data (${id}), or that node must join with an empty data dir`,
        );
      }
    } finally {
      client.close();
    }
  }
}

const ASK_MS = 5_000;
