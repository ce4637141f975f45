import { ErrorCodes, ShardsnapError } from '../core';
import { ArtifactInstaller, type InstallOutcome } from '../snapshot';
import { type Store, canInstallImages } from '../store';
import { type DownloadOptions, downloadArtifact } from './download';
import { readManifest } from './read-manifest';
import type { ArchiveTargets } from './target';
import { archiveUri, parseArchiveUri } from './uri';

export interface RestoreStatus {
  snapshotId: string;
  bytesReceived: number;
  totalBytes: number;
  keysStaged: number;
  resumes: number;
}

export interface RestoreOptions extends Omit<DownloadOptions, 'onRetry'> {
  onProgress?: (status: RestoreStatus) => void;
  onRetry?: (error: ShardsnapError, offset: number, attempt: number) => void;
}

/**
 * Installs an archive into `store`, all-or-nothing: chunks verified against the manifest
 * go straight into a staged install, which commits only once the SHA-256 matches. Any
 * failure (a corrupt object, an unreachable store after the retries) drops what was
 * staged and leaves the store as it was.
 */
export async function restoreArchive(
  store: Store,
  targets: ArchiveTargets,
  uri: string,
  options: RestoreOptions = {},
): Promise<InstallOutcome & { resumes: number }> {
  const location = parseArchiveUri(uri);
  const target = targets.open(location.bucket);
  const record = await readManifest(target, location, options.signal);
  const { manifest } = record;
  if (manifest.snapshot.kind === 'files' && !canInstallImages(store)) {
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `archive ${archiveUri(location)} is a RocksDB checkpoint ("files"); a ${store.backend} node cannot install it`,
    );
  }
  const installer = new ArtifactInstaller(store);
  let resumes = 0;
  try {
    const chunks = downloadArtifact(target, record, {
      ...options,
      onRetry: (error, offset, attempt) => {
        resumes = attempt;
        options.onRetry?.(error, offset, attempt);
      },
    });
    for await (const chunk of chunks) {
      await installer.push(chunk.offset, chunk.data);
      options.onProgress?.({
        snapshotId: manifest.snapshot.id,
        bytesReceived: chunk.offset + chunk.data.length,
        totalBytes: manifest.size,
        keysStaged: installer.recordsStaged,
        resumes,
      });
    }
    const outcome = await installer.finish(manifest.sha256);
    return { ...outcome, resumes };
  } finally {
    await installer.abort();
  }
}
