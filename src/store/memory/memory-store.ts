import {
  type Entry,
  type Mutation,
  type SlotRange,
  cloneEntry,
  isExpired,
  normalizeSlotRanges,
  slotOf,
  toMemberKey,
  valueBytes,
} from '../../core';
import { ChangeListeners } from '../change-listeners';
import { writeClock } from '../write-clock';
import type {
  ChangeListener,
  InstallTarget,
  StagedInstall,
  Store,
  StoreStats,
  StoreView,
  WriteOptions,
} from '../store';
import { applyMutation, checkTypes } from './apply';
import { Keyspace } from './keyspace';
import { MemoryStagedInstall, type StagedSlots } from './staged-install';
import { MemoryView } from './view';

export interface MemoryStoreOptions {
  /** Clock for expiry decisions; tests move it. */
  now?: () => number;
}

/**
 * The in-memory backend: a per-slot keyspace with copy-on-write views. Every write batch
 * is applied synchronously in one turn of the event loop, so it is atomic for readers and
 * views, and gets the next sequence number.
 */
export class MemoryStore implements Store {
  readonly backend = 'memory';
  private readonly keyspace = new Keyspace();
  private readonly views = new Set<MemoryView>();
  private seq = 0;
  private closed = false;
  private readonly now: () => number;
  private readonly listeners = new ChangeListeners();

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? Date.now;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that failures reject
  async write(mutations: readonly Mutation[], options?: WriteOptions): Promise<{ seq: number }> {
    this.assertOpen();
    const clock = writeClock(options, mutations.length, this.now);
    checkTypes(
      mutations,
      (key) => {
        const entry = this.keyspace.get(slotOf(key), toMemberKey(key));
        return entry && { type: entry.value.type, expireAtMs: entry.expireAtMs };
      },
      clock,
    );
    mutations.forEach((m, i) => this.apply(m, clock(i)));
    this.seq++;
    this.listeners.emit({
      kind: 'write',
      seq: this.seq,
      mutations,
      atMs: clock(Math.max(0, mutations.length - 1)),
    });
    return { seq: this.seq };
  }

  private apply(m: Mutation, now: number): void {
    const slot = slotOf(m.key);
    const key = toMemberKey(m.key);
    let current = this.keyspace.get(slot, key);
    const held = this.preserve(slot, key, current);
    if (current && isExpired(current, now)) {
      // An expired key is absent: the mutation starts from nothing.
      this.keyspace.delete(slot, key, m.key.length + valueBytes(current.value));
      current = undefined;
    }
    const mayMutate = current !== undefined && !held.has(current);
    const { entry, bytesDelta } = applyMutation(m, current, mayMutate, cloneEntry);
    if (entry && !isExpired(entry, now)) {
      this.keyspace.set(slot, key, entry, bytesDelta);
    } else if (current) {
      this.keyspace.delete(slot, key, m.key.length + valueBytes(current.value));
    }
  }

  /**
   * Before a change to a key: lets each view that still needs the slot keep the current
   * entry. Returns the entries that views now hold, which must not be changed in place.
   */
  private preserve(slot: number, key: string, current: Entry | undefined): Set<Entry> {
    const held = new Set<Entry>();
    for (const view of this.views) {
      if (!view.watches(slot)) continue;
      view.preserve(slot, key, current);
      if (current && view.holds(slot, key, current)) held.add(current);
    }
    return held;
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async read(keys: readonly Buffer[]): Promise<Array<Entry | undefined>> {
    this.assertOpen();
    const now = this.now();
    return keys.map((key) => {
      const entry = this.keyspace.get(slotOf(key), toMemberKey(key));
      return entry && !isExpired(entry, now) ? entry : undefined;
    });
  }

  stats(): Promise<StoreStats> {
    return Promise.resolve({
      keyCount: this.keyspace.keyCount,
      seq: this.seq,
      dataBytes: this.keyspace.dataBytes,
      openViews: this.views.size,
    });
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async openView(slots: readonly SlotRange[]): Promise<StoreView> {
    this.assertOpen();
    const view = new MemoryView(this.keyspace, this.seq, normalizeSlotRanges(slots), (v) =>
      this.views.delete(v),
    );
    this.views.add(view);
    return view;
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async beginInstall(target: InstallTarget): Promise<StagedInstall> {
    this.assertOpen();
    return new MemoryStagedInstall(target, (t, staged) => this.swapIn(t, staged));
  }

  /** Replaces the target's slots with the staged maps in one synchronous step. */
  private swapIn(target: InstallTarget, staged: StagedSlots): { seq: number } {
    this.assertOpen();
    const ranges = target.full ? normalizeSlotRanges([]) : target.slots;
    for (const range of ranges) {
      for (let slot = range.start; slot <= range.end; slot++) {
        const next = staged.maps.get(slot);
        if (!next && !this.keyspace.map(slot)) continue;
        const old = this.keyspace.replace(slot, next, staged.bytes.get(slot) ?? 0);
        for (const view of this.views) if (view.watches(slot)) view.freeze(slot, old);
      }
    }
    this.seq = target.full ? target.seq : this.seq + 1;
    this.listeners.emit({ kind: 'replace', seq: this.seq, slots: ranges });
    return { seq: this.seq };
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    for (const view of [...this.views]) view.close();
    this.closed = true;
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('store is closed');
  }
}
