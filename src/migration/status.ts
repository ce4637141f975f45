import type { SlotRange } from '../core';

export type MigrationPhase = 'SNAPSHOT' | 'CATCH_UP' | 'HANDOFF' | 'DONE' | 'FAILED' | 'CANCELLED';

export const TERMINAL_PHASES: ReadonlySet<MigrationPhase> = new Set([
  'DONE',
  'FAILED',
  'CANCELLED',
]);

/** Where a migration stands; every progress event is a copy of it. */
export interface MigrationStatus {
  migrationId: string;
  phase: MigrationPhase;
  slots: SlotRange[];
  source: string;
  target: string;
  /** Snapshot bytes received and keys installed. */
  bytes: number;
  totalBytes: number;
  keys: number;
  /** Source seqs not yet applied here. */
  lag: number;
  changesApplied: number;
  /** Measured on the source. */
  writePauseMs: number;
  elapsedMs: number;
  snapshotAttempts: number;
  handoffAttempts: number;
  detail: string;
  error: string;
}
