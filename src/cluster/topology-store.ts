import { ErrorReasons, type ShardsnapError, failedPrecondition } from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';
import { type Topology, decodeTopology, emptyTopology, encodeTopology } from './topology';
import { type Compare, type TxnOp, commitIf, putOp } from './txn';

/** The topology with the etcd revision it was read at ('0' while none exists). */
export interface VersionedTopology {
  topology: Topology;
  revision: string;
}

export async function readTopology(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<VersionedTopology> {
  const answer = await etcdCall(conn, 'reading the topology', () =>
    conn.client.get(keys.topology).exec(),
  );
  const kv = answer.kvs[0];
  if (!kv) return { topology: emptyTopology(keys.cluster), revision: '0' };
  return {
    topology: decodeTopology(kv.value.toString('utf8'), keys.cluster),
    revision: kv.mod_revision,
  };
}

/**
 * Writes `next` in place of the topology read at `base`, with `ops` in the same
 * transaction, if the topology key has not changed since and every `fence` compare holds.
 * Refused (TOPOLOGY_CHANGED) when another change came first: a lost update is impossible.
 */
export async function writeTopology(
  conn: EtcdConnection,
  keys: ClusterKeys,
  base: VersionedTopology,
  next: Topology,
  extra: { fence?: readonly Compare[]; ops?: readonly TxnOp[]; what?: string } = {},
): Promise<VersionedTopology> {
  if (next.version !== base.topology.version + 1) {
    throw failedPrecondition(
      `topology version ${next.version} does not follow ${base.topology.version}`,
    );
  }
  const { succeeded, revision } = await commitIf(
    conn,
    extra.what ?? 'writing the topology',
    [{ key: keys.topology, target: 'Mod', op: '==', value: base.revision }, ...(extra.fence ?? [])],
    [putOp(keys.topology, encodeTopology(next)), ...(extra.ops ?? [])],
  );
  if (!succeeded) {
    const now = await readTopology(conn, keys);
    throw topologyChanged(base.topology.version, now.topology.version, extra.fence !== undefined);
  }
  return { topology: next, revision };
}

export function topologyChanged(expected: number, actual: number, fenced: boolean): ShardsnapError {
  return failedPrecondition(
    expected === actual && fenced
      ? `the change was refused: this controller no longer holds the leader lease (topology still at version ${actual})`
      : `the topology changed since this change was planned (version ${expected}, now ${actual}); look at \`cluster status\` and plan again`,
    {
      reason: expected === actual && fenced ? ErrorReasons.notLeader : ErrorReasons.topologyChanged,
      metadata: { expected, actual },
    },
  );
}
