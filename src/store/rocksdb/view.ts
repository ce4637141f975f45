import {
  ErrorCodes,
  type SlotRange,
  type StoreRecord,
  ShardsnapError,
  SlabAllocator,
  decodeValue,
  throwIfAborted,
} from '../../core';
import type { BatchLimits, StoreView } from '../store';
import { storeClosed, withContext } from './errors';
import { SLOT_PREFIX_BYTES, slotRangeBounds } from './keys';
import type { Db, DbIterator, Snapshot } from './native';

/** A walk cut short by close() must not look like a complete one. */
const closedWhileWalking = (): ShardsnapError =>
  new ShardsnapError(ErrorCodes.cancelled, 'view was closed before the walk finished');

/**
 * A point-in-time view: a RocksDB snapshot, walked with one bounded iterator per slot
 * range. Records are decoded into copies (iterator batches share one native buffer).
 * Like the memory view, it yields every stored entry, including expired ones that no
 * write has removed yet.
 */

export class RocksDbView implements StoreView {
  private closed = false;
  /** Closed because the store closed: the view answers as the store does (STORE_CLOSED). */
  private storeGone = false;
  private walked = false;
  private iterator: DbIterator | undefined;

  constructor(
    private readonly db: Db,
    private readonly snapshot: Snapshot,
    readonly seq: number,
    readonly slots: readonly SlotRange[],
    readonly keyCountHint: number,
    private readonly onClose: (view: RocksDbView) => void,
  ) {}

  async *batches(limits: BatchLimits): AsyncGenerator<StoreRecord[]> {
    if (this.closed) {
      throw this.storeGone
        ? storeClosed('view')
        : new ShardsnapError(ErrorCodes.failedPrecondition, 'view is closed');
    }
    if (this.walked)
      throw new ShardsnapError(ErrorCodes.failedPrecondition, 'a view is walked once');
    this.walked = true;
    const maxRecords = Math.max(1, limits.maxRecords);
    const maxBytes = Math.max(1, limits.maxBytes);
    const slab = new SlabAllocator();
    let batch: StoreRecord[] = [];
    let batchBytes = 0;
    try {
      for (const range of this.slots) {
        throwIfAborted(limits.signal);
        if (this.closed) throw this.cutShort();
        const it = this.db.iterator({
          ...slotRangeBounds(range),
          snapshot: this.snapshot,
          fillCache: false,
        });
        this.iterator = it;
        try {
          for (;;) {
            const step = await withContext(
              { op: 'view.next', slots: `${range.start}-${range.end}` },
              () => it.next(maxRecords - batch.length, Math.max(1, maxBytes - batchBytes)),
            );
            if (this.closed) throw this.cutShort();
            const { keys, values } = step;
            for (let i = 0; i < keys.length; i++) {
              const key = keys[i] as Buffer;
              const value = values[i] as Buffer;
              batch.push({
                key: slab.copy(key, SLOT_PREFIX_BYTES, key.length),
                entry: decodeValue(value, 0, value.length, slab),
              });
              batchBytes += key.length + value.length;
            }
            if (batch.length >= maxRecords || batchBytes >= maxBytes) {
              yield batch;
              throwIfAborted(limits.signal);
              if (this.closed) throw this.cutShort();
              batch = [];
              batchBytes = 0;
            }
            if (step.done) break;
          }
        } finally {
          this.iterator = undefined;
          await it.close().catch(() => undefined);
        }
      }
      if (batch.length > 0) yield batch;
    } finally {
      // Walked to the end or abandoned: the snapshot is no longer needed.
      this.close();
    }
  }

  private cutShort(): ShardsnapError {
    return this.storeGone ? storeClosed('view.next') : closedWhileWalking();
  }

  /** The store is closing: what the view holds goes with it. */
  closeWithStore(): void {
    if (!this.closed) this.storeGone = true;
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.iterator?.close().catch(() => undefined);
    try {
      this.snapshot.release();
    } catch {
      // The db was closed and released it already.
    }
    this.onClose(this);
  }
}
