import { SLOT_COUNT, type SlotRange } from '../core';
import { type SlotBitmap, bitmapOf, emptyBitmap } from './slot-bitmap';

/** A slot-range import in progress on this node (the target side of a handoff). */
export interface ImportRecord {
  id: string;
  slots: SlotRange[];
  source: string;
  phase: 'importing' | 'committing';
}

/** Slots this node handed to another node, remembered so a repeated commit is recognized. */
export interface TransferRecord {
  id: string;
  slots: SlotRange[];
  to: string;
}

/** Transfers remembered; older ones are forgotten (their commits were answered long ago). */
export const MAX_TRANSFERS = 64;

/** Everything that is persisted about the slots of a node. */
export interface OwnershipState {
  owned: SlotBitmap;
  /** Per slot, the address of the node known to own it (meaningful for unowned slots only). */
  owners: Array<string | undefined>;
  imports: ImportRecord[];
  /** Oldest first, at most MAX_TRANSFERS. */
  transfers: TransferRecord[];
  /** Slots given away whose keys are still to be removed from the store. */
  cleanup: SlotBitmap;
}

export function initialState(owned: readonly SlotRange[]): OwnershipState {
  return {
    owned: bitmapOf(owned),
    owners: new Array<string | undefined>(SLOT_COUNT).fill(undefined),
    imports: [],
    transfers: [],
    cleanup: emptyBitmap(),
  };
}

/** A deep copy, so that a mutation can be prepared and persisted before anyone sees it. */
export function cloneState(state: OwnershipState): OwnershipState {
  return {
    owned: state.owned.slice(),
    owners: state.owners.slice(),
    imports: state.imports.map(copyImport),
    transfers: state.transfers.map((t) => ({ ...t, slots: copyRanges(t.slots) })),
    cleanup: state.cleanup.slice(),
  };
}

export function copyImport(record: ImportRecord): ImportRecord {
  return { ...record, slots: copyRanges(record.slots) };
}

export function copyRanges(ranges: readonly SlotRange[]): SlotRange[] {
  return ranges.map((r) => ({ start: r.start, end: r.end }));
}
