import type * as grpc from '@grpc/grpc-js';
import type { SlotRange } from '../core';
import { type Connection, call } from '../wire/connection';

const deadline = (ms: number): grpc.CallOptions => ({ deadline: new Date(Date.now() + ms) });

/** Node to node (source side of a split):  pauses writes to `slots` on the source; resolves with the covering seq. */
export function prepareHandoff(
  conn: Connection,
  request: { migrationId: string; slots: SlotRange[]; target: string; maxPauseMs: number },
  signal?: AbortSignal,
): Promise<{ seq: number; incarnation: string }> {
  return call(
    'PrepareHandoff',
    (cb) => conn.migration.PrepareHandoff(request, deadline(request.maxPauseMs), cb),
    signal,
  );
}

/** Node to node: makes the handoff of a prepared migration final on the source. */
export function commitHandoff(
  conn: Connection,
  migrationId: string,
  timeoutMs: number,
): Promise<{ writePauseMs: number; waitedMs: number; persistMs: number }> {
  return call('CommitHandoff', (cb) =>
    conn.migration.CommitHandoff({ migrationId }, deadline(timeoutMs), cb),
  );
}

/** Node to node: resumes writes on the source; tells whether the handoff had committed. */
export function abortHandoff(
  conn: Connection,
  migrationId: string,
  handedTo?: { slots: SlotRange[]; target: string },
): Promise<{ aborted: boolean; committed: boolean }> {
  return call('AbortHandoff', (cb) =>
    conn.migration.AbortHandoff(
      { migrationId, slots: handedTo?.slots ?? [], target: handedTo?.target ?? '' },
      deadline(5_000),
      cb,
    ),
  );
}
