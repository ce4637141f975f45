import type { PullProgress } from '../generated/shardsnap/v1/PullProgress';
import type { InstallOutcome } from '../snapshot';

/** A PullProgress message while bytes arrive (from a node or an archive). */
export function pullProgress(p: {
  bytesReceived: number;
  totalBytes: number;
  snapshotId: string;
  resumes: number;
}): PullProgress {
  return {
    bytesReceived: p.bytesReceived,
    totalBytes: p.totalBytes,
    keysInstalled: 0,
    done: false,
    snapshotId: p.snapshotId,
    resumes: p.resumes,
  };
}

/** The last PullProgress message, once the install has committed. */
export function pullDone(outcome: InstallOutcome & { resumes: number }): PullProgress {
  return {
    bytesReceived: outcome.bytes,
    totalBytes: outcome.bytes,
    keysInstalled: outcome.keysInstalled,
    done: true,
    snapshotId: outcome.snapshotId,
    resumes: outcome.resumes,
    result: outcome,
  };
}
