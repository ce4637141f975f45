import { type StoreRecord, dataLoss, slotMask, slotOf, toMemberKey, valueBytes } from '../../core';
import type { InstallTarget, StagedInstall } from '../store';
import type { SlotMap } from './keyspace';

/** Slot maps built beside the live keyspace; committing swaps them in. */
export interface StagedSlots {
  maps: Map<number, SlotMap>;
  bytes: Map<number, number>;
}

export class MemoryStagedInstall implements StagedInstall {
  private readonly mask: Uint8Array;
  private readonly staged: StagedSlots = { maps: new Map(), bytes: new Map() };
  private count = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    readonly target: InstallTarget,
    private readonly swapIn: (target: InstallTarget, staged: StagedSlots) => { seq: number },
  ) {
    this.mask = slotMask(target.slots);
  }

  get recordCount(): number {
    return this.count;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that failures reject
  async add(records: StoreRecord[]): Promise<void> {
    this.assertOpen();
    for (const { key, entry } of records) {
      const slot = slotOf(key);
      if (this.mask[slot] !== 1) {
        throw dataLoss(`record for slot ${slot} is outside the artifact's slot ranges`);
      }
      let map = this.staged.maps.get(slot);
      if (!map) {
        map = new Map();
        this.staged.maps.set(slot, map);
      }
      const k = toMemberKey(key);
      const previous = map.get(k);
      if (previous) throw dataLoss(`duplicate key "${k}" in artifact`);
      map.set(k, entry);
      this.staged.bytes.set(
        slot,
        (this.staged.bytes.get(slot) ?? 0) + key.length + valueBytes(entry.value),
      );
      this.count++;
    }
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async commit(): Promise<{ seq: number; keysInstalled: number }> {
    this.assertOpen();
    const { seq } = this.swapIn(this.target, this.staged);
    this.state = 'committed';
    return { seq, keysInstalled: this.count };
  }

  abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      this.staged.maps.clear();
    }
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (this.state !== 'open') throw new Error(`install already ${this.state}`);
  }
}
