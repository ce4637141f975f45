import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { cancelled } from '../core';
import type { SnapshotMeta } from './snapshot-meta';

/**
 * One snapshot in the catalog: its metadata, its directory, the leases of streams reading
 * it, and a way to wait until more of a building artifact has been written.
 */
export class SnapshotEntry {
  leases = 0;
  lastUsedAtMs = Date.now();
  deleted = false;
  readonly build = new AbortController();
  /** Settles when the build has ended and cleaned up (resolved at once for reloaded snapshots). */
  buildDone: Promise<void> = Promise.resolve();
  private readonly events = new EventEmitter();
  /**
   * CRC32C of each `meta.chunkSize` piece of the artifact, filled in by the build as it
   * writes (empty for a snapshot reloaded after a restart).
   */
  chunkCrcs: readonly number[] = [];
  /** Why its build failed, when that is known in this process (readers answer with its code). */
  failure: unknown;
  /** The token holder whose call created it (with tokens on; not kept across restarts). */
  createdBy: string | undefined;

  constructor(
    public meta: SnapshotMeta,
    readonly dir: string,
  ) {
    this.events.setMaxListeners(0);
  }

  /** The CRC32C the build stored for `[offset, offset + length)`, if that is one of its pieces. */
  storedCrc(offset: number, length: number): number | undefined {
    const size = this.meta.chunkSize;
    if (!size || offset % size !== 0) return undefined;
    const crc = this.chunkCrcs[offset / size];
    if (crc === undefined) return undefined;
    if (length === size) return crc;
    // The shorter piece that ends the artifact.
    return this.meta.state === 'READY' && offset + length === this.meta.sizeBytes ? crc : undefined;
  }

  get artifactPath(): string {
    return join(this.dir, 'artifact.bin');
  }

  get manifestPath(): string {
    return join(this.dir, 'manifest.json');
  }

  /** Called by the build after each flush and when it ends. */
  notify(): void {
    this.events.emit('change');
  }

  /**
   * Resolves once more than `offset` bytes are written, or the build has ended (READY,
   * FAILED or deleted). Rejects with `cancelled` if the signal fires first.
   */
  waitForBytes(offset: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        if (this.meta.bytesWritten > offset || this.meta.state !== 'BUILDING' || this.deleted) {
          cleanup();
          resolve();
          return true;
        }
        return false;
      };
      const onAbort = (): void => {
        cleanup();
        reject(cancelled('fetch cancelled while waiting for the build'));
      };
      const cleanup = (): void => {
        this.events.off('change', check);
        signal?.removeEventListener('abort', onAbort);
      };
      if (check()) return;
      if (signal?.aborted) {
        onAbort();
        return;
      }
      this.events.on('change', check);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
