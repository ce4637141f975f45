import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  type Throttle,
  cancelled,
  shuttingDown,
} from '../core';

export type Direction = 'send' | 'recv';

/** What the admission reports (metrics). */
export interface TransferObserver {
  started(direction: Direction): () => void;
  transferred(direction: Direction, bytes: number): void;
  rejected(reason: 'too_many_transfers'): void;
}

export interface TransfersOptions {
  maxConcurrent: Record<Direction, number>;
  /** One shared limiter per direction (rate limits, adaptive mode); none = unlimited. */
  throttles: Partial<Record<Direction, Throttle>>;
  observer?: TransferObserver;
}

/** How long cancelled transfers get to end before the shutdown goes on without them. */
const CANCEL_WAIT_MS = 5_000;

/** Whether `promise` settled within `ms`. */
async function within(promise: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** How long a refused client should wait before it tries again. */
const BUSY_RETRY_MS = 1_000;

/**
 * One transfer admitted by `Transfers`: a throttle that also counts the bytes moved, and
 * a signal that fires when the node's shutdown grace runs out.
 */
export class Transfer implements Throttle {
  bytes = 0;
  private ended = false;
  private readonly controller = new AbortController();

  constructor(
    readonly direction: Direction,
    readonly what: string,
    private readonly throttle: Throttle | undefined,
    private readonly observer: TransferObserver | undefined,
    private readonly onEnd: (transfer: Transfer) => void,
    private readonly endMetric: (() => void) | undefined,
  ) {}

  /** Fires when the node's shutdown grace runs out with this transfer still running. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  cancel(reason: Error): void {
    this.controller.abort(reason);
  }

  async take(bytes: number, signal?: AbortSignal): Promise<void> {
    this.bytes += bytes;
    this.observer?.transferred(this.direction, bytes);
    if (this.throttle) await this.throttle.take(bytes, signal);
  }

  /** Idempotent; call in `finally`. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.endMetric?.();
    this.onEnd(this);
  }
}

/**
 * Admission of snapshot transfers: at most `maxConcurrent` per direction (more are
 * refused with RESOURCE_EXHAUSTED and a retry hint rather than queued, so a client can
 * go to another replica), none once the node is stopping, and at shutdown the ones in
 * flight get a grace period before they are cancelled.
 */
export class Transfers {
  private readonly active = new Map<Direction, Set<Transfer>>([
    ['send', new Set()],
    ['recv', new Set()],
  ]);
  private stopping = false;
  private idle: (() => void) | undefined;

  constructor(private readonly options: TransfersOptions) {}

  count(direction: Direction): number {
    return this.active.get(direction)?.size ?? 0;
  }

  /** Admits a transfer or throws (RESOURCE_EXHAUSTED when busy, UNAVAILABLE when stopping). */
  begin(direction: Direction, what: string): Transfer {
    if (this.stopping) {
      throw shuttingDown(`${what}: the node is shutting down`);
    }
    const set = this.active.get(direction) as Set<Transfer>;
    const limit = this.options.maxConcurrent[direction];
    if (set.size >= limit) {
      this.options.observer?.rejected('too_many_transfers');
      throw new ShardsnapError(
        ErrorCodes.resourceExhausted,
        `${what}: ${set.size} ${direction === 'send' ? 'outgoing' : 'incoming'} transfers ` +
          `already run on this node (limit ${limit}); retry in ${BUSY_RETRY_MS / 1000} s`,
        { retryAfterMs: BUSY_RETRY_MS, reason: ErrorReasons.tooManyTransfers },
      );
    }
    const transfer = new Transfer(
      direction,
      what,
      this.options.throttles[direction],
      this.options.observer,
      (t) => {
        set.delete(t);
        if (this.count('send') + this.count('recv') === 0) this.idle?.();
      },
      this.options.observer?.started(direction),
    );
    set.add(transfer);
    return transfer;
  }

  /** Refuses new transfers from now on. */
  stopAccepting(): void {
    this.stopping = true;
  }

  /**
   * Stops admitting, waits up to `graceMs` for the transfers in flight, then cancels the
   * rest (their clients see CANCELLED and can resume elsewhere) and waits for them to end.
   */
  async drain(graceMs: number): Promise<{ finished: number; cancelled: number }> {
    this.stopAccepting();
    const before = this.count('send') + this.count('recv');
    const allEnded = (): Promise<void> =>
      this.count('send') + this.count('recv') === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            this.idle = resolve;
          });
    const timedOut = !(await within(allEnded(), graceMs));
    const left = this.count('send') + this.count('recv');
    if (timedOut && left > 0) {
      const reason = cancelled('the node is shutting down; resume the transfer elsewhere');
      for (const set of this.active.values()) for (const transfer of set) transfer.cancel(reason);
      // Cancelled transfers end within moments; the server's forced shutdown covers the rest.
      await within(allEnded(), CANCEL_WAIT_MS);
    }
    return { finished: before - left, cancelled: timedOut ? left : 0 };
  }
}
