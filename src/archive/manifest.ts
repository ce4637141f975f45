import { type SlotRange, dataLoss, normalizeSlotRanges } from '../core';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, type ArtifactKind, type SnapshotMeta } from '../snapshot';
import { ARTIFACT_NAME } from './uri';

export const ARCHIVE_FORMAT = 'shardsnap-archive';
export const ARCHIVE_FORMAT_VERSION = 1;

/**
 * The manifest of an archive (`manifest.json`, UTF-8 JSON), written after the artifact
 * object is complete: an archive without one is not an archive.
 */
export interface ArchiveManifest {
  format: typeof ARCHIVE_FORMAT;
  format_version: number;
  /** Name of the artifact object, relative to the manifest's directory. */
  artifact: string;
  snapshot: {
    id: string;
    node_id: string;
    backend: string;
    strategy: string;
    kind: ArtifactKind;
    seq: number;
    slots: SlotRange[];
    full: boolean;
    key_count: number;
    created_at_ms: number;
    /** Format version of the artifact itself (docs/FORMAT.md). */
    artifact_format_version: number;
  };
  /** Bytes of the artifact. */
  size: number;
  /** Hex SHA-256 of the whole artifact. */
  sha256: string;
  chunk_size: number;
  /** CRC32C of every `chunk_size` piece of the artifact, in order (the last may be shorter). */
  chunk_crc32c: number[];
  uploaded_at_ms: number;
}

export function chunkCount(size: number, chunkSize: number): number {
  return Math.ceil(size / chunkSize);
}

export function manifestFor(
  meta: SnapshotMeta,
  chunkCrc32c: number[],
  uploadedAtMs: number,
): ArchiveManifest {
  return {
    format: ARCHIVE_FORMAT,
    format_version: ARCHIVE_FORMAT_VERSION,
    artifact: ARTIFACT_NAME,
    snapshot: {
      id: meta.id,
      node_id: meta.nodeId,
      backend: meta.backend,
      strategy: meta.strategy,
      kind: meta.kind,
      seq: meta.seq,
      slots: meta.slots,
      full: meta.full,
      key_count: meta.keyCount,
      created_at_ms: meta.createdAtMs,
      artifact_format_version: meta.formatVersion,
    },
    size: meta.sizeBytes,
    sha256: meta.sha256,
    chunk_size: meta.chunkSize,
    chunk_crc32c: chunkCrc32c,
    uploaded_at_ms: uploadedAtMs,
  };
}

export function encodeManifest(manifest: ArchiveManifest): Buffer {
  return Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`, 'utf8');
}

const isCount = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isText = (v: unknown): v is string => typeof v === 'string';

/** Parses and checks a manifest; anything malformed is DATA_LOSS (`where` names the object). */
export function decodeManifest(bytes: Buffer, where: string): ArchiveManifest {
  let m: ArchiveManifest;
  try {
    m = JSON.parse(bytes.toString('utf8')) as ArchiveManifest;
  } catch (cause) {
    throw dataLoss(`archive manifest is not JSON [${where}]`, cause);
  }
  const bad = (what: string): never => {
    throw dataLoss(`archive manifest ${what} [${where}]`);
  };
  if (typeof m !== 'object' || m === null) bad('is not an object');
  const format: string = ARCHIVE_FORMAT;
  if (m.format !== format) bad(`has format "${String(m.format)}", not ${format}`);
  if (m.format_version !== ARCHIVE_FORMAT_VERSION)
    bad(`has unsupported format_version ${String(m.format_version)}`);
  if (!isText(m.artifact) || !/^[A-Za-z0-9._-]+$/.test(m.artifact) || m.artifact.startsWith('.'))
    bad('names no valid artifact object');
  const s = m.snapshot as Partial<ArchiveManifest['snapshot']> | undefined;
  if (typeof s !== 'object' || s === null) bad('has no snapshot');
  const snap = s as ArchiveManifest['snapshot'];
  if (!isText(snap.id) || !isText(snap.node_id) || !isText(snap.backend) || !isText(snap.strategy))
    bad('has a malformed snapshot');
  if (snap.kind !== 'records' && snap.kind !== 'files')
    bad(`has unknown kind "${String(snap.kind)}"`);
  if (![snap.seq, snap.key_count, snap.created_at_ms].every(isCount))
    bad('has malformed snapshot numbers');
  if (!Array.isArray(snap.slots) || snap.slots.length === 0) bad('has no slot ranges');
  try {
    normalizeSlotRanges(snap.slots);
  } catch {
    bad('has invalid slot ranges');
  }
  if (!isCount(m.size) || !isCount(m.uploaded_at_ms)) bad('has a malformed size');
  if (!isText(m.sha256) || !/^[0-9a-f]{64}$/.test(m.sha256)) bad('has a malformed sha256');
  if (!isCount(m.chunk_size) || m.chunk_size < MIN_CHUNK_SIZE || m.chunk_size > MAX_CHUNK_SIZE)
    bad(`has chunk_size ${String(m.chunk_size)} outside ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`);
  if (!Array.isArray(m.chunk_crc32c) || m.chunk_crc32c.length !== chunkCount(m.size, m.chunk_size))
    bad(`lists ${m.chunk_crc32c?.length ?? 0} chunk CRC32Cs for ${m.size} bytes`);
  if (!m.chunk_crc32c.every((c) => isCount(c) && c <= 0xffffffff))
    bad('has a malformed chunk CRC32C');
  return m;
}
