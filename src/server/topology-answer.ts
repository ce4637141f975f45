import { MAX_SLOT, type SlotRange } from '../core';
import type { Ownership } from '../ownership';

/** Slots `start..end` (inclusive) and the node that owns them. */
export interface SlotOwnerEntry {
  start: number;
  end: number;
  /** Empty when the owner is known by its address only. */
  nodeId: string;
  /** host:port clients dial; empty when the node is not registered. */
  address: string;
}

/** What a node answers to Topology (see TopologyResponse in shardsnap.proto). */
export interface TopologyAnswer {
  /** 0 when the node is not in a cluster. */
  version: number;
  cluster: string;
  nodeId: string;
  /** Ascending, non-overlapping; slots nobody is known to own are absent. */
  slots: SlotOwnerEntry[];
  owned: SlotRange[];
  importing: SlotRange[];
}

/**
 * The answer of a node that is not in a cluster, from its ownership alone: its own slots,
 * and the owners it learned by handoffs (addresses only: a handoff does not tell node ids).
 */
export function standaloneTopology(input: {
  nodeId: string;
  address: string;
  ownership: Ownership;
}): TopologyAnswer {
  const { nodeId, address, ownership } = input;
  const owned = ownership.owned();
  return {
    version: 0,
    cluster: '',
    nodeId,
    slots: ownerEntries(owned, (slot) => ownership.ownerOf(slot), { nodeId, address }),
    owned,
    importing: mergeRanges(ownership.imports().flatMap((record) => record.slots)),
  };
}

/**
 * One pass over the slots: an owned slot is this node's, any other one its hint's (if
 * any). Neighbouring slots of the same owner become one entry.
 */
function ownerEntries(
  owned: readonly SlotRange[],
  hintOf: (slot: number) => string | undefined,
  self: { nodeId: string; address: string },
): SlotOwnerEntry[] {
  const entries: SlotOwnerEntry[] = [];
  const add = (start: number, end: number, nodeId: string, address: string): void => {
    const last = entries[entries.length - 1];
    if (last && last.end === start - 1 && last.nodeId === nodeId && last.address === address) {
      last.end = end;
    } else {
      entries.push({ start, end, nodeId, address });
    }
  };
  let slot = 0;
  let ownedIndex = 0;
  while (slot <= MAX_SLOT) {
    const range = owned[ownedIndex];
    if (range && range.start === slot) {
      add(range.start, range.end, self.nodeId, self.address);
      slot = range.end + 1;
      ownedIndex++;
      continue;
    }
    const hint = hintOf(slot);
    if (hint !== undefined) add(slot, slot, '', hint);
    slot++;
  }
  return entries;
}

/** Sorted and merged; an empty list stays empty (it does not mean every slot here). */
function mergeRanges(ranges: readonly SlotRange[]): SlotRange[] {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  const merged: SlotRange[] = [];
  for (const range of sorted) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end + 1) last.end = Math.max(last.end, range.end);
    else merged.push({ start: range.start, end: range.end });
  }
  return merged;
}
