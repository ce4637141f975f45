import {
  type SlotRange,
  type StoreRecord,
  failedPrecondition,
  slotMask,
  storeClosed,
  throwIfAborted,
} from '../../core';
import type { BatchLimits, StoreView } from '../store';
import type { Keyspace } from './keyspace';

/**
 * A copy-on-write point-in-time view. Nothing is copied when it opens; afterwards the
 * store calls `preserve` before it changes a key in a slot the view has not finished, and
 * `freeze` before it swaps a slot's whole table. Both pin the records as they were, so
 * they stay readable until the view has listed the slot; the view reads them in place of
 * the live ones and sees the store exactly as it was at `seq`.
 */
export class MemoryView implements StoreView {
  readonly keyCountHint: number;
  private readonly mask: Uint8Array;
  /** Slots below the cursor are listed; preservation is needed from the cursor up. */
  private cursor = 0;
  private closed = false;
  /** Closed because the store closed: a walk then fails rather than ends early. */
  private storeGone = false;
  /** Per slot: key → record id as of `seq` (pinned), or -1 if the key did not exist then. */
  private readonly preserved = new Map<number, Map<string, number>>();
  /** Per slot: the (pinned) records the slot had before an install replaced them. */
  private readonly frozen = new Map<number, Int32Array>();
  /**
   * The live records listed for the slot being walked, pinned: a listed record whose key
   * was preserved earlier can be replaced again, and its id must not be reused (for
   * another key) before the walk reaches it.
   */
  private listing: Int32Array | undefined;

  constructor(
    private readonly keyspace: Keyspace,
    readonly seq: number,
    readonly slots: readonly SlotRange[],
    private readonly onClose: (view: MemoryView) => void,
  ) {
    this.mask = slotMask(slots);
    let keys = 0;
    for (const r of slots) for (let s = r.start; s <= r.end; s++) keys += keyspace.slotKeyCount(s);
    this.keyCountHint = keys;
  }

  /** Whether a change to `slot` must be preserved for this view. */
  watches(slot: number): boolean {
    return !this.closed && this.mask[slot] === 1 && slot >= this.cursor && !this.frozen.has(slot);
  }

  /** Records `id` (-1 = absent) as the key's record at `seq` unless one is recorded. */
  preserve(slot: number, key: string, id: number): void {
    let saved = this.preserved.get(slot);
    if (!saved) {
      saved = new Map();
      this.preserved.set(slot, saved);
    }
    if (saved.has(key)) return;
    saved.set(key, id);
    if (id >= 0) this.keyspace.pin(id);
  }

  /** Keeps the records an install is about to replace in `slot`. */
  freeze(slot: number, oldIds: Int32Array): void {
    for (const id of oldIds) this.keyspace.pin(id);
    this.frozen.set(slot, oldIds);
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async for the StoreView contract; yields between batches
  async *batches(limits: BatchLimits): AsyncGenerator<StoreRecord[]> {
    if (this.closed) throw this.closedError();
    const keyspace = this.keyspace;
    let batch: StoreRecord[] = [];
    let batchBytes = 0;
    // Entries are taken when listed (string bytes are immutable arena ranges, large
    // collections are copied), so a finished slot needs no protection while its batch
    // is consumed.
    const push = (id: number): boolean => {
      batch.push({ key: keyspace.keyOf(id), entry: keyspace.entry(id, 'view') });
      batchBytes += keyspace.dataBytesOf(id) + 16;
      return batch.length >= limits.maxRecords || batchBytes >= limits.maxBytes;
    };
    const flush = (): StoreRecord[] => {
      const full = batch;
      batch = [];
      batchBytes = 0;
      return full;
    };
    for (const range of this.slots) {
      for (let slot = range.start; slot <= range.end; slot++) {
        this.cursor = slot;
        const frozen = this.frozen.get(slot);
        let listed = frozen;
        if (!listed) {
          listed = keyspace.slotIds(slot);
          for (const id of listed) keyspace.pin(id);
          this.listing = listed;
        }
        if (listed.length === 0 && !this.preserved.has(slot)) continue;
        // A listed record is not changed while this view watches the slot (a change makes
        // a new record and the view keeps the old one), so a listed record whose key was
        // not preserved is its key's record at `seq`.
        const fromPreserved = new Set<string>();
        for (const listedId of listed) {
          const saved = this.preserved.get(slot);
          let id = listedId;
          if (saved) {
            const key = keyspace.keyString(listedId);
            const before = saved.get(key);
            if (before !== undefined) {
              id = before;
              fromPreserved.add(key);
            }
          }
          if (id >= 0 && push(id)) {
            yield flush();
            // Closed while the consumer held the batch: the pins are gone, stop here.
            if (this.closed) {
              this.stopWalk();
              return;
            }
            throwIfAborted(limits.signal);
          }
        }
        // Keys that existed at `seq` but were removed before the listing (keys changed
        // after their listed record was emitted are skipped through the listed set).
        const saved = this.preserved.get(slot);
        if (saved && saved.size > fromPreserved.size) {
          const listedKeys = new Set<string>();
          for (const id of listed) listedKeys.add(keyspace.keyString(id));
          for (const [key, id] of saved) {
            if (id < 0 || fromPreserved.has(key) || listedKeys.has(key)) continue;
            if (push(id)) {
              yield flush();
              if (this.closed) {
                this.stopWalk();
                return;
              }
              throwIfAborted(limits.signal);
            }
          }
        }
        this.releaseSlot(slot);
        this.cursor = slot + 1;
      }
    }
    this.cursor = Number.MAX_SAFE_INTEGER;
    if (batch.length > 0) yield flush();
  }

  private releaseSlot(slot: number): void {
    const listing = this.listing;
    if (listing) {
      this.listing = undefined;
      for (const id of listing) this.keyspace.unpin(id);
    }
    const saved = this.preserved.get(slot);
    if (saved) {
      this.preserved.delete(slot);
      for (const id of saved.values()) if (id >= 0) this.keyspace.unpin(id);
    }
    const frozen = this.frozen.get(slot);
    if (frozen) {
      this.frozen.delete(slot);
      for (const id of frozen) this.keyspace.unpin(id);
    }
  }

  /** A walk cut short: an error when the store closed under it, a quiet end otherwise. */
  private stopWalk(): void {
    if (this.storeGone) throw this.closedError();
  }

  private closedError(): Error {
    return this.storeGone ? storeClosed('memory store') : failedPrecondition('view is closed');
  }

  /** The store closed: what the view holds is gone with it. */
  closeWithStore(): void {
    if (!this.closed) this.storeGone = true;
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.releaseSlot(this.cursor);
    for (const slot of [...this.preserved.keys(), ...this.frozen.keys()]) this.releaseSlot(slot);
    this.onClose(this);
  }
}
