import type { SlotRange } from '../core';
import type { Store } from '../store';
import { Connection } from '../wire/connection';
import { type InstallProgress, type InstallResultWithResumes, install } from './install';
import { NodeFetch } from './node-source';
import { createSnapshot } from './remote-snapshot';

export interface PullOptions {
  source: string;
  slots?: SlotRange[];
  snapshotId?: string;
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
  const conn = new Connection(options.source);
  try {
    const snapshotId =
      options.snapshotId || (await createSnapshot(conn, { slots: options.slots ?? [] })).id;
    const source = new NodeFetch(conn, {
      snapshotId,
      maxRetries: options.maxRetries,
      retryDelayMs: options.retryDelayMs,
    });
    return await install(store, source, { signal: options.signal, onProgress: options.onProgress });
  } finally {
    conn.close();
  }
}
