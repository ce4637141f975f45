import type { Logger } from 'pino';
import type { SlotRange, Throttle } from '../core';
import type { Ownership } from '../ownership';
import type { Store } from '../store';
import type { ClientSecurity } from '../wire/security';
import type { ChangeApplier } from './change-applier';
import type { ChangeFeed } from './change-feed';
import type { HandoffState } from './handoff-state';
import type { SourcePeer } from './source-peer';
import type { MigrationPhase, MigrationStatus } from './status';
import type { MigrationTuning } from './tuning';

export interface MigrationDeps {
  store: Store;
  ownership: Ownership;
  /** This node's address, where MOVED points once the slots are here. */
  address: string;
  logger: Logger;
  /** TLS and token of this node's calls to the source. */
  security?: ClientSecurity;
  /** Paid for every snapshot chunk received (rate limits, byte counts). */
  throttle?: Throttle;
  /** Keys the snapshot install put into the store (metrics). */
  onInstalled?: (keys: number) => void;
  tuning?: Partial<MigrationTuning>;
  /** Takes over an import whose commit got no answer; `release` ends its local pause. */
  resolveInDoubt: (migrationId: string, release: () => void) => void;
  /** Fires when the node stops: an unanswered commit is then left to the next start. */
  stopSignal?: AbortSignal;
  /**
   * Resolves once this node has removed the keys of those of `slots` it gave away earlier
   * (it does so in the background, in steps): an import of such slots waits for that
   * rather than being refused.
   */
  cleanupsDone?: (slots: readonly SlotRange[]) => Promise<void>;
}

export interface MigrationRequest {
  id: string;
  source: string;
  slots: SlotRange[];
  maxPauseMs: number;
}

/** What every phase of one migration works with. */
export interface MigrationRun {
  readonly deps: MigrationDeps;
  readonly request: MigrationRequest;
  readonly tuning: MigrationTuning;
  readonly peer: SourcePeer;
  /** Fires when the migration is cancelled (never once the commit was sent). */
  readonly signal: AbortSignal;
  /** The current status; counters may be updated in place between events. */
  readonly status: MigrationStatus;
  readonly handoff: HandoffState;
  /** Updates the status; progress (`force` false) within a phase is rate-limited. */
  emit(phase: MigrationPhase, changes?: Partial<MigrationStatus>, force?: boolean): void;
}

/** One snapshot of the source and the changes that follow it. */
export interface SnapshotAttempt {
  readonly run: MigrationRun;
  readonly snapshot: { id: string; seq: number };
  /** The source's history the seqs belong to. */
  readonly incarnation: string;
  readonly feed: ChangeFeed;
  readonly applier: ChangeApplier;
}
