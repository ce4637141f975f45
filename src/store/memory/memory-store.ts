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
  SlotSize,
  StagedInstall,
  Store,
  StoreStats,
  StoreView,
  WriteOptions,
} from '../store';
import { applyMutation, checkTypes } from './apply';
import { ExpirySweep, type ExpirySweepOptions } from './expiry-sweep';
import { Keyspace, hashKey } from './keyspace';
import type { MemoryJournal } from './journal';
import { RetireQueue } from './retire-queue';
import { MemoryStagedInstall, type StagedSlots } from './staged-install';
import { type DeltaChanges, MemoryStagedDelta } from './staged-delta';
import { type DeltaTarget, type StagedDelta, baseSeqMismatch } from '../delta';
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
  /** Runs once when the store closes, before anything is released (stops a durability layer). */
  beforeClose?: () => Promise<void>;
}

/**
 * The in-memory backend: a per-slot keyspace of arena records (see keyspace.ts) with
 * copy-on-write views. Every write batch is applied synchronously in one turn of the
 * event loop, so it is atomic for readers and views, and gets the next sequence number.
 */
export class MemoryStore implements Store {
  readonly backend = 'memory';
  /** A step swaps out this many slots' tables (~15,000 keys at 1,000,000 keys in all). */
  readonly dropStepSlots = 256;
  private readonly keyspace = new Keyspace();
  private readonly retired = new RetireQueue(this.keyspace);
  private readonly views = new Set<MemoryView>();
  private seq = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private journal: MemoryJournal | undefined;
  private readonly beforeClose: (() => Promise<void>) | undefined;
  private readonly now: () => number;
  private readonly listeners = new ChangeListeners();
  private sweep: ExpirySweep | undefined;
  private readonly watching: MemoryView[] = [];
  private staging = 0;
  private readonly expiredInStep: Buffer[] = [];
  /** The clock reading of the logged change being replayed (see `replayAt`). */
  private replayNow: number | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    this.now = options.now ?? Date.now;
    this.beforeClose = options.beforeClose;
    if (options.expirySweep) this.startExpirySweep(options.expirySweep);
  }

  /**
   * Turns active expiry on (a store recovering from its log starts it after the replay:
   * a key the sweep removed by today's clock could otherwise change how a logged write,
   * applied at its own older clock reading, finds it).
   */
  startExpirySweep(options: ExpirySweepOptions): void {
    if (this.sweep || this.closed) return;
    this.sweep = new ExpirySweep(
      this.keyspace,
      options,
      this.now,
      (id) => this.removeExpired(id),
      () => this.logExpired(),
      () => this.views.size === 0 && this.staging === 0 && this.retired.empty,
    );
  }

  /**
   * Logs every later change (undefined: stops logging). Attached once a recovery has
   * replayed the log, so that the replay itself is not logged again.
   */
  setJournal(journal: MemoryJournal | undefined): void {
    this.journal = journal;
  }

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
    // Logged before it is applied (a refused log refuses the write untouched); the log's
    // order is fixed here, its durability awaited once the batch is visible.
    const durable = this.journal?.write({
      mutations,
      atMs: Array.isArray(options?.atMs) ? (options.atMs as readonly number[]) : clock(0),
      seq: this.seq + 1,
    });
    for (let i = 0; i < mutations.length; i++) this.apply(mutations[i] as Mutation, clock(i));
    const seq = ++this.seq;
    this.listeners.emit({
      kind: 'write',
      seq,
      mutations,
      atMs: clock(Math.max(0, mutations.length - 1)),
    });
    if (durable) await durable;
    return { seq };
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
    // A copy: the arena range is freed with the record.
    if (this.journal) this.expiredInStep.push(Buffer.from(keyspace.keyOf(id)));
    this.removeRecord(id);
  }

  /** The keys of one sweep step, logged as one record (see MemoryJournal.expired). */
  private logExpired(): void {
    const keys = this.expiredInStep.splice(0);
    if (keys.length === 0 || !this.journal) return;
    try {
      // Not awaited: nobody waits on the sweep. A log that failed has made the node
      // read-only already; the keys were expired for every reader anyway.
      this.journal.expired(keys).catch(() => undefined);
    } catch {
      // The log refuses appends (failed): see above.
    }
  }

  /**
   * Replays keys the sweep removed (a recovery, before the store serves anything): each
   * is removed if present, whatever its expiry says at this clock.
   */
  replayExpired(keys: readonly Buffer[]): void {
    this.assertOpen();
    const keyspace = this.keyspace;
    for (const key of keys) {
      const id = keyspace.find(slotOf(key), key, hashKey(key));
      if (id >= 0) this.removeRecord(id);
    }
  }

  private removeRecord(id: number): void {
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

  slotSizes(slots: readonly SlotRange[]): Promise<SlotSize[]> {
    this.assertOpen();
    const sizes: SlotSize[] = [];
    for (const range of normalizeSlotRanges(slots)) {
      for (let slot = range.start; slot <= range.end; slot++) {
        const bytes = this.keyspace.slotBytes(slot);
        if (bytes > 0) sizes.push({ slot, bytes });
      }
    }
    return Promise.resolve(sizes);
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

  /**
   * Runs `replay` (which re-applies a logged change) with the store's clock reading
   * `atMs`, the reading the change was first applied with. Only for a recovery, before
   * the store serves anything.
   */
  async replayAt<T>(atMs: number, replay: () => Promise<T>): Promise<T> {
    this.replayNow = atMs;
    try {
      return await replay();
    } finally {
      this.replayNow = undefined;
    }
  }

  /**
   * Installs begun and neither committed nor aborted. A local snapshot waits for none:
   * it then never depends on log records older than itself.
   */
  get installsInProgress(): number {
    return this.staging;
  }

  /**
   * Resolves once the records that installs and slot drops replaced are all freed (they
   * are freed in bounded steps after the swap, see RetireQueue).
   */
  reclaimed(): Promise<void> {
    return this.retired.idle();
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
    this.journal?.check();
    this.staging++;
    return new MemoryStagedInstall(
      this.keyspace,
      target,
      (t, staged) => this.swapIn(t, staged),
      () => this.journal,
      () => this.staging--,
    );
  }

  /** Replaces the target's slots with the staged tables in one synchronous step. */
  private swapIn(target: InstallTarget, staged: StagedSlots): { seq: number } {
    this.assertOpen();
    const keyspace = this.keyspace;
    const ranges = target.full ? normalizeSlotRanges([]) : target.slots;
    const replaced: Int32Array[] = [];
    for (const range of ranges) {
      for (let slot = range.start; slot <= range.end; slot++) {
        const next = staged.tables.get(slot);
        if (!next && keyspace.slotKeyCount(slot) === 0) continue;
        const oldIds = keyspace.swapSlot(slot, next);
        for (const view of this.views) if (view.watches(slot)) view.freeze(slot, oldIds);
        if (oldIds.length > 0) replaced.push(oldIds);
      }
    }
    this.retired.add(replaced);
    staged.tables.clear();
    this.seq = target.full ? target.seq : this.seq + 1;
    this.listeners.emit({ kind: 'replace', seq: this.seq, slots: ranges });
    return { seq: this.seq };
  }

  /** Entries of `keys` (expired or missing: undefined) and the seq they are all at. */
  async readWithSeq(
    keys: readonly Buffer[],
  ): Promise<{ seq: number; entries: Array<Entry | undefined> }> {
    const seq = this.seq;
    // read() takes no turn of the event loop: no write lands between it and `seq`.
    return { seq, entries: await this.read(keys) };
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async beginDeltaInstall(target: DeltaTarget): Promise<StagedDelta> {
    this.assertOpen();
    if (this.seq !== target.baseSeq) throw baseSeqMismatch(this.seq, target.baseSeq);
    return new MemoryStagedDelta(
      target,
      () => !this.closed,
      (t, changes) => this.applyDelta(t, changes),
    );
  }

  /** Applies a staged delta over the live data in one synchronous step, or nothing. */
  private applyDelta(
    target: DeltaTarget,
    changes: DeltaChanges,
  ): { seq: number; durable?: Promise<void> | undefined } {
    this.assertOpen();
    if (this.seq !== target.baseSeq) throw baseSeqMismatch(this.seq, target.baseSeq);
    this.journal?.check();
    const keyspace = this.keyspace;
    const now = this.replayNow ?? this.now();
    const change = (key: Buffer, entry: Entry | undefined): void => {
      const slot = slotOf(key);
      const hash = hashKey(key);
      const current = keyspace.find(slot, key, hash);
      this.preserve(slot, key, current);
      if (entry && !(entry.expireAtMs > 0 && entry.expireAtMs <= now)) {
        keyspace.put(keyspace.create(key, hash, slot, entry), current);
      } else if (current >= 0) keyspace.remove(current);
    };
    for (const { key, entry } of changes.upserts) change(key, entry);
    for (const key of changes.deletes) change(key, undefined);
    if (changes.upserts.length + changes.deletes.length === 0 && target.seq === this.seq) {
      return { seq: this.seq };
    }
    // A delta of every slot brings the whole store to the source's seq; one of some slots
    // leaves the seq where it was (docs/design/incremental.md). Either way the change is
    // announced as a replace of the delta's slots: streams following them must restart.
    if (target.full) this.seq = target.seq;
    // Logged with the clock reading that decided which of its records had expired.
    const durable = this.journal?.delta({ target, changes, atMs: now, seq: this.seq });
    this.listeners.emit({ kind: 'replace', seq: this.seq, slots: target.slots });
    return { seq: this.seq, durable };
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.release();
    return this.closing;
  }

  private async release(): Promise<void> {
    try {
      await this.beforeClose?.();
    } finally {
      this.releaseMemory();
    }
  }

  private releaseMemory(): void {
    this.sweep?.stop();
    this.retired.clear();
    for (const view of [...this.views]) view.closeWithStore();
    this.closed = true;
    this.keyspace.clear();
  }

  private assertOpen(): void {
    // Closing counts as closed: nothing new starts while the durability layer winds down.
    if (this.closed || this.closing) throw storeClosed('memory store');
  }
}
