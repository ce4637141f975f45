import type { SlotRange } from '../core';
import type { Connection } from '../wire/connection';
import { type HandoffCommit, SourcePeer } from './source-peer';
import { ABORT_HANDOFF_TIMEOUT_MS } from './tuning';

// The handoff calls on a connection the caller owns, with the deadlines a target uses.

/** Pauses writes to `slots` on the source, for at most `maxPauseMs` (also the deadline). */
export function prepareHandoff(
  conn: Connection,
  request: { migrationId: string; slots: SlotRange[]; target: string; maxPauseMs: number },
  signal?: AbortSignal,
): Promise<{ seq: number; incarnation: string }> {
  return new SourcePeer(conn).prepareHandoff(request, { signal, deadlineMs: request.maxPauseMs });
}

/** Makes the handoff of a prepared migration final on the source. */
export function commitHandoff(
  conn: Connection,
  migrationId: string,
  timeoutMs: number,
): Promise<HandoffCommit> {
  return new SourcePeer(conn).commitHandoff(migrationId, { deadlineMs: timeoutMs });
}

/** Resumes writes on the source; tells whether the handoff had committed. */
export function abortHandoff(
  conn: Connection,
  migrationId: string,
  handedTo?: { slots: SlotRange[]; target: string },
): Promise<{ aborted: boolean; committed: boolean }> {
  return new SourcePeer(conn).abortHandoff(migrationId, handedTo, {
    deadlineMs: ABORT_HANDOFF_TIMEOUT_MS,
  });
}
