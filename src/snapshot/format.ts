import {
  type SlotRange,
  dataLoss,
  formatSlotRanges,
  isFullRange,
  normalizeSlotRanges,
} from '../core';

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
  if (header === null || typeof header !== 'object') {
    throw dataLoss('artifact header is not a JSON object');
  }
  if (header.format_version !== FORMAT_VERSION) {
    throw dataLoss(`unsupported artifact format version ${String(header.format_version)}`);
  }
  checkHeader(header);
  return { header, length };
}

/**
 * What an install relies on: the slots it replaces are exactly `slots` (an explicit,
 * non-empty list), `full` agrees with them, a files artifact (a database image) is a
 * full one, and the seq is one a store can adopt.
 */
function checkHeader(header: ArtifactHeader): void {
  const bad = (what: string): never => {
    throw dataLoss(`malformed artifact header: ${what}`);
  };
  if (header.kind !== 'records' && header.kind !== 'files')
    bad(`unknown kind ${String(header.kind)}`);
  if (!Number.isSafeInteger(header.seq) || header.seq < 0) bad(`seq ${String(header.seq)}`);
  if (typeof header.full !== 'boolean') bad('full must be true or false');
  if (!Array.isArray(header.slots) || (header.slots.length === 0 && header.full !== true)) {
    bad('slots must be a non-empty list of ranges (or empty with full)');
  }
  let slots: SlotRange[] = [];
  try {
    slots = normalizeSlotRanges(
      header.slots.map((r: unknown) => {
        const { start, end } = (r ?? {}) as { start?: unknown; end?: unknown };
        return { start: start as number, end: end as number };
      }),
    );
  } catch (error) {
    bad((error as Error).message);
  }
  if (header.full !== isFullRange(slots)) {
    bad(`full is ${header.full} but the slots are ${formatSlotRanges(slots)}`);
  }
  if (header.kind === 'files' && !header.full) bad('a files artifact must be full');
}
