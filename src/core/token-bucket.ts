import { ShardsnapError, cancelled, invalidArgument } from './errors';

/**
 * A byte-rate limit a transfer pays into: it calls `await throttle.take(n, signal)` before
 * it sends, or after it receives, `n` bytes.
 */
export interface Throttle {
  take(bytes: number, signal?: AbortSignal): Promise<void>;
}

export interface TokenBucketOptions {
  /** Bytes per second; undefined or Infinity: unlimited. */
  rate?: number;
  /** Bytes that may pass at once after an idle spell; default rate / 8, at least 1 MiB. */
  burst?: number;
  /** Called with the milliseconds a take() waited, for each take that had to wait. */
  onThrottled?: (ms: number) => void;
  /** A monotonic clock in milliseconds; default `performance.now()`. */
  now?: () => number;
}

/** The default burst is 1/8 s of the rate, but at least one ~1 MiB chunk. */
const MIN_DEFAULT_BURST = 1 << 20;
const defaultBurst = (rate: number): number => Math.max(rate / 8, MIN_DEFAULT_BURST);

const DONE: Promise<void> = Promise.resolve();

interface Waiter {
  readonly bytes: number;
  readonly since: number;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

/**
 * A token bucket shared by all streams of a node in one direction.
 *
 * - Tokens are bytes. They accrue at `rate`, up to `burst` while no take waits (a late
 *   timer does not cost throughput). A take is served once the
 *   bucket holds `min(bytes, burst)` tokens, and then pays all its bytes: a take larger
 *   than the burst leaves the bucket in debt, which the takes after it wait off. So any
 *   mix of sizes averages to `rate`, and no take waits for more than the bucket can hold.
 * - Waiters are served strictly in arrival order (a new take never overtakes a waiter),
 *   and only the head waiter has a timer. When it fires, the head and every waiter the
 *   bucket then covers are served in order: no herd of wakeups racing for tokens, a large
 *   take is not starved by small ones, and streams sharing the bucket get a turn each.
 * - An aborted waiter leaves the queue having paid nothing; if it was the head, the timer
 *   is re-planned for the next one.
 * - Unlimited: take() returns a settled promise; no clock read, no queue.
 *
 * The timer is not unref'd: a transfer waiting on the bucket is work in progress, and a
 * process with nothing else to do (a local copy) must not exit under it.
 */
export class TokenBucket implements Throttle {
  private limited: boolean;
  private rateValue: number;
  private perMs = 0;
  private burstBytes = Infinity;
  private readonly fixedBurst: number | undefined;
  private tokens = 0;
  private stamp: number;
  private takenBytes = 0;
  private readonly queue: Waiter[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly onThrottled: ((ms: number) => void) | undefined;
  private readonly now: () => number;

  constructor(options: TokenBucketOptions = {}) {
    checkRate(options.rate);
    if (options.burst !== undefined && !(options.burst > 0 && Number.isFinite(options.burst))) {
      throw invalidArgument(
        `rate limit burst must be a positive number of bytes, got ${String(options.burst)}`,
      );
    }
    this.fixedBurst = options.burst;
    this.onThrottled = options.onThrottled;
    this.now = options.now ?? (() => performance.now());
    this.stamp = this.now();
    this.limited = false;
    this.rateValue = Infinity;
    this.configure(options.rate, this.stamp);
  }

  /** Bytes per second; Infinity when unlimited. */
  get rate(): number {
    return this.rateValue;
  }

  /** The current burst in bytes; Infinity when unlimited. */
  get burst(): number {
    return this.limited ? this.burstBytes : Infinity;
  }

  /** Bytes granted so far, limited or not (how fast transfers actually went). */
  get taken(): number {
    return this.takenBytes;
  }

  /** Takes waiting for tokens. */
  get pending(): number {
    return this.queue.length;
  }

  /**
   * Resolves once `bytes` may pass. Invalid `bytes` throw (a caller bug); an aborted
   * `signal` rejects with its reason if that is a domain error, else with CANCELLED.
   */
  take(bytes: number, signal?: AbortSignal): Promise<void> {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw invalidArgument(`rate limit: bytes must be a non-negative integer, got ${bytes}`);
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (!this.limited || bytes === 0) {
      this.takenBytes += bytes;
      return DONE;
    }
    const now = this.now();
    if (this.queue.length === 0) {
      this.refill(now);
      if (this.tokens >= Math.min(bytes, this.burstBytes)) {
        this.tokens -= bytes;
        this.takenBytes += bytes;
        return DONE;
      }
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { bytes, since: now, resolve, reject, signal, onAbort: undefined };
      if (signal) {
        waiter.onAbort = () => this.abandon(waiter);
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.queue.push(waiter);
      if (this.queue.length === 1) this.schedule();
    });
  }

  /** Changes the rate live (undefined or Infinity: unlimited); waiters re-plan at once. */
  setRate(rate: number | undefined): void {
    checkRate(rate);
    const now = this.now();
    // Tokens earned so far were earned at the old rate.
    if (this.limited) this.refill(now);
    this.configure(rate, now);
    this.serve();
  }

  private configure(rate: number | undefined, now: number): void {
    if (rate === undefined || rate === Infinity) {
      this.limited = false;
      this.rateValue = Infinity;
      return;
    }
    const burst = this.fixedBurst ?? defaultBurst(rate);
    // A debt carries over to the new rate; a bucket that was unlimited starts full.
    this.tokens = this.limited ? Math.min(this.tokens, burst) : burst;
    this.stamp = now;
    this.burstBytes = burst;
    this.perMs = rate / 1000;
    this.rateValue = rate;
    this.limited = true;
  }

  private refill(now: number): void {
    const elapsed = now - this.stamp;
    if (elapsed <= 0) return;
    this.stamp = now;
    const tokens = this.tokens + elapsed * this.perMs;
    // Idle, the bucket fills up to the burst. With takes waiting it is busy: tokens past
    // the burst can only come from a timer that fired late, and are owed to the waiters
    // (else every late timer would cost throughput).
    this.tokens = this.queue.length === 0 ? Math.min(this.burstBytes, tokens) : tokens;
  }

  /** Serves waiters from the head while the bucket covers them, then re-plans the timer. */
  private serve(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const now = this.now();
    if (this.limited) this.refill(now);
    try {
      for (let head = this.queue[0]; head !== undefined; head = this.queue[0]) {
        if (this.limited) {
          if (this.tokens < Math.min(head.bytes, this.burstBytes)) break;
          this.tokens -= head.bytes;
        }
        this.queue.shift();
        this.grant(head, now);
      }
    } finally {
      if (this.queue.length === 0) this.tokens = Math.min(this.tokens, this.burstBytes);
      // Even if a hook threw, the next waiter keeps its timer.
      this.schedule();
    }
  }

  /** Arms the one timer for the head waiter; tokens must be current. */
  private schedule(): void {
    const head = this.queue[0];
    if (head === undefined || !this.limited || this.timer !== undefined) return;
    const missing = Math.min(head.bytes, this.burstBytes) - this.tokens;
    // Timers have millisecond granularity; a timer that fires a little early re-arms.
    const ms = Math.max(1, Math.ceil(missing / this.perMs));
    this.timer = setTimeout(this.onTimer, ms);
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.serve();
  };

  private grant(waiter: Waiter, now: number): void {
    if (waiter.onAbort) waiter.signal?.removeEventListener('abort', waiter.onAbort);
    this.takenBytes += waiter.bytes;
    waiter.resolve();
    this.onThrottled?.(now - waiter.since);
  }

  private abandon(waiter: Waiter): void {
    const index = this.queue.indexOf(waiter);
    if (index < 0) return;
    this.queue.splice(index, 1);
    waiter.reject(abortError(waiter.signal));
    // The head owns the timer; the next waiter needs its own plan (or is covered now).
    if (index === 0) this.serve();
  }
}

function checkRate(rate: number | undefined): void {
  if (rate === undefined || rate === Infinity) return;
  if (!(rate > 0 && Number.isFinite(rate))) {
    throw invalidArgument(
      `rate limit must be a positive number of bytes per second, got ${String(rate)}`,
    );
  }
}

function abortError(signal: AbortSignal | undefined): ShardsnapError {
  const reason: unknown = signal?.reason;
  if (reason instanceof ShardsnapError) return reason;
  return cancelled(
    reason instanceof Error
      ? `rate-limited transfer cancelled: ${reason.message}`
      : 'rate-limited transfer cancelled',
  );
}
