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

/** The status of a migration that has not started yet. */
export function initialStatus(
  request: { id: string; source: string; slots: SlotRange[] },
  target: string,
): MigrationStatus {
  return {
    migrationId: request.id,
    phase: 'SNAPSHOT',
    slots: request.slots,
    source: request.source,
    target,
    bytes: 0,
    totalBytes: 0,
    keys: 0,
    lag: 0,
    changesApplied: 0,
    writePauseMs: 0,
    elapsedMs: 0,
    snapshotAttempts: 0,
    handoffAttempts: 0,
    detail: '',
    error: '',
  };
}
