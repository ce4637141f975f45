import { internal } from '../../core';

/**
 * One slot's key index: an open-addressing hash table (linear probing, deletion by
 * backward shift, so there are no tombstones) of record ids in one Int32Array. A slot's
 * table is sized by the slot's keys alone, so slot-range work never touches other slots.
 * Each bucket keeps the key's hash beside the id, so probing, deleting and resizing read
 * no record but the one whose key is compared.
 */
export interface KeyMatcher {
  /** Whether record `id` holds exactly `key`. */
  keyEquals(id: number, key: Buffer): boolean;
}

const MIN_CAPACITY = 8;

export class SlotTable {
  /** Per bucket: record id + 1 (0 = empty), then the key's hash. */
  private buckets = new Int32Array(MIN_CAPACITY * 2);
  private capacity = MIN_CAPACITY;
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The record id holding `key`, or -1. */
  find(matcher: KeyMatcher, key: Buffer, hash: number): number {
    const buckets = this.buckets;
    const mask = this.capacity - 1;
    const tag = hash | 0;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = buckets[2 * i] as number;
      if (entry === 0) return -1;
      if (buckets[2 * i + 1] === tag && matcher.keyEquals(entry - 1, key)) return entry - 1;
    }
  }

  /** Adds `id` (whose key is not in the table yet). */
  insert(id: number, hash: number): void {
    if ((this.count + 1) * 4 > this.capacity * 3) this.resize(this.capacity * 2);
    this.place(id, hash);
    this.count++;
  }

  /** Puts `next` in the bucket of `previous` (same key). */
  swap(previous: number, next: number, hash: number): void {
    const buckets = this.buckets;
    const mask = this.capacity - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = buckets[2 * i] as number;
      if (entry === 0) throw internal(`record ${previous} is not in its slot table`);
      if (entry === previous + 1) {
        buckets[2 * i] = next + 1;
        return;
      }
    }
  }

  remove(id: number, hash: number): void {
    const buckets = this.buckets;
    const mask = this.capacity - 1;
    let hole = hash & mask;
    while ((buckets[2 * hole] as number) !== id + 1) {
      if (buckets[2 * hole] === 0) throw internal(`record ${id} is not in its slot table`);
      hole = (hole + 1) & mask;
    }
    // Backward shift: move later members of the probe run into the hole when their home
    // bucket does not lie (cyclically) between the hole and their position.
    for (let i = (hole + 1) & mask; buckets[2 * i] !== 0; i = (i + 1) & mask) {
      const home = (buckets[2 * i + 1] as number) & mask;
      const between = hole <= i ? home > hole && home <= i : home > hole || home <= i;
      if (!between) {
        buckets[2 * hole] = buckets[2 * i] as number;
        buckets[2 * hole + 1] = buckets[2 * i + 1] as number;
        hole = i;
      }
    }
    buckets[2 * hole] = 0;
    this.count--;
    if (this.capacity > MIN_CAPACITY && this.count * 8 < this.capacity) {
      this.resize(this.capacity / 2);
    }
  }

  /** The record ids in the table, in bucket order. */
  ids(): Int32Array {
    const out = new Int32Array(this.count);
    let n = 0;
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i += 2) {
      const entry = buckets[i] as number;
      if (entry !== 0) out[n++] = entry - 1;
    }
    return out;
  }

  private place(id: number, hash: number): void {
    const buckets = this.buckets;
    const mask = this.capacity - 1;
    let i = hash & mask;
    while (buckets[2 * i] !== 0) i = (i + 1) & mask;
    buckets[2 * i] = id + 1;
    buckets[2 * i + 1] = hash | 0;
  }

  private resize(capacity: number): void {
    const old = this.buckets;
    this.buckets = new Int32Array(capacity * 2);
    this.capacity = capacity;
    for (let i = 0; i < old.length; i += 2) {
      const entry = old[i] as number;
      if (entry !== 0) this.place(entry - 1, old[i + 1] as number);
    }
  }
}
