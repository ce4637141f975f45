import type { ArchiveRecord, ArchiveTarget, DownloadOptions } from '../archive';
import { downloadArtifact } from '../archive';
import type { ShardsnapError } from '../core';
import type { VerifiedChunk } from '../snapshot';
import type { ChunkSource } from './chunk-source';

/** An archived artifact read in ranged GETs, each chunk checked against its manifest. */
export class ArchiveSource implements ChunkSource {
  resumes = 0;

  constructor(
    private readonly target: ArchiveTarget,
    private readonly record: ArchiveRecord,
    readonly origin: string,
    private readonly options: Omit<DownloadOptions, 'signal'> = {},
  ) {}

  get snapshotId(): string {
    return this.record.manifest.snapshot.id;
  }

  get totalBytes(): number {
    return this.record.manifest.size;
  }

  chunks(signal?: AbortSignal): AsyncIterable<VerifiedChunk> {
    return downloadArtifact(this.target, this.record, {
      ...this.options,
      signal,
      onRetry: (error: ShardsnapError, offset: number, attempt: number) => {
        this.resumes = attempt;
        this.options.onRetry?.(error, offset, attempt);
      },
    });
  }

  expectedSha256(): string {
    return this.record.manifest.sha256;
  }
}
