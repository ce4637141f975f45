export interface MigrationTuning {
  /** Fresh snapshots taken when the source's change log cannot cover an install. */
  maxSnapshotAttempts: number;
  maxHandoffAttempts: number;
  /** Changes buffered here while the snapshot installs. */
  feedBufferBytes: number;
  /** How long the target waits for a commit answer before the outcome is in doubt. */
  commitTimeoutMs: number;
  /** How long an in-doubt commit is retried before the migration reports it. */
  inDoubtRetryMs: number;
  /** Minimum spacing of progress events. */
  progressEveryMs: number;
  /** How long catch-up waits for a small lag before a handoff is tried anyway. */
  catchUpPatienceMs: number;
}

export const DEFAULT_TUNING: MigrationTuning = {
  maxSnapshotAttempts: 3,
  maxHandoffAttempts: 3,
  feedBufferBytes: 64 << 20,
  commitTimeoutMs: 5_000,
  inDoubtRetryMs: 30_000,
  progressEveryMs: 100,
  catchUpPatienceMs: 5_000,
};

/** Deadline of the target's status calls to the source. */
export const SOURCE_CALL_TIMEOUT_MS = 5_000;

/** Deadline of an AbortHandoff: it only ends a pause, or reports a committed one. */
export const ABORT_HANDOFF_TIMEOUT_MS = 5_000;

/** Source seqs a target may trail by when it starts a handoff. */
export const CAUGHT_UP_LAG = 64;
