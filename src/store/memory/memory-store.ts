import {
  type Entry,
  type Mutation,
  type SlotRange,
  cloneEntry,
  normalizeSlotRanges,
  slotOf,
  storeClosed,
  toMemberKey,
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
import { ExpirySweep, type ExpirySweepOptions } from './expiry-sweep';
import { Keyspace, hashKey } from './keyspace';
import { MemoryStagedInstall, type StagedSlots } from './staged-install';
import { MemoryView } from './view';

/** Only collection ops can fail on a key's type; batches without them need no check. */
const requiresType = (m: Mutation): boolean =>
  m.op !== 'set' && m.op !== 'del' && m.op !== 'expire';

export interface MemoryStoreOptions {
  /** Clock for expiry decisions; tests move it. */
  now?: () => number;
  /**
   * Active expiry: a bounded background step that removes expired keys (and compacts
   * the arena). Off unless given; nodes turn it on.
   */
  expirySweep?: ExpirySweepOptions;
}

/**
 * The in-memory backend: a per-slot keyspace of arena records (see keyspace.ts) with
 * copy-on-write views. Every write batch is applied synchronously in one turn of the
 * event loop, so it is atomic for readers and views, and gets the next sequence number.
 */
export class MemoryStore implements Store {
  readonly backend = 'memory';
  private readonly keyspace = new Keyspace();
  private readonly views = new Set<MemoryView>();
  private seq = 0;
  private closed = false;
  private readonly now: () => number;
  private readonly listeners = new ChangeListeners();
  private readonly sweep: ExpirySweep | undefined;
  private readonly watching: MemoryView[] = [];

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    if (options.expirySweep) {
      this.sweep = new ExpirySweep(this.keyspace, options.expirySweep, this.now, (id) =>
        this.removeExpired(id),
      );
    }
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that failures reject
  async write(mutations: readonly Mutation[], options?: WriteOptions): Promise<{ seq: number }> {
    this.assertOpen();
    const clock = writeClock(options, mutations.length, this.now);
    const keyspace = this.keyspace;
    if (mutations.some(requiresType)) {
      checkTypes(
        mutations,
        (key) => {
          const id = keyspace.find(slotOf(key), key, hashKey(key));
          return id < 0
            ? undefined
            : { type: keyspace.typeOf(id), expireAtMs: keyspace.expireOf(id) };
        },
        clock,
      );
    }
    for (let i = 0; i < mutations.length; i++) this.apply(mutations[i] as Mutation, clock(i));
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
    const keyspace = this.keyspace;
    const key = m.key;
    const slot = slotOf(key);
    const hash = hashKey(key);
    let current = keyspace.find(slot, key, hash);
    const held = this.preserve(slot, key, current);
    if (current >= 0 && keyspace.isExpired(current, now)) {
      // An expired key is absent: the mutation starts from nothing.
      keyspace.remove(current);
      current = -1;
    }
    switch (m.op) {
      case 'set':
        if (m.expireAtMs > 0 && m.expireAtMs <= now) {
          if (current >= 0) keyspace.remove(current);
        } else {
          keyspace.put(keyspace.createString(key, hash, slot, m.value, m.expireAtMs), current);
        }
        return;
      case 'del':
        if (current >= 0) keyspace.remove(current);
        return;
      case 'expire':
        if (current < 0) return;
        if (m.expireAtMs > 0 && m.expireAtMs <= now) keyspace.remove(current);
        else if (held || keyspace.records.pins(current) !== 0) {
          keyspace.put(keyspace.withExpiry(current, m.expireAtMs), current);
        } else keyspace.setExpiry(current, m.expireAtMs);
        return;
      default:
        break;
    }
    // A collection change: large collections no view holds change in place; every other
    // value is decoded (or copied), changed, and stored as a new record.
    const inPlace = current >= 0 && !held && keyspace.isMutableObject(current);
    const entry: Entry | undefined =
      current < 0 ? undefined : keyspace.entry(current, inPlace ? 'live' : 'view');
    const { entry: next } = applyMutation(m, entry, true, cloneEntry);
    if (!next) return;
    if (inPlace) keyspace.objectChanged(current);
    else keyspace.put(keyspace.create(key, hash, slot, next), current);
  }

  /**
   * Before a change to a key: lets each view that still needs the slot keep the current
   * record. Returns whether any view did (the record must then not change in place).
   */
  private preserve(slot: number, key: Buffer, current: number): boolean {
    if (this.views.size === 0) return false;
    const watching = this.watching;
    watching.length = 0;
    for (const view of this.views) if (view.watches(slot)) watching.push(view);
    if (watching.length === 0) return false;
    const member = toMemberKey(key);
    for (const view of watching) view.preserve(slot, member, current);
    watching.length = 0;
    return current >= 0;
  }

  /** The sweep found an expired key: removed as a write would, views keeping it. */
  private removeExpired(id: number): void {
    const keyspace = this.keyspace;
    const slot = keyspace.records.slot(id);
    if (this.views.size > 0) {
      const member = keyspace.keyString(id);
      for (const view of this.views) if (view.watches(slot)) view.preserve(slot, member, id);
    }
    keyspace.remove(id);
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async read(keys: readonly Buffer[]): Promise<Array<Entry | undefined>> {
    this.assertOpen();
    const now = this.now();
    const keyspace = this.keyspace;
    return keys.map((key) => {
      const id = keyspace.find(slotOf(key), key, hashKey(key));
      return id < 0 || keyspace.isExpired(id, now) ? undefined : keyspace.entry(id, 'copy');
    });
  }

  stats(): Promise<StoreStats> {
    if (this.closed) return Promise.reject(storeClosed('memory store'));
    return Promise.resolve({
      keyCount: this.keyspace.keyCount,
      seq: this.seq,
      dataBytes: this.keyspace.dataBytes,
      openViews: this.views.size,
    });
  }

  /** Bytes the keyspace holds (arena segments), and how many of them are live. */
  memoryUsage(): { arenaBytes: number; liveBytes: number; records: number } {
    return {
      arenaBytes: this.keyspace.arena.allocated,
      liveBytes: this.keyspace.arena.liveBytes,
      records: this.keyspace.records.inUse,
    };
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
    return new MemoryStagedInstall(this.keyspace, target, (t, staged) => this.swapIn(t, staged));
  }

  /** Replaces the target's slots with the staged tables in one synchronous step. */
  private swapIn(target: InstallTarget, staged: StagedSlots): { seq: number } {
    this.assertOpen();
    const keyspace = this.keyspace;
    const ranges = target.full ? normalizeSlotRanges([]) : target.slots;
    for (const range of ranges) {
      for (let slot = range.start; slot <= range.end; slot++) {
        const next = staged.tables.get(slot);
        if (!next && keyspace.slotKeyCount(slot) === 0) continue;
        const oldIds = keyspace.swapSlot(slot, next);
        for (const view of this.views) if (view.watches(slot)) view.freeze(slot, oldIds);
        for (const id of oldIds) keyspace.retire(id);
      }
    }
    staged.tables.clear();
    this.seq = target.full ? target.seq : this.seq + 1;
    this.listeners.emit({ kind: 'replace', seq: this.seq, slots: ranges });
    return { seq: this.seq };
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.sweep?.stop();
    for (const view of [...this.views]) view.closeWithStore();
    this.closed = true;
    this.keyspace.clear();
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (this.closed) throw storeClosed('memory store');
  }
}
