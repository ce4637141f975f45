import type { SlotRange } from '../core';
import type { ArtifactHeader, ArtifactKind, ArtifactWriter } from '../snapshot';
import type { Store } from '../store';

export interface BuildRequest {
  /** Normalized slot ranges; every slot for a full snapshot. */
  slots: SlotRange[];
  full: boolean;
  /** Set: an incremental snapshot of the changes after this seq. */
  sinceSeq?: number;
}

/** A build whose point in time is fixed (`seq`) but whose artifact is not written yet. */
export interface PreparedBuild {
  readonly seq: number;
  readonly keyCountHint: number;
  /** Writes the whole artifact; the header's seq and id are filled in by the caller. */
  write(
    out: ArtifactWriter,
    header: ArtifactHeader,
    signal: AbortSignal,
  ): Promise<{ keyCount: number }>;
  /** Releases the view, snapshot handle or checkpoint the build held; idempotent. */
  release(): Promise<void>;
}

/** One way of producing an artifact from a store. */
export interface SnapshotStrategy {
  readonly name: string;
  readonly kind: ArtifactKind;
  /** Why the strategy cannot serve this request on this store, or undefined when it can. */
  unsupported(store: Store, request: BuildRequest): string | undefined;
  prepare(store: Store, request: BuildRequest): Promise<PreparedBuild>;
}
