import { type FileHandle, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import {
  ErrorReasons,
  type SlotRange,
  ShardsnapError,
  ErrorCodes,
  formatSlotRanges,
  normalizeSlotRanges,
} from '../core';
import type { RangeProgress } from './parallel-fetch';

/** What `<out>.part.json` records of an unfinished fetch. */
export interface PartState {
  snapshotId: string;
  /** The node the bytes came from. */
  address: string;
  /** Present when fetched as ranges: how far each range got (its bytes on file). */
  ranges?: RangeProgress[];
  /** The fetch created the snapshot for itself: it is deleted once the file is complete. */
  created?: boolean;
  /** The slots a created snapshot was asked for (absent: every slot, or a named snapshot). */
  slots?: SlotRange[];
}

export const partPath = (out: string): string => `${out}.part`;
export const partStatePath = (out: string): string => `${out}.part.json`;

/** The reason of an error about a part file that belongs to another fetch. */
export const PART_MISMATCH = 'PART_MISMATCH';

export async function readPartState(out: string): Promise<PartState | undefined> {
  try {
    return JSON.parse(await readFile(partStatePath(out), 'utf8')) as PartState;
  } catch {
    return undefined;
  }
}

export async function writePartState(out: string, state: PartState): Promise<void> {
  await writeFile(partStatePath(out), JSON.stringify(state));
}

export async function removePart(out: string): Promise<void> {
  await rm(partPath(out), { force: true });
  await rm(partStatePath(out), { force: true });
}

/** Whether two requests ask for the same slots (none given means every slot). */
export function sameSlots(a: readonly SlotRange[] = [], b: readonly SlotRange[] = []): boolean {
  const x = normalizeSlotRanges(a);
  const y = normalizeSlotRanges(b);
  return x.length === y.length && x.every((r, i) => r.start === y[i]?.start && r.end === y[i]?.end);
}

/**
 * A part file whose snapshot the node does not hold (deleted, expired, or another node's):
 * its bytes cannot be resumed. The metadata lets a caller say which file and what to do.
 */
export function partSnapshotGone(
  out: string,
  state: PartState,
  address: string,
  partBytes: number,
  why: 'not_found' | 'failed',
): ShardsnapError {
  const where =
    state.address === address
      ? `node ${address}`
      : `node ${address} (the bytes came from ${state.address})`;
  const what = why === 'failed' ? 'failed to build on' : 'is not on';
  return new ShardsnapError(
    ErrorCodes.notFound,
    `${partPath(out)} holds ${partBytes} bytes of snapshot ${state.snapshotId}, which ${what} ${where}: it cannot resume`,
    {
      reason: why === 'failed' ? ErrorReasons.snapshotFailed : ErrorReasons.snapshotNotFound,
      metadata: {
        snapshot_id: state.snapshotId,
        part_file: partPath(out),
        part_bytes: partBytes,
        address,
      },
    },
  );
}

/** A part file of another request (another snapshot, other slots) than the one asked for. */
export function partOfAnotherFetch(
  out: string,
  state: PartState,
  partBytes: number,
  asked: string,
): ShardsnapError {
  const holds = state.created
    ? `a snapshot of slots ${describeSlots(state.slots)} that an earlier fetch created (${state.snapshotId})`
    : `snapshot ${state.snapshotId}`;
  return new ShardsnapError(
    ErrorCodes.failedPrecondition,
    `${partPath(out)} holds ${partBytes} bytes of ${holds}, not of ${asked}: it cannot resume this fetch`,
    {
      reason: PART_MISMATCH,
      metadata: {
        snapshot_id: state.snapshotId,
        part_file: partPath(out),
        part_bytes: partBytes,
        address: state.address,
      },
    },
  );
}

/** Whether an error is about a part file that cannot resume (see the two above). */
export function isStalePartError(error: unknown): error is ShardsnapError {
  return error instanceof ShardsnapError && error.metadata.part_file !== undefined;
}

function describeSlots(slots: readonly SlotRange[] | undefined): string {
  return !slots || slots.length === 0 ? 'all' : formatSlotRanges(slots);
}

/** The part file, created only when the first verified bytes are written to it. */
export class PartFile {
  private opening: Promise<FileHandle> | undefined;

  constructor(readonly path: string) {}

  /** Opens the part file, creating it when absent (ranged fetches read it back to hash it). */
  open(): Promise<FileHandle> {
    this.opening ??= open(this.path, 'r+').catch(() => open(this.path, 'w+'));
    return this.opening;
  }

  async close(): Promise<void> {
    const handle = await this.opening?.catch(() => undefined);
    await handle?.close().catch(() => undefined);
  }
}

/**
 * The verified bytes a part file keeps: its length for a sequential fetch (a gapless
 * prefix), the sum of the ranges' progress for a ranged one (its length says nothing).
 */
export async function partProgress(out: string, state: PartState | undefined): Promise<number> {
  if (state?.ranges) return state.ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  return stat(partPath(out)).then(
    (s) => s.size,
    () => 0,
  );
}
