import { ErrorCodes, ShardsnapError, type Throttle, dataLoss, throwIfAborted } from '../core';
import { type SnapshotCatalog, type SnapshotEntry, readArtifact } from '../snapshot';
import { ChunkDigests } from './chunk-digests';
import { archiveDir } from './layout';
import { type ArchiveManifest, encodeManifest, manifestFor } from './manifest';
import type { ArchiveTarget } from './target';
import { type ArchiveLocation, archiveLocation } from './uri';

/** An archive in a store: where it is and what its manifest says. */
export interface ArchiveRecord {
  location: ArchiveLocation;
  manifest: ArchiveManifest;
}

export interface ArchiveOptions {
  /** Key prefix in the bucket ("" = its root). */
  prefix: string;
  signal?: AbortSignal;
  onProgress?: (bytesUploaded: number, totalBytes: number) => void;
  /** Paid for every piece read for the upload (rate limits, byte counts). */
  throttle?: Throttle;
}

/** Waits until a build has ended; only READY snapshots can be archived. */
async function readyMeta(entry: SnapshotEntry, signal?: AbortSignal): Promise<void> {
  if (entry.meta.state === 'BUILDING') await entry.waitForBytes(Number.MAX_SAFE_INTEGER, signal);
  throwIfAborted(signal);
  if (entry.meta.state !== 'READY') {
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `snapshot ${entry.meta.id} is ${entry.meta.state}${entry.meta.error ? ` (${entry.meta.error})` : ''}, not READY`,
    );
  }
}

/**
 * The artifact's pieces for the upload, digested on the way: after the last one, what
 * was read must be the artifact the catalog describes, or the upload fails (before it
 * completes, so no object appears).
 */
async function* digested(
  entry: SnapshotEntry,
  digests: ChunkDigests,
  signal?: AbortSignal,
  throttle?: Throttle,
): AsyncGenerator<Buffer> {
  const { meta } = entry;
  for await (const piece of readArtifact(entry, { offset: 0, chunkSize: meta.chunkSize, signal })) {
    await throttle?.take(piece.data.length, signal);
    digests.update(piece.data);
    yield piece.data;
  }
  const { sha256, bytes } = digests.finish();
  if (bytes !== meta.sizeBytes || sha256 !== meta.sha256) {
    throw dataLoss(
      `spooled artifact of snapshot ${meta.id} does not match its manifest: ${bytes} bytes, ` +
        `sha256 ${sha256}; expected ${meta.sizeBytes} bytes, sha256 ${meta.sha256}`,
    );
  }
}

/**
 * Uploads a READY snapshot: the artifact object streamed from the spooled file (memory
 * bounded by the upload's parts), then the manifest with the CRC32C of every chunk,
 * written last so that an interrupted archive never looks complete. The snapshot is
 * leased for the whole upload.
 */
export async function archiveSnapshot(
  catalog: SnapshotCatalog,
  snapshotId: string,
  target: ArchiveTarget,
  options: ArchiveOptions,
): Promise<ArchiveRecord> {
  const { signal } = options;
  const lease = catalog.lease(snapshotId);
  try {
    const entry = lease.entry;
    await readyMeta(entry, signal);
    const meta = { ...entry.meta };
    const location = archiveLocation(target.bucket, archiveDir(options.prefix, meta));
    const digests = new ChunkDigests(meta.chunkSize);
    options.onProgress?.(0, meta.sizeBytes);
    await target.put(location.artifactKey, digested(entry, digests, signal, options.throttle), {
      size: meta.sizeBytes,
      contentType: 'application/octet-stream',
      signal,
      onProgress: (uploaded) => options.onProgress?.(uploaded, meta.sizeBytes),
    });
    const stored = await target.head(location.artifactKey, signal);
    if (stored?.size !== meta.sizeBytes) {
      throw dataLoss(
        `the store holds ${stored?.size ?? 'no'} bytes for the artifact, expected ${meta.sizeBytes} ` +
          `[bucket=${target.bucket}, key=${location.artifactKey}]`,
      );
    }
    const manifest = manifestFor(meta, digests.crcs, Date.now());
    await target.put(location.manifestKey, encodeManifest(manifest), {
      contentType: 'application/json',
      signal,
    });
    return { location, manifest };
  } finally {
    lease.release();
  }
}
