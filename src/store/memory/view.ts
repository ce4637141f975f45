import {
  type Entry,
  type SlotRange,
  type StoreRecord,
  SlabAllocator,
  slotMask,
  throwIfAborted,
} from '../../core';
import type { BatchLimits, StoreView } from '../store';
import type { Keyspace, SlotMap } from './keyspace';

/** A cheap size estimate for batching: exact for strings, rough for collections. */
function approximateBytes(entry: Entry): number {
  const v = entry.value;
  switch (v.type) {
    case 'string':
      return v.value.length + 16;
    case 'list':
      return v.items.length * 32;
    case 'hash':
      return v.fields.size * 48;
    default:
      return v.members.size * 32;
  }
}

/**
 * A copy-on-write point-in-time view. Nothing is copied when it opens; afterwards the
 * store calls `preserve` before it changes a key in a slot the view has not finished, and
 * `freeze` before it swaps a slot's whole map. The view then reads preserved entries in
 * place of live ones, so it sees the store exactly as it was at `seq`.
 */
export class MemoryView implements StoreView {
  readonly keyCountHint: number;
  private readonly mask: Uint8Array;
  /** Slots below the cursor are listed; preservation is needed from the cursor up. */
  private cursor = 0;
  /**
   * First slot of the batch the consumer holds: its entries are live objects, so their
   * slots stay protected (changes are copied, not made in place) until the consumer asks
   * for the next batch.
   */
  private heldFrom = Number.MAX_SAFE_INTEGER;
  private closed = false;
  /** Per slot: key → entry as of `seq`, or null if the key did not exist then. */
  private readonly preserved = new Map<number, Map<string, Entry | null>>();
  /** Per slot: the map as it was before an install replaced it. */
  private readonly frozen = new Map<number, SlotMap | undefined>();

  constructor(
    private readonly keyspace: Keyspace,
    readonly seq: number,
    readonly slots: readonly SlotRange[],
    private readonly onClose: (view: MemoryView) => void,
  ) {
    this.mask = slotMask(slots);
    let keys = 0;
    for (const r of slots)
      for (let s = r.start; s <= r.end; s++) keys += keyspace.map(s)?.size ?? 0;
    this.keyCountHint = keys;
  }

  /** Whether a change to `slot` must be preserved for this view. */
  watches(slot: number): boolean {
    return (
      !this.closed &&
      this.mask[slot] === 1 &&
      slot >= Math.min(this.cursor, this.heldFrom) &&
      !this.frozen.has(slot)
    );
  }

  /** Records `current` as the key's value at `seq` unless already recorded. Returns true if it did. */
  preserve(slot: number, key: string, current: Entry | undefined): boolean {
    let saved = this.preserved.get(slot);
    if (!saved) {
      saved = new Map();
      this.preserved.set(slot, saved);
    }
    if (saved.has(key)) return false;
    saved.set(key, current ?? null);
    return true;
  }

  /** Whether the view holds `entry` itself (so the store must not change it in place). */
  holds(slot: number, key: string, entry: Entry): boolean {
    return this.preserved.get(slot)?.get(key) === entry;
  }

  freeze(slot: number, oldMap: SlotMap | undefined): void {
    this.frozen.set(slot, oldMap);
  }

  private source(slot: number): SlotMap | undefined {
    return this.frozen.has(slot) ? this.frozen.get(slot) : this.keyspace.map(slot);
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async for the StoreView contract; yields between batches
  async *batches(limits: BatchLimits): AsyncGenerator<StoreRecord[]> {
    if (this.closed) throw new Error('view is closed');
    let batch: StoreRecord[] = [];
    let batchBytes = 0;
    let batchFrom = 0;
    const keys = new SlabAllocator();
    const push = (key: string, entry: Entry): boolean => {
      if (batch.length === 0) batchFrom = this.cursor;
      batch.push({ key: keys.latin1(key), entry });
      batchBytes += key.length + approximateBytes(entry);
      return batch.length >= limits.maxRecords || batchBytes >= limits.maxBytes;
    };
    for (const range of this.slots) {
      for (let slot = range.start; slot <= range.end; slot++) {
        this.cursor = slot;
        const listed = this.source(slot);
        if (!listed && !this.preserved.has(slot)) continue;
        // The listed entries are never changed in place while this view watches the slot
        // (the store copies an entry a view holds), so a listed entry whose key was not
        // preserved is its value at `seq`.
        const listedEntries = listed ? Array.from(listed) : [];
        const fromPreserved = new Set<string>();
        let saved = this.preserved.get(slot);
        for (const [key, live] of listedEntries) {
          let entry: Entry | null | undefined = live;
          if (saved?.has(key)) {
            entry = saved.get(key);
            fromPreserved.add(key);
          }
          if (entry && push(key, entry)) {
            this.heldFrom = batchFrom;
            yield batch;
            this.release();
            throwIfAborted(limits.signal);
            batch = [];
            batchBytes = 0;
            saved = this.preserved.get(slot);
          }
        }
        // Keys that existed at `seq` but were removed before the listing, or changed after
        // their live value was emitted (the latter are skipped with the listed-key set).
        saved = this.preserved.get(slot);
        if (saved && saved.size > fromPreserved.size) {
          const listedSet = new Set(listedEntries.map(([key]) => key));
          for (const [key, entry] of saved) {
            if (entry === null || fromPreserved.has(key) || listedSet.has(key)) continue;
            if (push(key, entry)) {
              this.heldFrom = batchFrom;
              yield batch;
              this.release();
              throwIfAborted(limits.signal);
              batch = [];
              batchBytes = 0;
            }
          }
        }
        this.preserved.delete(slot);
        this.frozen.delete(slot);
        this.cursor = slot + 1;
      }
    }
    this.cursor = Number.MAX_SAFE_INTEGER;
    if (batch.length > 0) {
      this.heldFrom = batchFrom;
      yield batch;
      this.release();
    }
  }

  /** The consumer is done with its batch: finished slots need no protection any more. */
  private release(): void {
    this.heldFrom = Number.MAX_SAFE_INTEGER;
    for (const slot of this.preserved.keys()) if (slot < this.cursor) this.preserved.delete(slot);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.preserved.clear();
    this.frozen.clear();
    this.onClose(this);
  }
}
