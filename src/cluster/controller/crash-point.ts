/**
 * Where a controller stops dead when `SHARDSNAP_CONTROLLER_EXIT_AT` names the point: the
 * fault-injection hook of the recovery tests (a kill -9 at an exact step). Points:
 * `recorded` (migration written, not started), `SNAPSHOT`, `CATCH_UP`, `HANDOFF` (the
 * target reported that phase), `done` (the target reported DONE, the topology is not
 * committed yet), `committed`.
 */
export type CrashPoint = 'recorded' | 'SNAPSHOT' | 'CATCH_UP' | 'HANDOFF' | 'done' | 'committed';

export function crashAt(configured: string | undefined, point: CrashPoint): void {
  if (configured === point) process.kill(process.pid, 'SIGKILL');
}
