import { SLOT_COUNT, type Entry } from '../../core';

export type SlotMap = Map<string, Entry>;

/**
 * The per-slot index: one map per slot, keyed by the key's latin1 string. Slot-range
 * work touches only the maps of its slots, and an install swaps whole maps.
 */
export class Keyspace {
  private readonly maps: Array<SlotMap | undefined> = new Array<SlotMap | undefined>(SLOT_COUNT);
  private readonly bytesBySlot = new Float64Array(SLOT_COUNT);
  private keys = 0;
  private bytes = 0;

  get keyCount(): number {
    return this.keys;
  }

  get dataBytes(): number {
    return this.bytes;
  }

  map(slot: number): SlotMap | undefined {
    return this.maps[slot];
  }

  slotBytes(slot: number): number {
    return this.bytesBySlot[slot] as number;
  }

  get(slot: number, key: string): Entry | undefined {
    return this.maps[slot]?.get(key);
  }

  set(slot: number, key: string, entry: Entry, bytesDelta: number): void {
    let map = this.maps[slot];
    if (!map) {
      map = new Map();
      this.maps[slot] = map;
    }
    const before = map.size;
    map.set(key, entry);
    this.keys += map.size - before;
    this.addBytes(slot, bytesDelta);
  }

  delete(slot: number, key: string, bytes: number): void {
    const map = this.maps[slot];
    if (map?.delete(key)) {
      this.keys--;
      this.addBytes(slot, -bytes);
    }
  }

  /** Puts `map` in place of the slot's map and returns the old one, which is never changed again. */
  replace(slot: number, map: SlotMap | undefined, bytes: number): SlotMap | undefined {
    const old = this.maps[slot];
    this.keys += (map?.size ?? 0) - (old?.size ?? 0);
    this.addBytes(slot, bytes - (this.bytesBySlot[slot] as number));
    this.maps[slot] = map && map.size > 0 ? map : undefined;
    return old;
  }

  private addBytes(slot: number, delta: number): void {
    this.bytesBySlot[slot] = (this.bytesBySlot[slot] as number) + delta;
    this.bytes += delta;
  }
}
