import { ShardsnapError, ErrorCodes, type SlotRange } from '../core';
import type { StagedInstall, Store } from './store';

/** What an incremental artifact applies on top of a store (see docs/design/incremental.md). */
export interface DeltaTarget {
  /** Slot ranges the delta covers (normalized); every key it names lies in them. */
  slots: readonly SlotRange[];
  /** The delta covers every slot: the store then adopts `seq`. */
  full: boolean;
  /** The store's seq must be exactly this one, at the start and at commit. */
  baseSeq: number;
  /** The source's seq the delta brings the keys to. */
  seq: number;
}

/**
 * A delta being staged: records to upsert (`add`) and keys to delete (`delete`); nothing
 * is visible until `commit` applies all of them in one step, or none.
 */
export interface StagedDelta extends StagedInstall {
  delete(keys: readonly Buffer[]): Promise<void>;
}

/** Stores that can apply incremental snapshots (the memory backend can). */
export interface DeltaInstallStore extends Store {
  beginDeltaInstall(target: DeltaTarget): Promise<StagedDelta>;
}

export function canInstallDeltas(store: Store): store is DeltaInstallStore {
  return typeof (store as Partial<DeltaInstallStore>).beginDeltaInstall === 'function';
}

/** The target is not where the delta starts: installing it would lose or repeat changes. */
export function baseSeqMismatch(targetSeq: number, baseSeq: number): ShardsnapError {
  return new ShardsnapError(
    ErrorCodes.failedPrecondition,
    `this node is at seq ${targetSeq}, the incremental snapshot applies on top of seq ${baseSeq} ` +
      'only; install a full snapshot (or a delta since this node seq) instead',
    { reason: 'BASE_SEQ_MISMATCH', metadata: { target_seq: targetSeq, base_seq: baseSeq } },
  );
}
