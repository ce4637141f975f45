import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type SlotRange, failedPrecondition, formatSlotRanges } from '../core';
import { connectEtcd } from './etcd';
import { ClusterKeys, hostDerivedName, validName } from './keys';
import { readTopology } from './topology-store';
import { writeFileDurably } from '../ownership';

export const CLUSTER_FILE = 'cluster.json';

/**
 * The node id a data dir has in a cluster, recorded at its first start: the topology
 * names nodes by id, so the id must outlive the process. `--node-id` may name it, but
 * never rename it, and the data dir stays in the cluster it joined.
 */
export async function clusterIdentity(
  dataDir: string,
  cluster: string,
  requestedId: string | undefined,
): Promise<ClusterIdentity> {
  const file = join(dataDir, CLUSTER_FILE);
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (text !== undefined) {
    let recorded: { cluster?: unknown; nodeId?: unknown };
    try {
      recorded = JSON.parse(text) as typeof recorded;
    } catch (error) {
      throw failedPrecondition(`${file} is corrupt: ${(error as Error).message}`, { cause: error });
    }
    if (recorded.cluster !== cluster) {
      throw failedPrecondition(
        `this data dir belongs to cluster ${String(recorded.cluster)} (see ${file}), not ${cluster}`,
      );
    }
    if (typeof recorded.nodeId !== 'string') throw failedPrecondition(`${file} has no node id`);
    if (requestedId !== undefined && requestedId !== recorded.nodeId) {
      throw failedPrecondition(
        `this data dir is node ${recorded.nodeId} of cluster ${cluster} (see ${file}); --node-id ${requestedId} would rename it`,
      );
    }
    return { nodeId: recorded.nodeId, firstJoin: false, record: () => Promise.resolve() };
  }
  const nodeId = validName(requestedId ?? hostDerivedName(), 'node id');
  return {
    nodeId,
    firstJoin: true,
    record: () => writeFileDurably(file, `${JSON.stringify({ cluster, nodeId }, null, 2)}\n`),
  };
}

export interface ClusterIdentity {
  nodeId: string;
  /** No cluster.json yet: this start joins the cluster. */
  firstJoin: boolean;
  /** Writes cluster.json (once the join is allowed). */
  record(): Promise<void>;
}

/**
 * A data dir that already owns slots may join only a cluster without a topology (it then
 * becomes the node `cluster init` names): joining one whose topology gives those slots to
 * others would make two nodes serve them.
 */
export async function checkFirstJoin(
  endpoints: string,
  cluster: string,
  nodeId: string,
  owned: readonly SlotRange[],
): Promise<void> {
  const conn = connectEtcd(endpoints);
  try {
    const { topology } = await readTopology(conn, new ClusterKeys(cluster));
    if (topology.version > 0) {
      throw failedPrecondition(
        `this data dir owns slots ${formatSlotRanges(owned)} from before it joined cluster ${cluster}, ` +
          `which already has a topology (version ${topology.version}): start node ${nodeId} with an empty data dir and move slots to it`,
      );
    }
  } finally {
    conn.close();
  }
}
