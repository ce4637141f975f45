import type { Entry, Mutation, SlotRange, StoreRecord } from '../core';

export interface StoreStats {
  keyCount: number;
  seq: number;
  dataBytes: number;
  /** Point-in-time views currently open. */
  openViews: number;
}

export interface BatchLimits {
  maxRecords: number;
  maxBytes: number;
  signal?: AbortSignal;
}

/** A point-in-time view of some slots, consistent at `seq`, unaffected by later writes. */
export interface StoreView {
  readonly seq: number;
  readonly slots: readonly SlotRange[];
  /** Keys in the view when it was opened (exact for the memory backend). */
  readonly keyCountHint: number;
  /** Yields the view's records in batches; a view is walked once. */
  batches(limits: BatchLimits): AsyncGenerator<StoreRecord[]>;
  /** Releases what the view holds; idempotent. */
  close(): void;
}

export interface InstallTarget {
  /** Slot ranges the artifact covers (normalized); `full` replaces the whole store. */
  slots: readonly SlotRange[];
  full: boolean;
  /** The snapshot's sequence number; a full install adopts it. */
  seq: number;
}

/** An install being staged: nothing is visible to readers until `commit`. */
export interface StagedInstall {
  add(records: StoreRecord[]): Promise<void>;
  /**
   * True when `add` copies every byte it keeps before it returns: the records given may
   * then be views into a buffer that is reused afterwards (no copy per record first).
   */
  readonly copiesRecords?: boolean;
  readonly recordCount: number;
  commit(): Promise<{ seq: number; keysInstalled: number }>;
  /** Drops everything staged; idempotent, and a no-op after commit. */
  abort(): Promise<void>;
}

/**
 * What moved a store's seq forward: a write batch (exactly as applied, in order), or an
 * install that replaced whole slots (a full install replaces every slot).
 */
export type StoreChange =
  | {
      kind: 'write';
      seq: number;
      mutations: readonly Mutation[];
      /** The clock reading of the batch (of its last mutation, with several readings). */
      atMs: number;
    }
  | { kind: 'replace'; seq: number; slots: readonly SlotRange[] };

export type ChangeListener = (change: StoreChange) => void;

export interface WriteOptions {
  /**
   * The clock reading (ms since the epoch) that decides which keys have expired while the
   * batch applies. Replays of another node's changes pass the source's reading, so that
   * a key near its expiry ends the same on both nodes. An array gives one reading per
   * mutation (a replay that merges batches applied at different instants).
   */
  atMs?: number | readonly number[];
}

/**
 * A Redis-like store. Backends are chosen by name from the store registry.
 *
 * Once closed, a store answers alike whatever its backend, so that callers (a node
 * stopping under a call) can tell "closed" from a failure: every method returning a
 * promise except `close()` rejects with a ShardsnapError of code `unavailable` and reason
 * STORE_CLOSED; so do views and staged installs opened before the close (`batches()`,
 * `add()`, `commit()`), while their own `close()`/`abort()` stay harmless no-ops.
 * `close()` is idempotent: every call resolves once the store is closed. `properties()`
 * returns `{}` and `onChange` listeners are no longer called.
 */
export interface Store {
  readonly backend: string;
  /** Applies the mutations as one atomic batch and returns the batch's sequence number. */
  write(mutations: readonly Mutation[], options?: WriteOptions): Promise<{ seq: number }>;
  /** Entries in key order of the request; expired or missing keys are `undefined`. */
  read(keys: readonly Buffer[]): Promise<Array<Entry | undefined>>;
  stats(): Promise<StoreStats>;
  openView(slots: readonly SlotRange[]): Promise<StoreView>;
  beginInstall(target: InstallTarget): Promise<StagedInstall>;
  /**
   * Calls `listener` for every change, synchronously, in seq order, once the change is
   * visible to readers and before the write's promise resolves. Returns the unsubscribe.
   */
  onChange(listener: ChangeListener): () => void;
  /**
   * Backend gauges for metrics, read at every scrape: name → current value (the RocksDB
   * backend gives a few of its integer properties, by property name). Cheap and
   * synchronous; never throws: a closed store returns `{}`. Absent when the backend has
   * nothing beyond `stats()` to report.
   */
  properties?(): Record<string, number>;
  /**
   * Bytes of keys and values per slot, for the slots given (empty = every slot), slots
   * with none left out. What a rebalance by bytes weighs slots by; absent when the
   * backend does not keep per-slot sizes.
   */
  slotSizes?(slots: readonly SlotRange[]): Promise<SlotSize[]>;
  /**
   * Slots a background slot drop takes per step (`dropSlotsInSteps`); absent: all in one,
   * for a backend whose drop costs the same whatever the keys (range tombstones).
   */
  readonly dropStepSlots?: number;
  close(): Promise<void>;
}

export interface SlotSize {
  slot: number;
  bytes: number;
}

/** One file of a database image (a checkpoint), as a files artifact lists it. */
export interface ImageFile {
  name: string;
  size: number;
}

/** A database image being staged file by file; `commit` swaps it in for the whole store. */
export interface StagedImage {
  write(file: ImageFile, index: number, data: Buffer): Promise<void>;
  commit(): Promise<{ seq: number; keysInstalled: number }>;
  abort(): Promise<void>;
}

/** Stores that can take a whole database image (the RocksDB backend takes checkpoints). */
export interface ImageInstallTarget extends Store {
  beginImageInstall(image: { seq: number; files: readonly ImageFile[] }): Promise<StagedImage>;
}

export function canInstallImages(store: Store): store is ImageInstallTarget {
  return typeof (store as Partial<ImageInstallTarget>).beginImageInstall === 'function';
}
