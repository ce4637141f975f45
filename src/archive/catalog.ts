import { ErrorCodes, isShardsnapError, notFound } from '../core';
import type { ArchiveRecord } from './archive-snapshot';
import { listingPrefix } from './layout';
import { readManifest } from './read-manifest';
import type { ArchiveTarget } from './target';
import { type ArchiveLocation, MANIFEST_NAME, archiveLocation, archiveUri } from './uri';

const MANIFEST_READS_AT_ONCE = 4;

/**
 * Age of an archive: when its snapshot was taken, then when it was uploaded. Not the seq,
 * which starts again at 0 when a memory node restarts empty.
 */
function byAge(a: ArchiveRecord, b: ArchiveRecord): number {
  return (
    a.manifest.snapshot.created_at_ms - b.manifest.snapshot.created_at_ms ||
    a.manifest.uploaded_at_ms - b.manifest.uploaded_at_ms
  );
}

/** Orders archives by node and slot ranges (their keys), then oldest first. */
function byKeyThenAge(a: ArchiveRecord, b: ArchiveRecord): number {
  const da = a.location.dir.replace(/seq-[^/]*\/$/, '');
  const db = b.location.dir.replace(/seq-[^/]*\/$/, '');
  if (da !== db) return da < db ? -1 : 1;
  return byAge(a, b);
}

/**
 * The complete archives under `prefix`: the directories holding a manifest. Uploads cut
 * short have none and are not listed; an unreadable manifest is reported to `onSkip`.
 */
export async function listArchives(
  target: ArchiveTarget,
  prefix: string | undefined,
  options: { signal?: AbortSignal; onSkip?: (key: string, error: unknown) => void } = {},
): Promise<ArchiveRecord[]> {
  const locations: ArchiveLocation[] = [];
  for await (const object of target.list(listingPrefix(prefix), options.signal)) {
    if (object.key.endsWith(`/${MANIFEST_NAME}`)) {
      locations.push(archiveLocation(target.bucket, object.key.slice(0, -MANIFEST_NAME.length)));
    }
  }
  const records: ArchiveRecord[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < locations.length) {
      const location = locations[next++] as ArchiveLocation;
      try {
        records.push(await readManifest(target, location, options.signal));
      } catch (error) {
        // Deleted since the listing, or not a manifest of ours: not an archive to show.
        const skippable =
          isShardsnapError(error, ErrorCodes.notFound) ||
          isShardsnapError(error, ErrorCodes.dataLoss);
        if (!skippable) throw error;
        options.onSkip?.(location.manifestKey, error);
      }
    }
  };
  await Promise.all(Array.from({ length: MANIFEST_READS_AT_ONCE }, worker));
  return records.sort(byKeyThenAge);
}

/**
 * Removes an archive: the manifest first (from then on the archive is gone for every
 * reader), then the artifact. NOT_FOUND when neither exists.
 */
export async function deleteArchive(
  target: ArchiveTarget,
  location: ArchiveLocation,
  signal?: AbortSignal,
): Promise<void> {
  let artifactKey = location.artifactKey;
  const manifest = await target.head(location.manifestKey, signal);
  if (manifest) {
    artifactKey = await readManifest(target, location, signal).then(
      (record) => record.location.artifactKey,
      () => location.artifactKey,
    );
    await target.delete(location.manifestKey, signal);
  } else if (!(await target.head(location.artifactKey, signal))) {
    throw notFound(`archive ${archiveUri(location)} not found`);
  }
  await target.delete(artifactKey, signal);
}

/** Deletes all but the newest `keep` archives of `records` (one node's); returns the deleted ones. */
export async function pruneArchives(
  target: ArchiveTarget,
  records: readonly ArchiveRecord[],
  keep: number,
  signal?: AbortSignal,
): Promise<ArchiveRecord[]> {
  if (keep <= 0) return [];
  const newestFirst = [...records].sort((a, b) => byAge(b, a));
  const removed = newestFirst.slice(keep);
  for (const record of removed) await deleteArchive(target, record.location, signal);
  return removed;
}
