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
/**
 * Incremental artifacts (`base_seq` in the header, tombstone frames) are version 2, so
 * that a reader that knows only version 1 refuses them instead of installing a delta as
 * if it replaced its slots. Full and slot-range artifacts stay version 1.
 */
export const DELTA_FORMAT_VERSION = 2;
/** Type byte of a tombstone frame (version 2): the key is deleted, nothing follows it. */
export const TOMBSTONE_TYPE = 0;
export const MAX_LABELS = 64;
export const MAX_LABEL_KEY_BYTES = 256;
export const MAX_LABEL_VALUE_BYTES = 4096;
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
  /** Version 2 only: the artifact holds the changes after this seq (an incremental snapshot). */
  base_seq?: number;
  /** Caller's key/value strings carried with the artifact (any version). */
  labels?: Record<string, string>;
}

/** The format version an artifact with this header is written in. */
export function formatVersionFor(header: Pick<ArtifactHeader, 'base_seq'>): number {
  return header.base_seq === undefined ? FORMAT_VERSION : DELTA_FORMAT_VERSION;
}

/**
 * Why `labels` cannot travel with a snapshot, or undefined when they can: bounded so
 * that the header (at most MAX_HEADER_BYTES) always has room for them.
 */
export function labelsProblem(labels: unknown): string | undefined {
  if (labels === null || typeof labels !== 'object' || Array.isArray(labels)) {
    return 'labels must be an object of strings';
  }
  const entries = Object.entries(labels as Record<string, unknown>);
  if (entries.length > MAX_LABELS) return `at most ${MAX_LABELS} labels, got ${entries.length}`;
  for (const [key, value] of entries) {
    if (key.length === 0) return 'a label key must not be empty';
    if (Buffer.byteLength(key) > MAX_LABEL_KEY_BYTES) {
      return `label key "${key.slice(0, 32)}…" is over ${MAX_LABEL_KEY_BYTES} bytes`;
    }
    if (typeof value !== 'string') return `label ${key} must be a string`;
    if (Buffer.byteLength(value) > MAX_LABEL_VALUE_BYTES) {
      return `label ${key} is over ${MAX_LABEL_VALUE_BYTES} bytes`;
    }
  }
  return undefined;
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
  if (header.format_version !== FORMAT_VERSION && header.format_version !== DELTA_FORMAT_VERSION) {
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
  if (header.format_version === DELTA_FORMAT_VERSION) {
    const base = header.base_seq;
    if (typeof base !== 'number' || !Number.isSafeInteger(base) || base < 0 || base > header.seq) {
      bad(`base_seq ${String(base)} (a version 2 artifact is incremental: 0 ≤ base_seq ≤ seq)`);
    }
    if (header.kind !== 'records') bad('an incremental artifact holds records');
  } else if (header.base_seq !== undefined) {
    bad('base_seq in a version 1 artifact');
  }
  if (header.labels !== undefined) {
    const problem = labelsProblem(header.labels);
    if (problem) bad(problem);
  }
}
