import { ErrorCodes, SLOT_COUNT, failedPrecondition, isShardsnapError } from '../../core';
import { ShardsnapClient } from '../../client';
import type { ClientSecurity } from '../../wire/security';
import { rangesOfNode } from '../topology';
import type { ClusterState } from './controller';

/** How long one node may take to report its slot sizes. */
const ASK_MS = 10_000;

/**
 * Bytes per slot across the cluster, each live node asked for the slots the topology
 * gives it (what a rebalance by bytes weighs). A node that keeps no per-slot sizes
 * (RocksDB) makes it fail: a spread by slot count is then the only one possible.
 */
export async function slotWeights(
  state: ClusterState,
  live: readonly string[],
  security: ClientSecurity | undefined,
): Promise<Float64Array> {
  const weights = new Float64Array(SLOT_COUNT);
  const { topology } = state.topology;
  await Promise.all(
    live.map(async (id) => {
      const slots = rangesOfNode(topology, id);
      const info = state.nodes.get(id);
      if (slots.length === 0 || !info) return;
      const client = new ShardsnapClient(info.address, { security: security ?? {} });
      try {
        for (const { slot, bytes } of await client.slotSizes({ slots }, { deadlineMs: ASK_MS })) {
          weights[slot] = bytes;
        }
      } catch (error) {
        if (isShardsnapError(error, ErrorCodes.unimplemented)) {
          throw failedPrecondition(
            `node ${id} (${info.backend}) keeps no per-slot sizes: rebalance by slots instead`,
            { cause: error },
          );
        }
        throw error;
      } finally {
        client.close();
      }
    }),
  );
  return weights;
}
