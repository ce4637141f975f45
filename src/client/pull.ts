import type { SlotRange } from '../core';
import { ArtifactInstaller, type InstallOutcome } from '../snapshot';
import type { Store } from '../store';
import { Connection } from './connection';
import { fetchLoop } from './fetch-stream';
import { createSnapshot } from './snapshots';

export interface PullOptions {
  source: string;
  slots?: SlotRange[];
  snapshotId?: string;
  signal?: AbortSignal;
  maxRetries?: number;
  retryDelayMs?: number;
  onProgress?: (progress: PullStatus) => void;
}

export interface PullStatus {
  snapshotId: string;
  bytesReceived: number;
  totalBytes: number;
  keysStaged: number;
  resumes: number;
}

/**
 * Fetches a snapshot from another node straight into a staged install of `store`. Chunks
 * are verified as they arrive; a dropped stream resumes at the last verified byte, so the
 * staged install simply continues. The install commits only after the SHA-256 matches.
 */
export async function pullIntoStore(
  store: Store,
  options: PullOptions,
): Promise<InstallOutcome & { resumes: number }> {
  const conn = new Connection(options.source);
  const installer = new ArtifactInstaller(store);
  try {
    const snapshotId =
      options.snapshotId || (await createSnapshot(conn, { slots: options.slots ?? [] })).id;
    let total = 0;
    let resumes = 0;
    const result = await fetchLoop(conn, {
      snapshotId,
      offset: 0,
      signal: options.signal,
      maxRetries: options.maxRetries,
      retryDelayMs: options.retryDelayMs,
      onInfo: (info) => {
        total = Number(info.sizeBytes);
      },
      onRetry: () => {
        resumes++;
      },
      onChunk: async (offset, raw) => {
        await installer.push(offset, raw);
        options.onProgress?.({
          snapshotId,
          bytesReceived: offset + raw.length,
          totalBytes: total,
          keysStaged: installer.recordsStaged,
          resumes,
        });
      },
    });
    const outcome = await installer.finish(result.sha256);
    return { ...outcome, resumes: result.resumes };
  } finally {
    await installer.abort();
    conn.close();
  }
}
