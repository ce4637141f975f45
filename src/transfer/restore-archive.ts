import {
  type ArchiveTargets,
  type DownloadOptions,
  archiveUri,
  parseArchiveUri,
  readManifest,
} from '../archive';
import { ErrorCodes, ShardsnapError } from '../core';
import { type Store, canInstallImages } from '../store';
import { ArchiveSource } from './archive-source';
import {
  type InstallOptions,
  type InstallProgress,
  type InstallResultWithResumes,
  install,
} from './install';

export interface RestoreOptions
  extends DownloadOptions, Pick<InstallOptions, 'throttle' | 'admit'> {
  onProgress?: (progress: InstallProgress) => void;
}

/**
 * Installs an archive into `store`, all-or-nothing (see `install`): a corrupt object or
 * an unreachable store after the retries leaves the store as it was.
 */
export async function restoreArchive(
  store: Store,
  targets: ArchiveTargets,
  uri: string,
  options: RestoreOptions = {},
): Promise<InstallResultWithResumes> {
  const location = parseArchiveUri(uri);
  const target = targets.open(location.bucket);
  const record = await readManifest(target, location, options.signal);
  if (record.manifest.snapshot.kind === 'files' && !canInstallImages(store)) {
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `archive ${archiveUri(location)} is a RocksDB checkpoint ("files"); a ${store.backend} node cannot install it`,
    );
  }
  const { signal, onProgress, throttle, admit, ...download } = options;
  const source = new ArchiveSource(target, record, archiveUri(location), download);
  return install(store, source, { signal, onProgress, throttle, admit });
}
