import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { failedPrecondition } from '../core';
import { writeFileDurably } from '../ownership';
import { validName } from './keys';

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
): Promise<string> {
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
    return recorded.nodeId;
  }
  const nodeId = validName(
    requestedId ??
      `${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}-${randomBytes(3).toString('hex')}`,
    'node id',
  );
  await writeFileDurably(file, `${JSON.stringify({ cluster, nodeId }, null, 2)}\n`);
  return nodeId;
}
