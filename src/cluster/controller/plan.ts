import { MAX_SLOT, type SlotRange, failedPrecondition, invalidArgument } from '../../core';
import { type OwnerTable, type Topology, ownerTable, slotCounts } from '../topology';

/** One migration to run: `slots` (contiguous ranges) from one node to another. */
export interface MoveStep {
  from: string;
  to: string;
  slots: SlotRange[];
}

/** Steps that move `ranges` to `to`, one per node that holds part of them now. */
export function planMove(topology: Topology, ranges: readonly SlotRange[], to: string): MoveStep[] {
  const table = ownerTable(topology);
  const byOwner = new Map<string, SlotRange[]>();
  for (const r of ranges) {
    for (let slot = r.start; slot <= r.end; slot++) {
      const owner = table[slot];
      if (owner === undefined) {
        throw failedPrecondition(`slot ${slot} is assigned to no node; run \`cluster init\` first`);
      }
      if (owner === to) continue;
      appendSlot(byOwner, owner, slot);
    }
  }
  return [...byOwner].map(([from, slots]) => ({ from, to, slots }));
}

/**
 * An even spread of the slots of `nodes` over `nodes` (each gets the total divided by
 * their number, the first ones one more), moving as few slots as possible: nodes above
 * their share give their highest slots to nodes below it. Nodes that hold slots and are
 * not in `nodes` (unreachable) keep them.
 */
export function planEvenSpread(topology: Topology, nodes: readonly string[]): MoveStep[] {
  if (nodes.length === 0) throw failedPrecondition('no live node to spread the slots over');
  const table = ownerTable(topology);
  const counts = slotCounts(topology);
  let total = 0;
  for (const node of nodes) total += counts.get(node) ?? 0;
  const shares = shareOut(total, nodes, counts);
  const receivers = nodes
    .filter((n) => (counts.get(n) ?? 0) < (shares.get(n) ?? 0))
    .map((n) => ({ node: n, want: (shares.get(n) ?? 0) - (counts.get(n) ?? 0) }));
  const steps = new Map<string, MoveStep>();
  for (const donor of nodes) {
    let surplus = (counts.get(donor) ?? 0) - (shares.get(donor) ?? 0);
    for (let slot = MAX_SLOT; slot >= 0 && surplus > 0; slot--) {
      if (table[slot] !== donor) continue;
      const receiver = receivers.find((r) => r.want > 0);
      if (!receiver) break;
      receiver.want--;
      surplus--;
      const key = `${donor}>${receiver.node}`;
      const step = steps.get(key) ?? { from: donor, to: receiver.node, slots: [] };
      prependSlot(step.slots, slot);
      steps.set(key, step);
    }
  }
  return [...steps.values()];
}

/** Every slot of `node` spread over `others` so that all of them end even. */
export function planDrain(topology: Topology, node: string, others: readonly string[]): MoveStep[] {
  if (others.includes(node)) throw invalidArgument(`node ${node} cannot drain into itself`);
  const counts = slotCounts(topology);
  if ((counts.get(node) ?? 0) === 0) return [];
  if (others.length === 0) {
    throw failedPrecondition(`node ${node} holds slots and no other live node can take them`);
  }
  // Drained slots go to the others as if the node had left, each taking up to its share.
  const table: OwnerTable = ownerTable(topology);
  let total = 0;
  for (const n of [...others, node]) total += counts.get(n) ?? 0;
  const shares = shareOut(total, others, counts);
  const receivers = others.map((n) => ({
    node: n,
    want: (shares.get(n) ?? 0) - (counts.get(n) ?? 0),
  }));
  const steps = new Map<string, MoveStep>();
  for (let slot = 0; slot <= MAX_SLOT; slot++) {
    if (table[slot] !== node) continue;
    const receiver = receivers.find((r) => r.want > 0) ?? receivers[0];
    if (!receiver) break;
    receiver.want--;
    const step = steps.get(receiver.node) ?? { from: node, to: receiver.node, slots: [] };
    appendRange(step.slots, slot);
    steps.set(receiver.node, step);
  }
  return [...steps.values()];
}

/** Each node's share of `total` slots: even, the remainder to the nodes holding most now. */
function shareOut(
  total: number,
  nodes: readonly string[],
  counts: Map<string, number>,
): Map<string, number> {
  const base = Math.floor(total / nodes.length);
  let extra = total - base * nodes.length;
  const order = [...nodes].sort(
    (a, b) => (counts.get(b) ?? 0) - (counts.get(a) ?? 0) || a.localeCompare(b),
  );
  const shares = new Map<string, number>();
  for (const node of order) {
    shares.set(node, base + (extra > 0 ? 1 : 0));
    if (extra > 0) extra--;
  }
  return shares;
}

function appendSlot(byOwner: Map<string, SlotRange[]>, owner: string, slot: number): void {
  const list = byOwner.get(owner) ?? [];
  appendRange(list, slot);
  byOwner.set(owner, list);
}

function appendRange(list: SlotRange[], slot: number): void {
  const last = list[list.length - 1];
  if (last && last.end === slot - 1) last.end = slot;
  else list.push({ start: slot, end: slot });
}

function prependSlot(list: SlotRange[], slot: number): void {
  const first = list[0];
  if (first && first.start === slot + 1) first.start = slot;
  else list.unshift({ start: slot, end: slot });
}

/**
 * A spread of `weights` (bytes per slot) as even as whole slots allow over `nodes`: each
 * node above the mean gives its slots, highest first, to the node furthest below it, as
 * long as a move brings both closer to the mean. Slots of nodes not in `nodes` stay.
 */
export function planWeightedSpread(
  topology: Topology,
  nodes: readonly string[],
  weights: Float64Array,
): MoveStep[] {
  if (nodes.length === 0) throw failedPrecondition('no live node to spread the slots over');
  const table = ownerTable(topology);
  const load = new Map<string, number>(nodes.map((n) => [n, 0]));
  for (let slot = 0; slot <= MAX_SLOT; slot++) {
    const owner = table[slot];
    if (owner !== undefined && load.has(owner))
      load.set(owner, (load.get(owner) ?? 0) + (weights[slot] ?? 0));
  }
  let total = 0;
  for (const value of load.values()) total += value;
  const mean = total / nodes.length;
  const steps = new Map<string, MoveStep>();
  const donors = [...nodes].sort((a, b) => (load.get(b) ?? 0) - (load.get(a) ?? 0));
  for (const donor of donors) {
    for (let slot = MAX_SLOT; slot >= 0; slot--) {
      const weight = weights[slot] ?? 0;
      if (table[slot] !== donor || weight === 0) continue;
      const donorLoad = load.get(donor) ?? 0;
      if (donorLoad <= mean) break;
      const receiver = nodes.reduce((low, n) =>
        (load.get(n) ?? 0) < (load.get(low) ?? 0) ? n : low,
      );
      const receiverLoad = load.get(receiver) ?? 0;
      const before = Math.abs(donorLoad - mean) + Math.abs(receiverLoad - mean);
      const after = Math.abs(donorLoad - weight - mean) + Math.abs(receiverLoad + weight - mean);
      if (receiver === donor || after >= before) continue;
      load.set(donor, donorLoad - weight);
      load.set(receiver, receiverLoad + weight);
      table[slot] = receiver;
      const key = `${donor}>${receiver}`;
      const step = steps.get(key) ?? { from: donor, to: receiver, slots: [] };
      prependSlot(step.slots, slot);
      steps.set(key, step);
    }
  }
  return [...steps.values()];
}
