import { ErrorCodes, ShardsnapError, isShardsnapError } from '../core';
import type { ArchiveRecord } from './archive-snapshot';
import { decodeManifest } from './manifest';
import type { ArchiveTarget } from './target';
import { type ArchiveLocation, archiveLocation, archiveUri } from './uri';

/** A manifest is a few bytes per MiB of artifact; anything far larger is not one. */
const MAX_MANIFEST_BYTES = 64 << 20;

/** Reads and checks an archive's manifest; NOT_FOUND when the archive has none. */
export async function readManifest(
  target: ArchiveTarget,
  location: ArchiveLocation,
  signal?: AbortSignal,
): Promise<ArchiveRecord> {
  const where = `bucket=${location.bucket}, key=${location.manifestKey}`;
  const pieces: Buffer[] = [];
  let size = 0;
  try {
    for await (const piece of target.getRange(location.manifestKey, 0, undefined, signal)) {
      size += piece.length;
      if (size > MAX_MANIFEST_BYTES)
        throw new ShardsnapError(ErrorCodes.dataLoss, `archive manifest is too large [${where}]`);
      pieces.push(piece);
    }
  } catch (error) {
    if (isShardsnapError(error, ErrorCodes.notFound)) {
      throw new ShardsnapError(
        ErrorCodes.notFound,
        `archive ${archiveUri(location)} not found (${error.message})`,
        { cause: error },
      );
    }
    throw error;
  }
  const manifest = decodeManifest(Buffer.concat(pieces), where);
  // The artifact is named relative to the manifest, so an archive can be copied as a whole.
  const artifactKey = `${location.dir}${manifest.artifact}`;
  return { location: { ...archiveLocation(location.bucket, location.dir), artifactKey }, manifest };
}
