import { failedPrecondition, formatSlotRanges, normalizeSlotRanges } from '../core';
import { ChangeApplier } from './change-applier';
import { ChangeFeed } from './change-feed';
import type { MigrationRun, SnapshotAttempt } from './run';
import { SOURCE_CALL_TIMEOUT_MS } from './tuning';

/** The source must own every slot now; its incarnation pins the change stream's history. */
export async function checkSource(run: MigrationRun): Promise<string> {
  const { slots, source } = run.request;
  const stats = await run.peer.stats({ signal: run.signal, deadlineMs: SOURCE_CALL_TIMEOUT_MS });
  const covered = slots.every((want) =>
    stats.ownedSlots.some((have) => have.start <= want.start && want.end <= have.end),
  );
  if (!covered) {
    throw failedPrecondition(
      `source ${source} does not own all of slots ${formatSlotRanges(slots)} (owns ${formatSlotRanges(stats.ownedSlots) || 'none'})`,
    );
  }
  return stats.incarnation;
}

/**
 * Takes a snapshot of the slots on the source and starts reading the changes that follow
 * it into a buffer. `keep` is told the snapshot's id at once, so that it is deleted
 * whatever happens next.
 */
export async function beginAttempt(
  run: MigrationRun,
  incarnation: string,
  keep: (snapshotId: string) => void,
): Promise<SnapshotAttempt> {
  const { slots } = run.request;
  // Not cancelled by the migration's signal: a snapshot the source made after the cancel
  // would have no id here to delete it by.
  const snapshot = await run.peer.createSnapshot(slots);
  keep(snapshot.id);
  const feed = new ChangeFeed(
    (feedSignal) =>
      run.peer.streamChanges(
        { slots, fromSeq: snapshot.seq, incarnation },
        { signal: AbortSignal.any([run.signal, feedSignal]) },
      ),
    run.tuning.feedBufferBytes,
  );
  // Counted in the status without an event of its own: the next progress event carries it.
  const applier = new ChangeApplier(run.deps.store, snapshot.seq, (batches) => {
    run.status.changesApplied += batches;
  });
  return { run, snapshot, incarnation, feed, applier };
}

/** SNAPSHOT: pulls and installs the snapshot; stops early if the change feed fails meanwhile. */
export async function installSnapshot(attempt: SnapshotAttempt): Promise<void> {
  const { run, snapshot, feed } = attempt;
  const { deps, request } = run;
  const outcome = await run.peer.pull(deps.store, {
    throttle: deps.throttle,
    // The source's artifact must hold exactly the slots being imported, nothing more.
    admit: (header) => {
      const wanted = formatSlotRanges(normalizeSlotRanges(request.slots));
      const got = formatSlotRanges(normalizeSlotRanges(header.slots));
      if (got !== wanted) {
        throw failedPrecondition(
          `the source sent an artifact of slots ${got}; the migration imports ${wanted}`,
        );
      }
    },
    snapshotId: snapshot.id,
    signal: AbortSignal.any([run.signal, feed.failureSignal]),
    onProgress: (p) =>
      run.emit(
        'SNAPSHOT',
        { bytes: p.bytesReceived, totalBytes: p.totalBytes, keys: p.keysStaged },
        false,
      ),
  });
  deps.onInstalled?.(outcome.keysInstalled);
  run.emit('CATCH_UP', {
    keys: outcome.keysInstalled,
    bytes: outcome.bytes,
    totalBytes: outcome.bytes,
  });
}
