import type { SlotRange } from '../core';
import type { ArchiveInfo__Output } from '../generated/shardsnap/v1/ArchiveInfo';
import type { ArchiveProgress__Output } from '../generated/shardsnap/v1/ArchiveProgress';
import type { DigestResponse__Output } from '../generated/shardsnap/v1/DigestResponse';
import type { InstallResult__Output } from '../generated/shardsnap/v1/InstallResult';
import type { PullProgress__Output } from '../generated/shardsnap/v1/PullProgress';
import type { ShardStats__Output } from '../generated/shardsnap/v1/ShardStats';
import type { SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { Value__Output } from '../generated/shardsnap/v1/Value';

/* What ShardsnapClient's methods answer: the messages of shardsnap.proto as received. */

export type SnapshotInfo = SnapshotInfo__Output;
export type ShardStats = ShardStats__Output;
export type DigestResult = DigestResponse__Output;

/** Bytes of keys and values a node holds in one slot. */
export interface SlotSize {
  slot: number;
  bytes: number;
}
/** One key as read: `found`, and the value of its `kind`. */
export type ReadValue = Value__Output;
export type PullProgress = PullProgress__Output;
export type ArchiveProgress = ArchiveProgress__Output;
export type ArchiveInfo = ArchiveInfo__Output;
export type InstallResult = InstallResult__Output;

/** One verified piece of an artifact, as `fetch()` yields it. */
export interface FetchedChunk {
  snapshotId: string;
  /** Where `data` starts in the artifact. */
  offset: number;
  /** The raw bytes (decompressed, CRC32C checked); the caller may keep them. */
  data: Buffer;
  /** Size of the whole artifact; 0 while the snapshot is still being built. */
  totalBytes: number;
}

/** Slots `start..end` (inclusive) and the node that owns them, as Topology tells. */
export interface SlotOwner {
  start: number;
  end: number;
  /** Empty when the owner is known by its address only. */
  nodeId: string;
  /** host:port to dial; empty when the node is not registered. */
  address: string;
}

/** A node's slot map (the Topology call). */
export interface Topology {
  /** Of the cluster's topology; 0 when the node is not in a cluster (its own view). */
  version: number;
  cluster: string;
  /** The node that answered. */
  nodeId: string;
  /** Ascending, non-overlapping; slots nobody is known to own are absent. */
  slots: SlotOwner[];
  /** What the answering node serves right now. */
  owned: SlotRange[];
  /** Slot ranges being imported by the answering node. */
  importing: SlotRange[];
}
