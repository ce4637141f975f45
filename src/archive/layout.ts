import type { SlotRange } from '../core';

/**
 * Object keys of archives:
 *
 *   <prefix>/<node_id>/slots-<ranges>/seq-<seq, 20 digits>-<snapshot_id>/{artifact.bin,manifest.json}
 *
 * Keys sort by node, then slot ranges, then seq, so listing one node's archives of the
 * same slots yields them oldest first.
 */

/** "a/b" for " /a/b/ ", "" for "" or "/": no leading or trailing slashes. */
export function normalizePrefix(prefix: string | undefined): string {
  return (prefix ?? '').trim().replace(/^\/+/, '').replace(/\/+$/, '');
}

function join(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('/');
}

/** A node id as a single key segment (anything outside [A-Za-z0-9._-] becomes "_"). */
export function nodeSegment(nodeId: string): string {
  const safe = nodeId.replace(/[^A-Za-z0-9._-]/g, '_');
  return safe === '' || safe === '.' || safe === '..' ? `_${safe}` : safe;
}

/** "slots-0-16383", "slots-0-4095_8192-12287". */
export function slotsSegment(slots: readonly SlotRange[]): string {
  return `slots-${slots.map((r) => `${r.start}-${r.end}`).join('_')}`;
}

export function seqSegment(seq: number, snapshotId: string): string {
  return `seq-${String(seq).padStart(20, '0')}-${snapshotId}`;
}

/** The key prefix under which a node's archives live, ending with "/" ("" prefix allowed). */
export function nodeArchivesPrefix(prefix: string, nodeId: string): string {
  return `${join(normalizePrefix(prefix), nodeSegment(nodeId))}/`;
}

/** The directory (ending with "/") of one snapshot's archive. */
export function archiveDir(
  prefix: string,
  snapshot: { nodeId: string; slots: readonly SlotRange[]; seq: number; id: string },
): string {
  return `${join(
    normalizePrefix(prefix),
    nodeSegment(snapshot.nodeId),
    slotsSegment(snapshot.slots),
    seqSegment(snapshot.seq, snapshot.id),
  )}/`;
}

/** The prefix to list for `prefix` given by a user ("" = the whole bucket). */
export function listingPrefix(prefix: string | undefined): string {
  const normalized = normalizePrefix(prefix);
  return normalized === '' ? '' : `${normalized}/`;
}
