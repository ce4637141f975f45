import type { SlotRange } from '../core';
import type { ChunkCompression } from './chunk-codec';
import type { ArtifactKind } from './format';

export type SnapshotState = 'BUILDING' | 'READY' | 'FAILED';

/** What the catalog knows of one snapshot; persisted as the manifest. */
export interface SnapshotMeta {
  id: string;
  slots: SlotRange[];
  full: boolean;
  strategy: string;
  backend: string;
  kind: ArtifactKind;
  seq: number;
  keyCount: number;
  sizeBytes: number;
  sha256: string;
  state: SnapshotState;
  createdAtMs: number;
  formatVersion: number;
  chunkSize: number;
  error: string;
  nodeId: string;
  compression: ChunkCompression;
  bytesWritten: number;
  /** Set on an incremental snapshot: the seq it holds the changes after. */
  baseSeq?: number;
  /** Caller's labels, carried in the artifact's header too (absent in older manifests). */
  labels?: Record<string, string>;
}

const ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;

export function isValidSnapshotId(id: string): boolean {
  return ID_PATTERN.test(id);
}
