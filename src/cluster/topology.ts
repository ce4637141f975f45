import { MAX_SLOT, SLOT_COUNT, type SlotRange, dataLoss, formatSlotRanges } from '../core';
import { validName } from './keys';

/** Slots `start..end` (inclusive) belong to `node`. */
export interface SlotAssignment {
  start: number;
  end: number;
  node: string;
}

/**
 * The cluster's slot map as stored at `/shardsnap/NAME/topology`. `version` grows by one
 * with every change, and a change is written only by an etcd transaction that compares
 * the key's revision with the one the change was planned on.
 */
export interface Topology {
  version: number;
  cluster: string;
  /** Ascending, non-overlapping; slots nobody owns are absent (only before `init`). */
  slots: SlotAssignment[];
  updatedAtMs: number;
}

/** Per slot, the node it is assigned to. */
export type OwnerTable = Array<string | undefined>;

export function emptyTopology(cluster: string): Topology {
  return { version: 0, cluster, slots: [], updatedAtMs: 0 };
}

export function ownerTable(topology: Topology): OwnerTable {
  const table: OwnerTable = new Array<string | undefined>(SLOT_COUNT).fill(undefined);
  for (const a of topology.slots) table.fill(a.node, a.start, a.end + 1);
  return table;
}

export function assignmentsOf(table: OwnerTable): SlotAssignment[] {
  const out: SlotAssignment[] = [];
  let slot = 0;
  while (slot <= MAX_SLOT) {
    const node = table[slot];
    const start = slot;
    while (slot <= MAX_SLOT && table[slot] === node) slot++;
    if (node !== undefined) out.push({ start, end: slot - 1, node });
  }
  return out;
}

/** The ranges assigned to `node`, ascending. */
export function rangesOfNode(topology: Topology, node: string): SlotRange[] {
  return topology.slots.filter((a) => a.node === node).map(({ start, end }) => ({ start, end }));
}

/** Slot counts per node. */
export function slotCounts(topology: Topology): Map<string, number> {
  const counts = new Map<string, number>();
  for (const a of topology.slots)
    counts.set(a.node, (counts.get(a.node) ?? 0) + a.end - a.start + 1);
  return counts;
}

/** The nodes `ranges` are assigned to now, each with its part of the ranges. */
export function ownersOf(
  topology: Topology,
  ranges: readonly SlotRange[],
): Map<string | undefined, SlotRange[]> {
  const table = ownerTable(topology);
  const parts = new Map<string | undefined, SlotRange[]>();
  for (const r of ranges) {
    let slot = r.start;
    while (slot <= r.end) {
      const node = table[slot];
      const start = slot;
      while (slot <= r.end && table[slot] === node) slot++;
      const list = parts.get(node) ?? [];
      list.push({ start, end: slot - 1 });
      parts.set(node, list);
    }
  }
  return parts;
}

/** The next version of `topology`, with `ranges` assigned to `node`. */
export function reassign(
  topology: Topology,
  ranges: readonly SlotRange[],
  node: string,
  nowMs = Date.now(),
): Topology {
  const table = ownerTable(topology);
  for (const r of ranges) table.fill(node, r.start, r.end + 1);
  return {
    ...topology,
    version: topology.version + 1,
    slots: assignmentsOf(table),
    updatedAtMs: nowMs,
  };
}

export function encodeTopology(topology: Topology): string {
  return JSON.stringify(topology);
}

/** Parses the stored document; anything malformed is DATA_LOSS, never a guess. */
export function decodeTopology(text: string, cluster: string): Topology {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    throw dataLoss(
      `the topology of cluster ${cluster} is not JSON: ${(error as Error).message}`,
      error,
    );
  }
  const where = `the topology of cluster ${cluster}`;
  if (typeof doc !== 'object' || doc === null) throw dataLoss(`${where} is not an object`);
  const { version, slots, updatedAtMs } = doc as Record<string, unknown>;
  if (!Number.isSafeInteger(version) || (version as number) < 0) {
    throw dataLoss(`${where} has a bad version ${JSON.stringify(version)}`);
  }
  if (!Array.isArray(slots)) throw dataLoss(`${where} has no slot list`);
  let previousEnd = -1;
  const out: SlotAssignment[] = [];
  for (const [i, entry] of slots.entries()) {
    const { start, end, node } = (entry ?? {}) as Record<string, unknown>;
    if (
      !Number.isInteger(start) ||
      !Number.isInteger(end) ||
      (start as number) <= previousEnd ||
      (end as number) < (start as number) ||
      (end as number) > MAX_SLOT ||
      typeof node !== 'string'
    ) {
      throw dataLoss(
        `${where}: slots[${i}] is not an ascending range of 0..${MAX_SLOT} with a node`,
      );
    }
    try {
      validName(node, 'node id');
    } catch (error) {
      throw dataLoss(`${where}: slots[${i}]: ${(error as Error).message}`, error);
    }
    previousEnd = end as number;
    out.push({ start: start as number, end: end as number, node });
  }
  return {
    version: version as number,
    cluster,
    slots: out,
    updatedAtMs: Number.isSafeInteger(updatedAtMs) ? (updatedAtMs as number) : 0,
  };
}

export function describeAssignments(slots: readonly SlotAssignment[]): string {
  const byNode = new Map<string, SlotRange[]>();
  for (const a of slots) byNode.set(a.node, [...(byNode.get(a.node) ?? []), a]);
  return [...byNode].map(([node, ranges]) => `${node}: ${formatSlotRanges(ranges)}`).join('; ');
}
