/**
 * One slot's key index: an open-addressing hash table (linear probing, deletion by
 * backward shift, so there are no tombstones) of record ids in one Int32Array. A slot's
 * table is sized by the slot's keys alone, so slot-range work never touches other slots.
 */
export interface KeyMatcher {
  /** The key's hash as stored with record `id`. */
  hashOf(id: number): number;
  /** Whether record `id` holds exactly `key`. */
  keyEquals(id: number, key: Buffer): boolean;
}

const MIN_CAPACITY = 8;

export class SlotTable {
  /** Record id + 1 per bucket; 0 = empty. */
  private buckets = new Int32Array(MIN_CAPACITY);
  private count = 0;

  get size(): number {
    return this.count;
  }

  /** The record id holding `key`, or -1. */
  find(matcher: KeyMatcher, key: Buffer, hash: number): number {
    const buckets = this.buckets;
    const mask = buckets.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = buckets[i] as number;
      if (entry === 0) return -1;
      const id = entry - 1;
      if (matcher.hashOf(id) === hash && matcher.keyEquals(id, key)) return id;
    }
  }

  /** Adds `id` (whose key is not in the table yet). */
  insert(matcher: KeyMatcher, id: number, hash: number): void {
    if ((this.count + 1) * 4 > this.buckets.length * 3)
      this.resize(matcher, this.buckets.length * 2);
    this.place(id, hash);
    this.count++;
  }

  /** Puts `next` in the bucket of `previous` (same key). */
  swap(previous: number, next: number, hash: number): void {
    const buckets = this.buckets;
    const mask = buckets.length - 1;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const entry = buckets[i] as number;
      if (entry === 0) throw new Error(`record ${previous} is not in its slot table`);
      if (entry === previous + 1) {
        buckets[i] = next + 1;
        return;
      }
    }
  }

  remove(matcher: KeyMatcher, id: number, hash: number): void {
    const buckets = this.buckets;
    const mask = buckets.length - 1;
    let hole = hash & mask;
    while ((buckets[hole] as number) !== id + 1) {
      if (buckets[hole] === 0) throw new Error(`record ${id} is not in its slot table`);
      hole = (hole + 1) & mask;
    }
    // Backward shift: move later members of the probe run into the hole when their home
    // bucket does not lie (cyclically) between the hole and their position.
    for (let i = (hole + 1) & mask; buckets[i] !== 0; i = (i + 1) & mask) {
      const entry = buckets[i] as number;
      const home = matcher.hashOf(entry - 1) & mask;
      const between = hole <= i ? home > hole && home <= i : home > hole || home <= i;
      if (!between) {
        buckets[hole] = entry;
        hole = i;
      }
    }
    buckets[hole] = 0;
    this.count--;
    if (this.buckets.length > MIN_CAPACITY && this.count * 8 < this.buckets.length) {
      this.resize(matcher, this.buckets.length / 2);
    }
  }

  /** The record ids in the table, in bucket order. */
  ids(): Int32Array {
    const out = new Int32Array(this.count);
    let n = 0;
    const buckets = this.buckets;
    for (let i = 0; i < buckets.length; i++) {
      const entry = buckets[i] as number;
      if (entry !== 0) out[n++] = entry - 1;
    }
    return out;
  }

  /** Bytes the table occupies. */
  get byteLength(): number {
    return this.buckets.byteLength;
  }

  private place(id: number, hash: number): void {
    const buckets = this.buckets;
    const mask = buckets.length - 1;
    let i = hash & mask;
    while (buckets[i] !== 0) i = (i + 1) & mask;
    buckets[i] = id + 1;
  }

  private resize(matcher: KeyMatcher, capacity: number): void {
    const old = this.buckets;
    this.buckets = new Int32Array(capacity);
    for (let i = 0; i < old.length; i++) {
      const entry = old[i] as number;
      if (entry !== 0) this.place(entry - 1, matcher.hashOf(entry - 1));
    }
  }
}
