import type { SlotRange } from '../core';
import type { ArchiveRecord } from './archive-snapshot';
import { archiveUri } from './uri';

/** An archive as the wire (`ArchiveInfo`) and the CLI's JSON show it. */
export interface ArchiveSummary {
  uri: string;
  bucket: string;
  key: string;
  snapshotId: string;
  seq: number;
  slots: SlotRange[];
  kind: string;
  sizeBytes: number;
  sha256: string;
  nodeId: string;
  createdAtMs: number;
  uploadedAtMs: number;
  artifactKey: string;
  chunkSize: number;
  keyCount: number;
  backend: string;
  strategy: string;
}

export function summarizeArchive(record: ArchiveRecord): ArchiveSummary {
  const { location, manifest } = record;
  const s = manifest.snapshot;
  return {
    uri: archiveUri(location),
    bucket: location.bucket,
    key: location.manifestKey,
    snapshotId: s.id,
    seq: s.seq,
    slots: s.slots,
    kind: s.kind,
    sizeBytes: manifest.size,
    sha256: manifest.sha256,
    nodeId: s.node_id,
    createdAtMs: s.created_at_ms,
    uploadedAtMs: manifest.uploaded_at_ms,
    artifactKey: location.artifactKey,
    chunkSize: manifest.chunk_size,
    keyCount: s.key_count,
    backend: s.backend,
    strategy: s.strategy,
  };
}
