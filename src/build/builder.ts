import { performance } from 'node:perf_hooks';
import {
  ErrorCodes,
  ErrorReasons,
  SLOT_COUNT,
  type SlotRange,
  ShardsnapError,
  invalidArgument,
  isShardsnapError,
  normalizeSlotRanges,
} from '../core';
import type { Store } from '../store';
import type { PreparedBuild, SnapshotStrategy } from '../strategies/strategy';
import { ArtifactWriter } from '../snapshot';
import type { SnapshotCatalog } from '../snapshot';
import type { ChunkCompression } from '../snapshot';
import { formatVersionFor, labelsProblem } from '../snapshot';
import type { SnapshotEntry } from '../snapshot';

export interface BuildSpec {
  strategy: SnapshotStrategy;
  slots: SlotRange[];
  full: boolean;
  compression: ChunkCompression;
  chunkSize: number;
  /** Set: an incremental snapshot of the changes after this seq (its `base_seq`). */
  sinceSeq?: number;
  /** Carried inside the artifact and its info. */
  labels?: Record<string, string>;
}

export interface BuildContext {
  store: Store;
  catalog: SnapshotCatalog;
  nodeId: string;
  onError?: (error: unknown, context: string) => void;
  /** Every build once it ends: READY, FAILED, or cancelled (deleted or stopped). */
  onFinished?: (
    entry: SnapshotEntry,
    status: BuildStatus,
    durationMs: number,
    bytesWritten: number,
  ) => void;
  /** Bytes all stored snapshots may take (`--spool-max-bytes`); builds beyond are refused. */
  spoolMaxBytes?: number;
}

const countSlots = (slots: readonly SlotRange[]): number =>
  normalizeSlotRanges(slots).reduce((n, r) => n + r.end - r.start + 1, 0);

export type BuildStatus = 'ready' | 'failed' | 'cancelled';

/** RESOURCE_EXHAUSTED because of `--spool-max-bytes` (rather than too many builds). */
export class SpoolFullError extends ShardsnapError {
  constructor(message: string) {
    super(ErrorCodes.resourceExhausted, message, { reason: ErrorReasons.spoolFull });
  }
}

const spoolFull = (message: string): SpoolFullError => new SpoolFullError(message);

/**
 * Refuses a build the spool cannot take: the bytes stored plus what this build is
 * expected to write (the store's data bytes, times the share of slots asked for). The
 * estimate can be off either way, so a build that outgrows the spool is stopped too.
 */
async function checkSpool(ctx: BuildContext, spec: BuildSpec): Promise<void> {
  const max = ctx.spoolMaxBytes;
  if (max === undefined) return;
  const used = ctx.catalog.storedBytes;
  // An incremental snapshot holds a small part of its slots: it is not estimated up front
  // (one that outgrows the spool is stopped like any build).
  if (spec.sinceSeq !== undefined) return;
  const share = spec.full ? 1 : countSlots(spec.slots) / SLOT_COUNT;
  const expected = Math.ceil((await ctx.store.stats()).dataBytes * share);
  if (used + expected > max) {
    throw spoolFull(
      `the snapshot spool is full: ${used} bytes stored, this snapshot is expected to take ` +
        `~${expected} more, the limit is ${max} (--spool-max-bytes); delete snapshots or retry later`,
    );
  }
}

/**
 * Starts a snapshot build and returns once its point in time is fixed (the entry has its
 * seq); the artifact is written in the background, readable while it grows.
 */
export async function startBuild(ctx: BuildContext, spec: BuildSpec): Promise<SnapshotEntry> {
  const { store, catalog } = ctx;
  const labels = spec.labels ?? {};
  const problem = labelsProblem(labels);
  if (problem) throw invalidArgument(problem);
  await checkSpool(ctx, spec);
  const entry = await catalog.create({
    slots: spec.slots,
    full: spec.full,
    strategy: spec.strategy.name,
    backend: store.backend,
    kind: spec.strategy.kind,
    seq: 0,
    keyCount: 0,
    sizeBytes: 0,
    sha256: '',
    formatVersion: formatVersionFor({ base_seq: spec.sinceSeq }),
    chunkSize: spec.chunkSize,
    error: '',
    nodeId: ctx.nodeId,
    compression: spec.compression,
    labels,
    ...(spec.sinceSeq !== undefined ? { baseSeq: spec.sinceSeq } : {}),
  });
  let prepared: PreparedBuild;
  try {
    prepared = await spec.strategy.prepare(store, {
      slots: spec.slots,
      full: spec.full,
      ...(spec.sinceSeq !== undefined ? { sinceSeq: spec.sinceSeq } : {}),
    });
  } catch (error) {
    await catalog.delete(entry.meta.id).catch(() => undefined);
    throw error;
  }
  entry.meta.seq = prepared.seq;
  entry.meta.keyCount = prepared.keyCountHint;
  entry.buildDone = runBuild(ctx, entry, prepared);
  return entry;
}

async function runBuild(
  ctx: BuildContext,
  entry: SnapshotEntry,
  prepared: PreparedBuild,
): Promise<void> {
  const { catalog } = ctx;
  const startedAt = performance.now();
  let status: BuildStatus = 'failed';
  let written: number | undefined;
  let writer: ArtifactWriter | undefined;
  try {
    writer = await ArtifactWriter.create(
      entry.artifactPath,
      (size) => {
        entry.meta.bytesWritten = size;
        entry.notify();
        const max = ctx.spoolMaxBytes;
        if (max !== undefined && catalog.storedBytes > max && !entry.build.signal.aborted) {
          entry.build.abort(
            spoolFull(
              `snapshot ${entry.meta.id} outgrew the snapshot spool (${catalog.storedBytes} bytes ` +
                `stored, limit ${max}, --spool-max-bytes)`,
            ),
          );
        }
      },
      { crcChunkSize: entry.meta.chunkSize },
    );
    entry.chunkCrcs = writer.chunkCrcs;
    const { keyCount } = await prepared.write(
      writer,
      {
        format_version: entry.meta.formatVersion,
        kind: entry.meta.kind,
        snapshot_id: entry.meta.id,
        node_id: entry.meta.nodeId,
        backend: entry.meta.backend,
        strategy: entry.meta.strategy,
        seq: entry.meta.seq,
        slots: entry.meta.slots,
        full: entry.meta.full,
        created_at_ms: entry.meta.createdAtMs,
        ...(entry.meta.baseSeq !== undefined ? { base_seq: entry.meta.baseSeq } : {}),
        ...(Object.keys(entry.meta.labels ?? {}).length > 0 ? { labels: entry.meta.labels } : {}),
      },
      entry.build.signal,
    );
    const { size, sha256 } = await writer.finish();
    writer = undefined;
    entry.meta.bytesWritten = size;
    // The last bytes may be the ones that cross the limit, after the last size report.
    entry.build.signal.throwIfAborted();
    if (ctx.spoolMaxBytes !== undefined && catalog.storedBytes > ctx.spoolMaxBytes) {
      throw spoolFull(
        `snapshot ${entry.meta.id} outgrew the snapshot spool (${catalog.storedBytes} bytes ` +
          `stored, limit ${ctx.spoolMaxBytes}, --spool-max-bytes)`,
      );
    }
    const ready = { ...entry.meta, keyCount, sizeBytes: size, bytesWritten: size, sha256 };
    ready.state = 'READY';
    // Durable first: a READY snapshot in memory is always READY on disk too.
    if (!entry.deleted) await catalog.saveManifest(entry, ready);
    entry.meta = ready;
    status = 'ready';
    await catalog.applyRetention();
  } catch (thrown) {
    // An abort's reason (a delete, the spool limit) says more than how the write noticed it.
    const reason: unknown = entry.build.signal.reason;
    const error = entry.build.signal.aborted && reason instanceof ShardsnapError ? reason : thrown;
    status =
      entry.deleted || isShardsnapError(error, ErrorCodes.cancelled) ? 'cancelled' : 'failed';
    await writer?.abandon();
    written = entry.meta.bytesWritten;
    if (!entry.deleted) {
      await catalog.discardArtifact(entry).catch(() => undefined);
      // Its file is gone: it no longer takes room in the spool.
      entry.meta.bytesWritten = 0;
    }
    // FAILED only now: a caller who sees it and creates another snapshot finds the
    // spool without this build's bytes.
    entry.meta.state = 'FAILED';
    entry.meta.error = error instanceof Error ? error.message : String(error);
    entry.failure = error;
    if (!entry.deleted) {
      await catalog.saveManifest(entry).catch(() => undefined);
      ctx.onError?.(error, `building snapshot ${entry.meta.id}`);
    }
  } finally {
    await prepared.release().catch((e: unknown) => ctx.onError?.(e, 'releasing a build'));
    entry.notify();
    ctx.onFinished?.(
      entry,
      status,
      performance.now() - startedAt,
      written ?? entry.meta.bytesWritten,
    );
  }
}
