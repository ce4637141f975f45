import { performance } from 'node:perf_hooks';
import type { SnapshotAttempt } from './run';
import { CAUGHT_UP_LAG, SOURCE_CALL_TIMEOUT_MS } from './tuning';

/**
 * CATCH_UP: applies changes until this node trails the source by little: nothing
 * buffered, and the source's current seq (asked, since batches that waited in buffers
 * carry an old one) close to what was applied, so that a handoff drains in a moment.
 */
export async function catchUp(attempt: SnapshotAttempt): Promise<void> {
  const { run, feed, applier } = attempt;
  const patientUntil = performance.now() + run.tuning.catchUpPatienceMs;
  // Before a handoff attempt, catching up is part of the handoff: the phase stays.
  const phase = run.status.phase === 'HANDOFF' ? 'HANDOFF' : 'CATCH_UP';
  for (;;) {
    await applier.apply(await feed.take(50, run.signal));
    run.emit(phase, { lag: applier.lag(feed.headSeq) }, false);
    if (!feed.established) continue;
    // Writes that come faster than they apply here would keep the lag up for ever: past
    // the patience, the handoff is tried anyway (the pause stops them; its limit holds).
    if (performance.now() > patientUntil) return;
    if (feed.buffered > 0 || applier.appliedSeq < feed.receivedSeq) continue;
    if (applier.lag(feed.headSeq) > CAUGHT_UP_LAG) continue;
    const { seq } = await run.peer.stats({
      signal: run.signal,
      deadlineMs: SOURCE_CALL_TIMEOUT_MS,
    });
    const lag = applier.lag(seq);
    run.emit(phase, { lag }, false);
    if (lag <= CAUGHT_UP_LAG) return;
  }
}
