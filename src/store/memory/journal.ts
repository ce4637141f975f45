import type { Mutation, StoreRecord } from '../../core';
import type { DeltaTarget } from '../delta';
import type { InstallTarget } from '../store';
import type { DeltaChanges } from './staged-delta';

/**
 * What a memory store tells its write-ahead log, in the order it applies things. Each
 * call fixes the record's place in the log synchronously and returns the promise of its
 * durability; a call throws at once (nothing applied yet) when the log can no longer be
 * written, which makes the node read-only.
 */
export interface MemoryJournal {
  /** A write batch, before it is applied: `seq` is the seq it gets. */
  write(batch: {
    mutations: readonly Mutation[];
    atMs: number | readonly number[];
    seq: number;
  }): Promise<void>;
  /** Records staged by an install (`installId` is unique across restarts). */
  installPart(
    installId: bigint,
    target: InstallTarget,
    records: readonly StoreRecord[],
  ): Promise<void>;
  /** An install swapped in: `recordCount` records staged, the store now at `seq`. */
  installCommit(
    installId: bigint,
    commit: { target: InstallTarget; recordCount: number; seq: number },
  ): Promise<void>;
  /** An incremental snapshot applied (`atMs`: the clock reading it was applied at). */
  delta(change: {
    target: DeltaTarget;
    changes: DeltaChanges;
    atMs: number;
    seq: number;
  }): Promise<void>;
  /**
   * Keys the expiry sweep removed (no seq): logged so that a replay removes them at the
   * same place between writes, whatever clock readings the writes around them carry.
   */
  expired(keys: readonly Buffer[]): Promise<void>;
  /** Throws when writes are refused (the log failed). */
  check(): void;
}
