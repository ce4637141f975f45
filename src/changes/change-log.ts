import {
  ErrorCodes,
  type Mutation,
  type SlotRange,
  ShardsnapError,
  cancelled,
  decodeMutations,
  encodeMutations,
  formatSlotRanges,
  invalidArgument,
  shuttingDown,
} from '../core';
import type { StoreChange } from '../store';
import { changeBytes } from './change-size';
import { Deque } from './deque';
import { SlotFilter } from './slot-filter';

export interface ChangeLogOptions {
  /** Bytes of changes held (keys, values and a fixed overhead per mutation). */
  maxBytes: number;
  /** The store's seq when the log starts: it holds the changes after this one. */
  startSeq: number;
  /**
   * How long a caught-up stream lets writes to other slots accumulate before it reports
   * its new position; a short delay turns a burst of them into one progress marker.
   */
  progressDelayMs?: number;
}

/**
 * One write batch restricted to a stream's slots. Without mutations it is a progress
 * marker: the stream has seen every change up to `seq`.
 */
export interface ChangeLogBatch {
  seq: number;
  mutations: Mutation[];
  /** The log's latest seq when the batch was handed out. */
  headSeq: number;
  /** The source's clock reading for the batch (0 for a progress marker). */
  atMs: number;
}

/**
 * A change as the log holds it: a write batch as one encoded buffer, so that tens of MiB
 * of recent writes are a few thousand buffers rather than objects per key and value
 * (which every garbage collection would walk), and hold no request's memory.
 */
type HeldChange =
  | { kind: 'write'; seq: number; atMs: number; batch: Buffer }
  | { kind: 'replace'; seq: number; slots: readonly SlotRange[] };

interface Held {
  change: HeldChange;
  bytes: number;
}

/** Entries a stream walks before it lets other work run (a long, non-matching backlog). */
const SCAN_BUDGET = 4096;
const DEFAULT_PROGRESS_DELAY_MS = 5;

const outOfRange = (message: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.outOfRange, message);

/**
 * The recent changes of a store, bounded by bytes, that change streams read from. Every
 * change with a seq above `floorSeq` is held; the oldest are evicted first. A stream that
 * needs an evicted change fails with OUT_OF_RANGE: it never skips one.
 */
export class ChangeLog {
  private readonly held = new Deque<Held>();
  /**
   * How many changes were appended before the oldest held one. Streams keep their place
   * by this count rather than by seq, so that eviction and an install that moves the
   * seq back are both noticed.
   */
  private firstOrdinal = 0;
  private floor: number;
  private head: number;
  private heldBytes = 0;
  private streams = 0;
  private readonly waiters = new Set<() => void>();
  private closedWith: ShardsnapError | undefined;
  private readonly maxBytes: number;
  private readonly progressDelayMs: number;

  constructor(options: ChangeLogOptions) {
    if (!Number.isSafeInteger(options.maxBytes) || options.maxBytes < 1) {
      throw invalidArgument(`change log size must be a positive integer, got ${options.maxBytes}`);
    }
    if (!Number.isSafeInteger(options.startSeq) || options.startSeq < 0) {
      throw invalidArgument(`change log start seq must be ≥ 0, got ${options.startSeq}`);
    }
    this.maxBytes = options.maxBytes;
    this.floor = options.startSeq;
    this.head = options.startSeq;
    this.progressDelayMs = options.progressDelayMs ?? DEFAULT_PROGRESS_DELAY_MS;
  }

  /** Every change with a seq greater than this one is held. */
  get floorSeq(): number {
    return this.floor;
  }

  /** The seq of the latest change appended (the start seq before any). */
  get headSeq(): number {
    return this.head;
  }

  get entries(): number {
    return this.held.length;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** Change streams currently open. */
  get subscribers(): number {
    return this.streams;
  }

  private get nextOrdinal(): number {
    return this.firstOrdinal + this.held.length;
  }

  /** Takes a change of the store, in seq order (subscribe it to `Store.onChange`). */
  append(change: StoreChange): void {
    if (this.closedWith) return;
    // Copies: a writer may reuse its batch once the write resolved.
    const copy: HeldChange =
      change.kind === 'write'
        ? {
            kind: 'write',
            seq: change.seq,
            atMs: change.atMs,
            batch: encodeMutations(change.mutations),
          }
        : { kind: 'replace', seq: change.seq, slots: [...change.slots] };
    if (change.seq <= this.head) {
      // A full install adopted an older (or equal) seq: the seqs held so far name another
      // history. Open streams reach this change next and stop there (it replaced their slots).
      this.firstOrdinal = this.nextOrdinal;
      this.held.clear();
      this.heldBytes = 0;
      this.floor = Math.max(0, change.seq - 1);
    }
    const bytes = changeBytes(change);
    this.held.push({ change: copy, bytes });
    this.heldBytes += bytes;
    this.head = change.seq;
    this.evict();
    for (const wake of [...this.waiters]) wake();
  }

  /** The newest change is kept even when it alone exceeds `maxBytes`. */
  private evict(): void {
    while (this.heldBytes > this.maxBytes && this.held.length > 1) {
      const oldest = this.held.shift() as Held;
      this.firstOrdinal++;
      this.heldBytes -= oldest.bytes;
      this.floor = oldest.change.seq;
    }
  }

  /**
   * Ends every stream with `reason` (UNAVAILABLE by default), now for those waiting for a
   * change and at their next pull for the others; later appends are ignored.
   */
  close(reason?: ShardsnapError): void {
    this.closedWith ??= reason ?? shuttingDown('the node is stopping its change log');
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * The write batches after `fromSeq` that touch `slots` (empty = all), restricted to
   * those slots, then new ones as they are appended; the first message comes at once
   * (a progress marker when nothing matches yet), and a caught-up stream gets a marker
   * when writes to other slots move the head. The stream advances only when pulled.
   *
   * Fails (from the first `next()` on) with OUT_OF_RANGE when `fromSeq` is not held or
   * is ahead of the head, or when the stream falls so far behind that the change it
   * needs was evicted; with FAILED_PRECONDITION when an install replaces any of its
   * slots; with CANCELLED when `signal` fires.
   */
  async *changes(
    slots: readonly SlotRange[],
    fromSeq: number,
    signal?: AbortSignal,
  ): AsyncGenerator<ChangeLogBatch> {
    const filter = new SlotFilter(slots);
    if (!Number.isSafeInteger(fromSeq) || fromSeq < 0) {
      throw invalidArgument(`from seq must be a non-negative integer, got ${fromSeq}`);
    }
    this.throwIfClosed();
    if (fromSeq < this.floor) {
      throw outOfRange(
        `the change log holds seqs after ${this.floor} only; seq ${fromSeq} is gone (take a new snapshot)`,
      );
    }
    if (fromSeq > this.head) {
      throw outOfRange(`seq ${fromSeq} is ahead of this node (at ${this.head})`);
    }
    let cursor = this.ordinalAfter(fromSeq);
    let position = fromSeq;
    let reported: number | undefined;
    let progressDue: number | undefined;
    this.streams++;
    try {
      for (;;) {
        throwIfAborted(signal);
        this.throwIfClosed();
        let batch: Mutation[] | undefined;
        let batchAt = 0;
        let budget = SCAN_BUDGET;
        while (!batch && cursor < this.nextOrdinal && budget-- > 0) {
          const entry = this.held.at(cursor - this.firstOrdinal);
          if (!entry) throw this.gone(position, filter);
          cursor++;
          const change = entry.change;
          if (change.kind === 'replace') {
            const replaced = filter.overlap(change.slots);
            if (replaced.length > 0) {
              throw new ShardsnapError(
                ErrorCodes.failedPrecondition,
                `slots ${formatSlotRanges(replaced)} were replaced by an install at seq ${change.seq}; take a new snapshot`,
              );
            }
          } else {
            const selected = filter.select(decodeMutations(change.batch));
            if (selected.length > 0) {
              batch = selected;
              batchAt = change.atMs;
            }
          }
          position = change.seq;
        }
        if (batch) {
          reported = position;
          progressDue = undefined;
          yield { seq: position, mutations: batch, headSeq: this.head, atMs: batchAt };
          continue;
        }
        const caughtUp = cursor >= this.nextOrdinal;
        if (reported === undefined || (caughtUp && position > reported)) {
          const now = Date.now();
          if (reported === undefined || (progressDue !== undefined && now >= progressDue)) {
            reported = position;
            progressDue = undefined;
            yield { seq: position, mutations: [], headSeq: this.head, atMs: 0 };
            continue;
          }
          progressDue ??= now + this.progressDelayMs;
        }
        if (caughtUp) await this.nextAppend(signal, progressDue);
        else await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.streams--;
    }
  }

  /**
   * The distinct keys of `slots` (empty = all) written after `sinceSeq`, up to the head
   * (returned as `seq`), in first-written order: what an incremental snapshot must carry.
   * Synchronous, so the window and the head agree. OUT_OF_RANGE when the log no longer
   * holds every change after `sinceSeq` (or `sinceSeq` is ahead of the head), and when
   * an install replaced any of the slots in the window: a delta then cannot say which
   * keys the replaced slots lost, and the caller takes a full snapshot instead.
   */
  changedKeys(slots: readonly SlotRange[], sinceSeq: number): { seq: number; keys: Buffer[] } {
    const filter = new SlotFilter(slots);
    if (!Number.isSafeInteger(sinceSeq) || sinceSeq < 0) {
      throw invalidArgument(`since seq must be a non-negative integer, got ${sinceSeq}`);
    }
    this.throwIfClosed();
    if (sinceSeq < this.floor) {
      throw outOfRange(
        `the change log holds seqs after ${this.floor} only; changes since seq ${sinceSeq} ` +
          'are gone (take a full snapshot)',
      );
    }
    if (sinceSeq > this.head) {
      throw outOfRange(`seq ${sinceSeq} is ahead of this node (at ${this.head})`);
    }
    const seen = new Map<string, Buffer>();
    for (let at = this.ordinalAfter(sinceSeq) - this.firstOrdinal; at < this.held.length; at++) {
      const change = (this.held.at(at) as Held).change;
      if (change.kind === 'replace') {
        const replaced = filter.overlap(change.slots);
        if (replaced.length > 0) {
          throw outOfRange(
            `slots ${formatSlotRanges(replaced)} were replaced by an install at seq ${change.seq}, ` +
              `after seq ${sinceSeq}; take a full snapshot`,
          );
        }
        continue;
      }
      for (const m of filter.select(decodeMutations(change.batch))) {
        const name = m.key.toString('latin1');
        if (!seen.has(name)) seen.set(name, m.key);
      }
    }
    return { seq: this.head, keys: [...seen.values()] };
  }

  /** The ordinal of the first held change with a seq greater than `seq` (held seqs ascend). */
  private ordinalAfter(seq: number): number {
    let low = 0;
    let high = this.held.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if ((this.held.at(mid) as Held).change.seq <= seq) low = mid + 1;
      else high = mid;
    }
    return this.firstOrdinal + low;
  }

  private gone(position: number, filter: SlotFilter): ShardsnapError {
    return outOfRange(
      `the change stream of slots ${formatSlotRanges(filter.ranges)} fell behind: the change ` +
        `log holds seqs after ${this.floor} only; the changes after seq ${position} are gone`,
    );
  }

  private throwIfClosed(): void {
    if (this.closedWith) throw this.closedWith;
  }

  /** Resolves on the next append (or close), at `until` (ms epoch), or rejects on abort. */
  private nextAppend(signal: AbortSignal | undefined, until: number | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (error?: ShardsnapError): void => {
        this.waiters.delete(wake);
        signal?.removeEventListener('abort', onAbort);
        if (timer) clearTimeout(timer);
        if (error) reject(error);
        else resolve();
      };
      const wake = (): void => finish();
      const onAbort = (): void => finish(abortError(signal));
      if (signal?.aborted) {
        onAbort();
        return;
      }
      this.waiters.add(wake);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (until !== undefined) timer = setTimeout(wake, Math.max(0, until - Date.now()));
    });
  }
}

function abortError(signal: AbortSignal | undefined): ShardsnapError {
  const reason: unknown = signal?.reason;
  if (reason instanceof ShardsnapError) return reason;
  return cancelled(
    reason instanceof Error ? `change stream: ${reason.message}` : 'change stream cancelled',
  );
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}
