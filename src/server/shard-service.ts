import { performance } from 'node:perf_hooks';
import type { ShardHandlers } from '../generated/shardsnap/v1/Shard';
import type { ShardStats } from '../generated/shardsnap/v1/ShardStats';
import { ErrorCodes, ShardsnapError } from '../core';
import { digestStore } from '../store';
import { durabilityOf, recoveryStats } from '../durability';
import { mutationsFromWire, slotRangesFromWire, valueToWire } from '../wire/convert';
import { type CallHooks, unary } from './calls';
import type { NodeContext } from './node-context';

export function shardService(node: NodeContext, hooks: CallHooks): ShardHandlers {
  return {
    Write: unary('Write', hooks, async (request) => {
      const started = performance.now();
      const mutations = mutationsFromWire(request.mutations);
      const { seq } = await node.ownership.admit(
        mutations.map((m) => m.key),
        () => node.store.write(mutations),
      );
      node.recordWrite((performance.now() - started) / 1000);
      return { seq };
    }),
    Read: unary('Read', hooks, async (request) => {
      const entries = await node.ownership.admit(request.keys, () => node.store.read(request.keys));
      return { values: entries.map(valueToWire) };
    }),
    Stats: unary('Stats', hooks, async (): Promise<ShardStats> => {
      const stats = await node.store.stats();
      const durable = durabilityOf(node.store);
      return {
        backend: node.store.backend,
        keyCount: stats.keyCount,
        seq: stats.seq,
        dataBytes: stats.dataBytes,
        ownedSlots: node.ownership.owned(),
        activeSnapshots: stats.openViews,
        nodeId: node.config.nodeId,
        activeBuilds: node.catalog.buildingCount,
        activeStreams: node.catalog.leaseCount,
        storedSnapshots: node.catalog.list().length,
        storedBytes: node.catalog.storedBytes,
        uptimeMs: Date.now() - node.startedAtMs,
        incarnation: node.incarnation,
        changeLogEntries: node.changeLog.entries,
        changeLogBytes: node.changeLog.bytes,
        changeLogFloorSeq: node.changeLog.floorSeq,
        recovery: durable ? recoveryStats(durable) : null,
      };
    }),
    Digest: unary('Digest', hooks, async (request, signal) => {
      const result = await digestStore(node.store, slotRangesFromWire(request.slots), signal);
      return { digest: result.digest, keyCount: result.keyCount, seq: result.seq };
    }),
    Topology: unary('Topology', hooks, () => Promise.resolve(node.topology())),
    SlotSizes: unary('SlotSizes', hooks, async (request) => {
      const { store } = node;
      if (!store.slotSizes) {
        throw new ShardsnapError(
          ErrorCodes.unimplemented,
          `SlotSizes: the ${store.backend} backend keeps no per-slot sizes`,
        );
      }
      return { sizes: await store.slotSizes(slotRangesFromWire(request.slots)) };
    }),
  };
}
