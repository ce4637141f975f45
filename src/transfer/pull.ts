import type { SlotRange } from '../core';
import type { Store } from '../store';
import { Connection } from '../wire/connection';
import type { ClientSecurity } from '../wire/security';
import {
  type InstallOptions,
  type InstallProgress,
  type InstallResultWithResumes,
  install,
} from './install';
import { NodeFetch } from './node-source';
import { createSnapshot, deleteRemoteSnapshot } from './remote-snapshot';

export interface PullOptions extends Pick<InstallOptions, 'throttle' | 'admit'> {
  source: string;
  /** TLS and token of the calls to the source node. */
  security?: ClientSecurity;
  slots?: SlotRange[];
  snapshotId?: string;
  /** A new snapshot is incremental: the changes after this seq (this store must be at it). */
  sinceSeq?: number;
  signal?: AbortSignal;
  maxRetries?: number;
  retryDelayMs?: number;
  onProgress?: (progress: InstallProgress) => void;
}

/**
 * Fetches a snapshot from another node (a new one of `slots` unless `snapshotId` names
 * one) straight into a staged install of `store`; see `install`.
 */
export async function pullIntoStore(
  store: Store,
  options: PullOptions,
): Promise<InstallResultWithResumes> {
  const conn = new Connection(options.source, { security: options.security });
  // A snapshot created for this pull is of no use to anyone once it ends.
  let created: string | undefined;
  try {
    const snapshotId =
      options.snapshotId ||
      (created = (
        await createSnapshot(
          conn,
          {
            slots: options.slots ?? [],
            ...(options.sinceSeq !== undefined ? { sinceSeq: options.sinceSeq } : {}),
          },
          { signal: options.signal },
        )
      ).id);
    const source = new NodeFetch(conn, {
      snapshotId,
      maxRetries: options.maxRetries,
      retryDelayMs: options.retryDelayMs,
    });
    return await install(store, source, {
      signal: options.signal,
      onProgress: options.onProgress,
      throttle: options.throttle,
      admit: options.admit,
    });
  } finally {
    if (created) await deleteRemoteSnapshot(conn, created);
    conn.close();
  }
}
