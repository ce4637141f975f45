import type { Throttle } from '../core';
import { ArtifactInstaller, type InstallOutcome, type InstallerOptions } from '../snapshot';
import type { Store } from '../store';
import type { ChunkSource } from './chunk-source';

export interface InstallProgress {
  snapshotId: string;
  bytesReceived: number;
  /** 0 while the size of the artifact is unknown (its build still running). */
  totalBytes: number;
  keysStaged: number;
  resumes: number;
}

export interface InstallOptions extends InstallerOptions {
  signal?: AbortSignal;
  /** Paid for every chunk received (rate limits, byte counts). */
  throttle?: Throttle;
  onProgress?: (progress: InstallProgress) => void;
}

export type InstallResultWithResumes = InstallOutcome & { resumes: number };

/**
 * Installs the artifact `source` yields into `store`, all-or-nothing: chunks go into a
 * staged install as they arrive, which commits only once the SHA-256 of the whole
 * matches the source's. Any failure drops what was staged and leaves the store as it was.
 */
export async function install(
  store: Store,
  source: ChunkSource,
  options: InstallOptions = {},
): Promise<InstallResultWithResumes> {
  const installer = new ArtifactInstaller(store, { admit: options.admit });
  try {
    for await (const chunk of source.chunks(options.signal)) {
      await options.throttle?.take(chunk.data.length, options.signal);
      await installer.push(chunk.offset, chunk.data);
      // The installer keeps no view of what it was given.
      chunk.release?.();
      options.onProgress?.({
        snapshotId: source.snapshotId,
        bytesReceived: chunk.offset + chunk.data.length,
        totalBytes: source.totalBytes,
        keysStaged: installer.recordsStaged,
        resumes: source.resumes,
      });
    }
    const outcome = await installer.finish(source.expectedSha256());
    return { ...outcome, resumes: source.resumes };
  } finally {
    await installer.abort();
  }
}
