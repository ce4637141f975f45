import { dataLoss, type SlotRange } from '../core';

/**
 * The records artifact, version 1 (docs/FORMAT.md):
 *
 *   magic "SSNAPv1\n" | u32 header_len | header JSON
 *   frames: u32 record_len (1..0xFFFFFFFE) | record
 *   trailer: u32 0xFFFFFFFF | u64 key_count | 32-byte SHA-256 of every byte before it
 *
 * The SHA-256 of the whole file is the artifact's `sha256`; the trailer's inner digest
 * lets a lone file be verified without its manifest.
 */
export const FORMAT_VERSION = 1;
export const MAGIC = Buffer.from('SSNAPv1\n', 'latin1');
export const END_MARKER = 0xffffffff;
export const TRAILER_BYTES = 4 + 8 + 32;
export const MAX_HEADER_BYTES = 1 << 20;

export type ArtifactKind = 'records' | 'files';

export interface ArtifactHeader {
  format_version: number;
  kind: ArtifactKind;
  snapshot_id: string;
  node_id: string;
  backend: string;
  strategy: string;
  seq: number;
  slots: SlotRange[];
  /** True when the artifact holds every slot (a full snapshot). */
  full: boolean;
  created_at_ms: number;
  /** Keys in the artifact, when known up front (files artifacts; records count them in the trailer). */
  key_count?: number;
}

export function encodeHeader(header: ArtifactHeader): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.allocUnsafe(MAGIC.length + 4 + json.length);
  MAGIC.copy(out, 0);
  out.writeUInt32LE(json.length, MAGIC.length);
  json.copy(out, MAGIC.length + 4);
  return out;
}

/** Parses the header if `buf` holds all of it; returns undefined when more bytes are needed. */
export function tryDecodeHeader(
  buf: Buffer,
): { header: ArtifactHeader; length: number } | undefined {
  if (buf.length < MAGIC.length + 4) return undefined;
  if (!buf.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw dataLoss('not a shardsnap artifact (bad magic)');
  }
  const jsonLength = buf.readUInt32LE(MAGIC.length);
  if (jsonLength > MAX_HEADER_BYTES)
    throw dataLoss(`artifact header too large (${jsonLength} bytes)`);
  const length = MAGIC.length + 4 + jsonLength;
  if (buf.length < length) return undefined;
  let header: ArtifactHeader;
  try {
    header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, length)) as ArtifactHeader;
  } catch (cause) {
    throw dataLoss('artifact header is not valid JSON', cause);
  }
  if (header.format_version !== FORMAT_VERSION) {
    throw dataLoss(`unsupported artifact format version ${header.format_version}`);
  }
  return { header, length };
}
