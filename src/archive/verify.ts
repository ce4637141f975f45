import { dataLoss } from '../core';
import { type ArtifactHeader, MAX_HEADER_BYTES, tryDecodeHeader } from '../snapshot';
import type { ArchiveRecord } from './archive-snapshot';
import { type DownloadOptions, downloadArtifact } from './download';
import { readManifest } from './read-manifest';
import type { ArchiveTargets } from './target';
import { archiveUri, parseArchiveUri } from './uri';

export interface VerifiedArchive extends ArchiveRecord {
  uri: string;
  header: ArtifactHeader;
  bytes: number;
  chunks: number;
  resumes: number;
}

/** The artifact's header must describe the snapshot its manifest names. */
function checkHeader(header: ArtifactHeader, record: ArchiveRecord, where: string): void {
  const s = record.manifest.snapshot;
  if (header.snapshot_id !== s.id || header.seq !== s.seq || header.kind !== s.kind) {
    throw dataLoss(
      `artifact header (snapshot ${header.snapshot_id}, seq ${header.seq}, ${header.kind}) does not ` +
        `match the manifest (snapshot ${s.id}, seq ${s.seq}, ${s.kind}) [${where}]`,
    );
  }
}

/**
 * Downloads an archive and checks it against its manifest without installing it: the
 * object's size, every chunk's CRC32C, the SHA-256 of the whole, and the artifact header.
 */
export async function verifyArchive(
  targets: ArchiveTargets,
  uri: string,
  options: DownloadOptions & { onProgress?: (bytes: number, total: number) => void } = {},
): Promise<VerifiedArchive> {
  const location = parseArchiveUri(uri);
  const target = targets.open(location.bucket);
  const record = await readManifest(target, location, options.signal);
  const where = `bucket=${location.bucket}, key=${record.location.artifactKey}`;
  let head: Buffer[] | undefined = [];
  let headBytes = 0;
  let header: ArtifactHeader | undefined;
  let bytes = 0;
  let chunks = 0;
  let resumes = 0;
  const download = downloadArtifact(target, record, {
    ...options,
    onRetry: (error, offset, attempt) => {
      resumes = attempt;
      options.onRetry?.(error, offset, attempt);
    },
  });
  for await (const chunk of download) {
    if (head) {
      head.push(chunk.data);
      headBytes += chunk.data.length;
      const parsed = tryDecodeHeader(Buffer.concat(head));
      if (parsed) {
        header = parsed.header;
        checkHeader(header, record, where);
        head = undefined;
      } else if (headBytes > MAX_HEADER_BYTES + 12) {
        throw dataLoss(`artifact header is larger than ${MAX_HEADER_BYTES} bytes [${where}]`);
      }
    }
    bytes += chunk.data.length;
    chunks++;
    options.onProgress?.(bytes, record.manifest.size);
  }
  if (!header) throw dataLoss(`artifact ends before its header [${where}]`);
  return { ...record, uri: archiveUri(location), header, bytes, chunks, resumes };
}
