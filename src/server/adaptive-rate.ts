/**
 * Adaptive snapshot rate (`--snapshot-latency-target-ms N`): snapshot transfers slow down
 * while the p99 latency of foreground writes is above the target, and speed up while it
 * is below.
 *
 * The latency is the larger of two p99s over the last ~1 s: the node's own timing of its
 * Write calls, and how late the event loop ran (EventLoopStalls). The first misses the
 * time a write waits before its handler runs, which is where a transfer hurts writes
 * most: a long task on the event loop (a large copy, a decode) delays every call queued
 * behind it while each handler, once it runs, is as quick as ever. The loop's lateness is
 * an upper bound of that wait.
 *
 * Control law, evaluated every `intervalMs` (200 ms), with no less than minSamples writes:
 *
 *   p99 > target                   rate = max(minRate, min(rate, observed) × 0.5)
 *                                  at most once per latency window (holdMs, 1 s)
 *   p99 < 0.8 × target, or fewer   rate = min(maxRate, rate × 1.25)
 *   than minSamples (50) writes
 *   otherwise (0.8..1 × target)    rate unchanged
 *
 * - `observed` is the bytes per second the busier bucket actually granted since the last
 *   tick. A cut starts from what transfers really do, so a limit far above the actual
 *   throughput (or unlimited) binds at the first cut instead of after several.
 * - A cut is held for one latency window so that the next cut is judged on writes made
 *   after it: the window still holds the slow writes that caused it for up to 1 s, and
 *   cutting again on those would overshoot to the floor.
 * - Increases are multiplicative (×1.25 per tick, ×2 in ~0.6 s): the range spans
 *   1 MiB/s..4 GiB/s, and additive steps would take minutes to recover after a spike.
 *   Between 0.8× and 1× the target the rate holds, so it does not oscillate around it.
 * - Defaults: minRate 1 MiB/s (a transfer always progresses), maxRate the fixed
 *   `--max-*-rate` cap, else 4 GiB/s standing for unlimited (the buckets are made unlimited
 *   there), initial rate the cap, else 256 MiB/s.
 */
import { performance } from 'node:perf_hooks';
import { type TokenBucket, invalidArgument } from '../core';

const MiB = 1 << 20;

export const ADAPTIVE_RATE = {
  /** Factor applied on a cut (p99 above the target). */
  decrease: 0.5,
  /** Factor applied per tick while p99 is below `headroom × target` or writes are idle. */
  increase: 1.25,
  /** Below this fraction of the target, the rate may grow. */
  headroom: 0.8,
  intervalMs: 200,
  minRate: MiB,
  /** Without a configured cap: this rate and above mean unlimited. */
  maxRate: 4096 * MiB,
  /** Starting rate without a configured cap. */
  initialRate: 256 * MiB,
} as const;

export interface LatencyWindowOptions {
  /** Span of the sliding window; default 1000 ms. */
  windowMs?: number;
  /** Sub-windows the span is split into (the window slides by one); default 5. */
  slices?: number;
  /** Fewer samples than this in the window: no p99; default 50. */
  minSamples?: number;
  /** A monotonic clock in milliseconds; default `performance.now()`. */
  now?: () => number;
}

// Log-bucketed histogram: 8 buckets per doubling from 1/64 ms up to 2^16 ms, above
// which everything lands in the last bucket. A quantile is the upper edge of its bucket,
// so it reads at most 2^(1/8) ≈ 9% high, never low.
const FLOOR_MS = 1 / 64;
const PER_DOUBLING = 8;
const BUCKETS = 22 * PER_DOUBLING + 2;

function bucketOf(ms: number): number {
  if (ms <= FLOOR_MS) return 0;
  const index = 1 + Math.floor(Math.log2(ms / FLOOR_MS) * PER_DOUBLING);
  return index < BUCKETS ? index : BUCKETS - 1;
}

const upperEdge = (bucket: number): number => FLOOR_MS * 2 ** (bucket / PER_DOUBLING);

/**
 * Latencies of foreground writes (ms) over a sliding window, for their p99.
 *
 * `record()` runs on every write, so it is O(1) and allocates nothing: the window is a
 * ring of `slices` sub-windows, each a fixed histogram; a sub-window is zeroed when the
 * clock comes round to it again. Quantiles sum the live sub-windows (a few hundred adds,
 * a few times per second).
 */
export class LatencyWindow {
  readonly windowMs: number;
  private readonly sliceMs: number;
  private readonly slices: number;
  private readonly minSamples: number;
  private readonly now: () => number;
  private readonly counts: Uint32Array;
  private readonly totals: Uint32Array;
  private readonly maxima: Float64Array;
  /** The clock period (`floor(now / sliceMs)`) each sub-window holds. */
  private readonly periods: Float64Array;

  constructor(options: LatencyWindowOptions = {}) {
    this.windowMs = options.windowMs ?? 1000;
    this.slices = options.slices ?? 5;
    this.minSamples = options.minSamples ?? 50;
    if (!(this.windowMs > 0 && Number.isFinite(this.windowMs))) {
      throw invalidArgument(`latency window must be a positive duration, got ${this.windowMs}`);
    }
    if (!Number.isSafeInteger(this.slices) || this.slices < 1) {
      throw invalidArgument(`latency window slices must be a positive integer`);
    }
    if (!Number.isSafeInteger(this.minSamples) || this.minSamples < 1) {
      throw invalidArgument(`latency window minSamples must be a positive integer`);
    }
    this.sliceMs = this.windowMs / this.slices;
    this.now = options.now ?? (() => performance.now());
    this.counts = new Uint32Array(this.slices * BUCKETS);
    this.totals = new Uint32Array(this.slices);
    this.maxima = new Float64Array(this.slices);
    this.periods = new Float64Array(this.slices).fill(-Infinity);
  }

  /** Records one write's latency in ms; negative or NaN values (clock glitches) are ignored. */
  record(ms: number): void {
    if (!(ms >= 0)) return;
    const slice = this.sliceAt(this.now());
    const at = slice * BUCKETS + bucketOf(ms);
    this.counts[at] = (this.counts[at] ?? 0) + 1;
    this.totals[slice] = (this.totals[slice] ?? 0) + 1;
    if (ms > (this.maxima[slice] ?? 0)) this.maxima[slice] = ms;
  }

  /** Samples in the window. */
  get count(): number {
    const period = this.currentPeriod();
    let total = 0;
    for (let s = 0; s < this.slices; s++) {
      if (this.isLive(s, period)) total += this.totals[s] ?? 0;
    }
    return total;
  }

  /** The 99th percentile over the window; undefined below `minSamples` samples. */
  p99(): number | undefined {
    return this.quantile(0.99);
  }

  /** The q-quantile (nearest rank, 0 < q ≤ 1) over the window; undefined below `minSamples`. */
  quantile(q: number): number | undefined {
    if (!(q > 0 && q <= 1)) throw invalidArgument(`quantile must be in (0, 1], got ${q}`);
    const period = this.currentPeriod();
    let total = 0;
    let max = 0;
    for (let s = 0; s < this.slices; s++) {
      if (!this.isLive(s, period)) continue;
      total += this.totals[s] ?? 0;
      max = Math.max(max, this.maxima[s] ?? 0);
    }
    if (total < this.minSamples) return undefined;
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let b = 0; b < BUCKETS; b++) {
      for (let s = 0; s < this.slices; s++) {
        if (this.isLive(s, period)) seen += this.counts[s * BUCKETS + b] ?? 0;
      }
      // The largest sample bounds the top bucket's estimate (exact when it is the max).
      if (seen >= rank) return Math.min(upperEdge(b), max);
    }
    return max;
  }

  private currentPeriod(): number {
    return Math.floor(this.now() / this.sliceMs);
  }

  private isLive(slice: number, period: number): boolean {
    const held = this.periods[slice] ?? -Infinity;
    return held > period - this.slices && held <= period;
  }

  /** The sub-window for `now`, zeroed first if it still holds an older period. */
  private sliceAt(now: number): number {
    const period = Math.floor(now / this.sliceMs);
    const slice = ((period % this.slices) + this.slices) % this.slices;
    if (this.periods[slice] !== period) {
      this.counts.fill(0, slice * BUCKETS, (slice + 1) * BUCKETS);
      this.totals[slice] = 0;
      this.maxima[slice] = 0;
      this.periods[slice] = period;
    }
    return slice;
  }
}

export interface AdaptiveRateOptions {
  /** Foreground write p99 to stay under, in ms. */
  targetMs: number;
  /** The snapshot transfer buckets it drives (both directions). */
  buckets: TokenBucket[];
  window: LatencyWindow;
  /** The fixed `--max-*-rate` cap if any; without one, 4 GiB/s and above is unlimited. */
  maxRate?: number;
  /** Floor in bytes per second; default 1 MiB/s. */
  minRate?: number;
  /** Tick interval; default 200 ms. */
  intervalMs?: number;
  /** Hold after a cut before the next one; default the latency window's span. */
  holdMs?: number;
  /** A monotonic clock in milliseconds; default `performance.now()`. */
  now?: () => number;
  /** Called with the rate (Infinity: unlimited) once at construction and on every change. */
  onChange?: (rate: number) => void;
  /** Event-loop lateness (ms, worst over the same window), taken with the writes' p99. */
  stalls?: { lateMs(): number };
}

/** Drives snapshot transfer buckets from foreground write latency; see the header. */
export class AdaptiveRate {
  private readonly targetMs: number;
  private readonly buckets: readonly TokenBucket[];
  private readonly window: LatencyWindow;
  private readonly capped: boolean;
  private readonly maxRate: number;
  private readonly minRate: number;
  private readonly intervalMs: number;
  private readonly holdMs: number;
  private readonly now: () => number;
  private readonly onChange: ((rate: number) => void) | undefined;
  private readonly stalls: { lateMs(): number } | undefined;
  private current: number;
  private unlimited = false;
  private lastTick: number;
  private lastTaken: number[];
  private lastCut = -Infinity;
  private timer: NodeJS.Timeout | undefined;

  constructor(options: AdaptiveRateOptions) {
    const positive = (value: number, what: string): number => {
      if (!(value > 0 && Number.isFinite(value))) {
        throw invalidArgument(`adaptive rate: ${what} must be a positive number, got ${value}`);
      }
      return value;
    };
    this.targetMs = positive(options.targetMs, 'latency target (ms)');
    this.capped = options.maxRate !== undefined;
    this.maxRate = positive(options.maxRate ?? ADAPTIVE_RATE.maxRate, 'max rate');
    this.minRate = positive(options.minRate ?? ADAPTIVE_RATE.minRate, 'min rate');
    if (this.minRate > this.maxRate) {
      throw invalidArgument(
        `adaptive rate: min rate ${this.minRate} exceeds max rate ${this.maxRate}`,
      );
    }
    this.intervalMs = positive(options.intervalMs ?? ADAPTIVE_RATE.intervalMs, 'interval (ms)');
    this.holdMs = options.holdMs ?? options.window.windowMs;
    if (!(this.holdMs >= 0)) throw invalidArgument(`adaptive rate: hold must be >= 0 ms`);
    this.buckets = options.buckets;
    this.window = options.window;
    this.now = options.now ?? (() => performance.now());
    this.onChange = options.onChange;
    this.stalls = options.stalls;
    this.lastTick = this.now();
    this.lastTaken = this.buckets.map((bucket) => bucket.taken);
    // The buckets follow the controller from the start.
    this.current = clamp(
      this.capped ? this.maxRate : ADAPTIVE_RATE.initialRate,
      this.minRate,
      this.maxRate,
    );
    this.apply(this.current, true);
  }

  /** The limit in bytes per second; Infinity while the buckets are unlimited. */
  get rate(): number {
    return this.unlimited ? Infinity : this.current;
  }

  /** Starts ticking every `intervalMs`; the timer never keeps the process alive. */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops ticking; the buckets keep the rate they have. */
  stop(): void {
    if (this.timer === undefined) return;
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One control step (see the header). */
  tick(): void {
    const now = this.now();
    const elapsed = now - this.lastTick;
    let busiest = 0;
    this.buckets.forEach((bucket, i) => {
      busiest = Math.max(busiest, bucket.taken - (this.lastTaken[i] ?? 0));
      this.lastTaken[i] = bucket.taken;
    });
    this.lastTick = now;
    const observed = elapsed > 0 ? (busiest * 1000) / elapsed : Infinity;

    const writes = this.window.p99();
    // Without foreground writes there is nothing to protect, however late the loop runs.
    const p99 = writes === undefined ? undefined : Math.max(writes, this.stalls?.lateMs() ?? 0);
    if (p99 !== undefined && p99 > this.targetMs) {
      if (now - this.lastCut < this.holdMs) return;
      this.lastCut = now;
      const base = Math.min(this.current, observed);
      this.apply(Math.max(this.minRate, Math.round(base * ADAPTIVE_RATE.decrease)));
    } else if (p99 === undefined || p99 < this.targetMs * ADAPTIVE_RATE.headroom) {
      this.apply(Math.min(this.maxRate, Math.round(this.current * ADAPTIVE_RATE.increase)));
    }
  }

  private apply(next: number, force = false): void {
    const unlimited = !this.capped && next >= this.maxRate;
    if (!force && next === this.current && unlimited === this.unlimited) return;
    this.current = next;
    this.unlimited = unlimited;
    for (const bucket of this.buckets) bucket.setRate(unlimited ? undefined : next);
    this.onChange?.(this.rate);
  }
}

const clamp = (value: number, low: number, high: number): number =>
  Math.min(high, Math.max(low, value));

/** How often the loop's lateness is sampled. */
const LOOP_PROBE_MS = 10;

/**
 * How late the event loop ran over the last ~1 s (five 200 ms slices): a 10 ms timer
 * notes how much later than due it fires, and each slice keeps its worst. A call that
 * arrives while the loop is busy waits for it: this is the part of a write's latency its
 * handler cannot time. (At 20 samples a slice, a slice's worst is its p99.)
 */
export class EventLoopStalls {
  private readonly slices: number[];
  private index = 0;
  private sliceStart: number;
  private last: number;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly sliceMs = 200,
    slices = 5,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.slices = new Array<number>(slices).fill(0);
    this.sliceStart = this.now();
    this.last = this.sliceStart;
    this.timer = setInterval(() => this.probe(), LOOP_PROBE_MS);
    this.timer.unref();
  }

  /** The worst lateness in ms over the window, the current slice included. */
  lateMs(): number {
    this.roll(this.now());
    return Math.max(...this.slices);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private probe(): void {
    const now = this.now();
    const late = Math.max(0, now - this.last - LOOP_PROBE_MS);
    this.last = now;
    this.roll(now);
    const i = this.index;
    this.slices[i] = Math.max(this.slices[i] ?? 0, late);
  }

  /** Moves to the slice `now` falls in, clearing the slices passed over. */
  private roll(now: number): void {
    while (now - this.sliceStart >= this.sliceMs) {
      this.sliceStart += this.sliceMs;
      this.index = (this.index + 1) % this.slices.length;
      this.slices[this.index] = 0;
      if (now - this.sliceStart > this.sliceMs * this.slices.length) this.sliceStart = now;
    }
  }
}
