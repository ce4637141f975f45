import { SLOT_COUNT } from '../core';
import type { Topology } from './responses';

/**
 * Where a routing client sends each slot: the owners of the newest topology it was told,
 * corrected slot by slot by MOVED answers.
 */
export class SlotMap {
  private owners = new Array<string | undefined>(SLOT_COUNT).fill(undefined);
  /** Of the map in use: -1 before any, 0 for maps of nodes outside a cluster. */
  private current = -1;

  get version(): number {
    return this.current;
  }

  addressOf(slot: number): string | undefined {
    return this.owners[slot];
  }

  /** A MOVED answer: the slot's owner now, whatever the map said. */
  learn(slot: number, address: string): void {
    this.owners[slot] = address;
  }

  /**
   * Takes `answer` (from the node at `answeredBy`) when it is newer than the map in use.
   * Nodes outside a cluster each know a part of the truth (their own slots, and where
   * those they gave away went), so their maps (version 0) merge into the current one
   * rather than replace it. Returns whether anything was taken.
   */
  apply(answer: Topology, answeredBy: string): boolean {
    const standalone = answer.version === 0 && this.current <= 0;
    if (!standalone && answer.version <= this.current) return false;
    const owners = standalone
      ? this.owners
      : new Array<string | undefined>(SLOT_COUNT).fill(undefined);
    for (const entry of answer.slots) {
      if (entry.address) owners.fill(entry.address, entry.start, entry.end + 1);
    }
    // The answering node is the authority on what it serves now, which may be ahead of
    // the cluster's map during a handoff.
    const self =
      answer.slots.find((e) => e.nodeId !== '' && e.nodeId === answer.nodeId && e.address)
        ?.address ?? answeredBy;
    for (const range of answer.owned) owners.fill(self, range.start, range.end + 1);
    this.owners = owners;
    this.current = answer.version;
    return true;
  }
}
