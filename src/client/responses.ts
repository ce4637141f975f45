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
