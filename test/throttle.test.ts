import test, { type ExecutionContext } from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { ShardsnapError, TokenBucket, isShardsnapError } from '../src/core';
import { AdaptiveRate, EventLoopStalls, LatencyWindow } from '../src/server/adaptive-rate';

const KiB = 1024;
const MiB = 1 << 20;

/** Take sizes from 64 KiB to 1 MiB, the same for every run, adding up to at least `total`. */
function takeSizes(seed: number, total: number): number[] {
  const sizes: number[] = [];
  let state = seed;
  for (let sum = 0; sum < total;) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    const size = 64 * KiB + (state % (960 * KiB));
    sizes.push(size);
    sum += size;
  }
  return sizes;
}

const sum = (values: number[]): number => values.reduce((a, b) => a + b, 0);

function near(
  t: ExecutionContext,
  actual: number,
  expected: number,
  tolerance: number,
  what: string,
) {
  t.true(
    Math.abs(actual - expected) <= expected * tolerance,
    `${what}: ${actual.toFixed(0)} is not within ${tolerance * 100}% of ${expected.toFixed(0)}`,
  );
}

/** A full bucket would let its burst through at once: empty it to measure the steady rate. */
async function drained(bucket: TokenBucket): Promise<TokenBucket> {
  await bucket.take(Math.floor(bucket.burst));
  return bucket;
}

const timeouts = (): number =>
  process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

// --- TokenBucket -------------------------------------------------------------------------

test.serial('a waiter holds one timer, and an aborted waiter leaves none behind', async (t) => {
  const bucket = await drained(new TokenBucket({ rate: MiB, burst: MiB }));
  const before = timeouts();
  const controller = new AbortController();
  const waits = [1, 2, 3].map(() => bucket.take(256 * KiB, controller.signal));
  t.is(bucket.pending, 3);
  t.is(timeouts(), before + 1, 'only the head waiter has a timer');
  controller.abort();
  for (const wait of waits) await t.throwsAsync(wait);
  t.is(bucket.pending, 0);
  t.is(timeouts(), before, 'no timer left');
});

test('one stream runs at the rate, with takes of 64 KiB..1 MiB', async (t) => {
  const rate = 20 * MiB;
  const bucket = await drained(new TokenBucket({ rate }));
  const sizes = takeSizes(1, 16 * MiB);
  const started = performance.now();
  for (const size of sizes) await bucket.take(size);
  const seconds = (performance.now() - started) / 1000;
  near(t, sum(sizes) / seconds, rate, 0.1, 'bytes/s');
  t.is(bucket.pending, 0);
});

test('three streams sharing one bucket run at the rate together', async (t) => {
  const rate = 20 * MiB;
  const bucket = await drained(new TokenBucket({ rate }));
  const streams = [2, 3, 4].map((seed) => takeSizes(seed, 5.5 * MiB));
  const started = performance.now();
  await Promise.all(
    streams.map(async (sizes) => {
      for (const size of sizes) await bucket.take(size);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  near(t, sum(streams.flat()) / seconds, rate, 0.1, 'bytes/s');
});

/** Runs one stream of `size` takes until `stop()`; counts its grants. */
async function stream(bucket: TokenBucket, size: number, stop: () => boolean) {
  let grants = 0;
  while (!stop()) {
    await bucket.take(size);
    grants++;
  }
  return grants;
}

test('streams are served in turn: equal shares, and a large take neither starves nor is starved', async (t) => {
  const rate = 20 * MiB;
  const equal = await drained(new TokenBucket({ rate }));
  let done = false;
  setTimeout(() => (done = true), 500);
  const shares = await Promise.all([1, 2, 3].map(() => stream(equal, 256 * KiB, () => done)));
  t.true(Math.max(...shares) - Math.min(...shares) <= 1, `grants ${shares.join(', ')}`);
  t.true(Math.min(...shares) >= 8, `grants ${shares.join(', ')}`);

  // 2 MiB takes run the bucket (burst 512 KiB) into debt; the 64 KiB streams pay it off
  // in their turn, and every stream still gets one grant per round.
  const mixed = await drained(new TokenBucket({ rate, burst: 512 * KiB }));
  let stopped = false;
  setTimeout(() => (stopped = true), 500);
  const turns = await Promise.all(
    [2 * MiB, 64 * KiB, 64 * KiB].map((size) => stream(mixed, size, () => stopped)),
  );
  t.true(Math.max(...turns) - Math.min(...turns) <= 1, `grants ${turns.join(', ')}`);
  t.true(Math.min(...turns) >= 3, `grants ${turns.join(', ')}`);
});

test('a take never overtakes a waiter, even when the bucket could pay for it', async (t) => {
  const bucket = await drained(new TokenBucket({ rate: 4 * MiB, burst: 256 * KiB }));
  const order: string[] = [];
  const big = bucket.take(256 * KiB).then(() => order.push('big')); // ~62 ms
  const small: Promise<unknown>[] = [];
  for (let i = 0; i < 40; i++) {
    await sleep(2);
    small.push(bucket.take(8 * KiB).then(() => order.push(`small ${i}`)));
  }
  await Promise.all([big, ...small]);
  t.is(order[0], 'big');
  t.deepEqual(
    order.slice(1),
    small.map((_, i) => `small ${i}`),
  );
});

test('takes larger than the burst run into debt and average out to the rate', async (t) => {
  const rate = 20 * MiB;
  const bucket = await drained(new TokenBucket({ rate, burst: 512 * KiB }));
  const started = performance.now();
  for (let i = 0; i < 8; i++) await bucket.take(2 * MiB);
  // The 8th take is served once the first 7 are paid off and a burst has built up.
  const expected = ((7 * 2 * MiB + 512 * KiB) / rate) * 1000;
  near(t, performance.now() - started, expected, 0.1, 'ms');
});

test('an aborted waiter rejects promptly, pays nothing, and the queue moves on', async (t) => {
  const throttled: number[] = [];
  const bucket = new TokenBucket({
    rate: MiB,
    burst: MiB,
    onThrottled: (ms) => throttled.push(ms),
  });
  const emptied = performance.now();
  await drained(bucket);
  t.deepEqual(throttled, [], 'a take that did not wait is not reported');
  const controller = new AbortController();
  const started = performance.now();
  const first = bucket.take(512 * KiB, controller.signal); // ~500 ms
  const second = bucket.take(128 * KiB); // ~625 ms behind the first, ~125 ms without it
  setTimeout(() => controller.abort(), 20);
  const error = await t.throwsAsync(first);
  t.true(isShardsnapError(error, 'cancelled'), String(error));
  t.true(performance.now() - started < 150, 'rejected promptly');
  await second;
  // The second take's 128 KiB accrue from the moment the bucket was emptied.
  const waited = performance.now() - emptied;
  t.true(waited >= 120 && waited < 400, `second served ${waited.toFixed(0)} ms after`);
  t.is(throttled.length, 1);
  const reported = throttled[0] ?? 0;
  t.true(reported > 0 && reported <= waited, `reported ${reported} ms`);

  // Later takes still work, and a domain error given as the reason passes through.
  await bucket.take(64 * KiB);
  const reason = new ShardsnapError('unavailable', 'node shutting down');
  const stopping = new AbortController();
  const third = bucket.take(MiB, stopping.signal);
  stopping.abort(reason);
  t.is(await t.throwsAsync(third), reason);
  const aborted = AbortSignal.abort();
  const fourth = await t.throwsAsync(bucket.take(1, aborted));
  t.true(isShardsnapError(fourth, 'cancelled'));
  t.is(bucket.pending, 0);
});

test('setRate takes effect mid-transfer, for waiters too', async (t) => {
  // A waiter planned at 1 MiB/s re-plans when the rate goes up.
  const slow = await drained(new TokenBucket({ rate: MiB, burst: MiB }));
  const started = performance.now();
  const waiting = slow.take(512 * KiB); // ~500 ms at 1 MiB/s
  setTimeout(() => slow.setRate(64 * MiB), 20);
  await waiting;
  t.true(performance.now() - started < 300, 'served well before the ~500 ms it had planned');
  t.is(slow.rate, 64 * MiB);

  // A stream at 40 MiB/s slowed to 10 MiB/s runs at 10 MiB/s from then on.
  const bucket = await drained(new TokenBucket({ rate: 40 * MiB }));
  const grants: number[] = [];
  let stopped = false;
  const started2 = performance.now();
  const running = (async () => {
    while (!stopped) {
      await bucket.take(64 * KiB);
      grants.push(performance.now());
    }
  })();
  await sleep(200);
  const switched = performance.now();
  bucket.setRate(10 * MiB);
  await sleep(400);
  const ended = performance.now();
  stopped = true;
  await running;
  const before = grants.filter((at) => at < switched).length * 64 * KiB;
  const after = grants.filter((at) => at >= switched && at < ended).length * 64 * KiB;
  near(t, before / ((switched - started2) / 1000), 40 * MiB, 0.15, 'before');
  near(t, after / ((ended - switched) / 1000), 10 * MiB, 0.1, 'after');
});

test('unlimited takes do not wait; setting a bucket unlimited releases its waiters', async (t) => {
  for (const rate of [undefined, Infinity]) {
    const bucket = new TokenBucket({ rate });
    t.is(bucket.rate, Infinity);
    const started = performance.now();
    for (let i = 0; i < 10_000; i++) await bucket.take(64 * MiB);
    t.true(performance.now() - started < 200);
    t.is(bucket.taken, 10_000 * 64 * MiB);
    await t.throwsAsync(bucket.take(1, AbortSignal.abort()));
  }

  const bucket = await drained(new TokenBucket({ rate: MiB, burst: MiB }));
  const started = performance.now();
  const waiting = [bucket.take(MiB), bucket.take(MiB)];
  bucket.setRate(undefined);
  await Promise.all(waiting);
  t.true(performance.now() - started < 50);
  t.is(bucket.pending, 0);
});

test('invalid rates, bursts and sizes throw invalid_argument', (t) => {
  const invalid = (fn: () => unknown, what: string) => {
    const error = t.throws(fn, undefined, what);
    t.true(isShardsnapError(error, 'invalid_argument'), what);
  };
  for (const rate of [0, -1, NaN, -Infinity]) {
    invalid(() => new TokenBucket({ rate }), `rate ${rate}`);
    invalid(() => new TokenBucket().setRate(rate), `setRate ${rate}`);
  }
  for (const burst of [0, -5, NaN, Infinity]) {
    invalid(() => new TokenBucket({ rate: MiB, burst }), `burst ${burst}`);
  }
  const bucket = new TokenBucket({ rate: MiB });
  for (const bytes of [-1, 1.5, NaN, Infinity, 2 ** 60]) {
    invalid(() => bucket.take(bytes), `take ${bytes}`);
    invalid(() => new TokenBucket().take(bytes), `unlimited take ${bytes}`);
  }
});

// --- LatencyWindow -----------------------------------------------------------------------

test('LatencyWindow: p99 of known data, within the histogram precision', (t) => {
  let clock = 0;
  const window = new LatencyWindow({ now: () => clock });
  t.is(window.p99(), undefined);
  for (let ms = 1; ms <= 1000; ms++) window.record(ms);
  window.record(NaN);
  window.record(-3);
  t.is(window.count, 1000);
  const p99 = window.p99() ?? 0;
  t.true(p99 >= 990 && p99 <= 1000, `p99 ${p99}`);
  const p50 = window.quantile(0.5) ?? 0;
  t.true(p50 >= 500 && p50 <= 500 * 1.1, `p50 ${p50}`);

  const skewed = new LatencyWindow({ now: () => clock });
  for (let i = 0; i < 980; i++) skewed.record(0.2);
  for (let i = 0; i < 20; i++) skewed.record(40);
  const high = skewed.p99() ?? 0;
  t.true(high >= 40 && high <= 40 * 1.1, `p99 ${high}`);
  const low = skewed.quantile(0.9) ?? 0;
  t.true(low >= 0.2 && low <= 0.2 * 1.1, `p90 ${low}`);

  const constant = new LatencyWindow({ now: () => clock });
  for (let i = 0; i < 100; i++) constant.record(7);
  t.is(constant.p99(), 7);
  clock += 10;
  t.is(constant.p99(), 7);
});

test('LatencyWindow: too few samples give no p99, and old samples expire', (t) => {
  let clock = 0;
  const window = new LatencyWindow({ now: () => clock, windowMs: 1000, minSamples: 50 });
  for (let i = 0; i < 49; i++) window.record(500);
  t.is(window.p99(), undefined);
  window.record(500);
  t.is(window.p99(), 500);

  clock = 600;
  for (let i = 0; i < 100; i++) window.record(10);
  t.is(window.count, 150);
  t.is(window.p99(), 500, 'the slow writes are still in the window');

  clock = 1100;
  t.is(window.count, 100, 'the first writes expired');
  t.is(window.p99(), 10);

  clock = 1650;
  t.is(window.count, 0);
  t.is(window.p99(), undefined);

  // A sub-window reused by a later period starts empty.
  clock = 2000;
  for (let i = 0; i < 60; i++) window.record(3);
  t.is(window.count, 60);
  t.is(window.p99(), 3);
});

// --- AdaptiveRate ------------------------------------------------------------------------

/**
 * A fake node: two buckets and a latency window on a fake clock. `step()` advances the
 * clock one tick, records `writeMs` writes (if any), moves the bytes a transfer wanting
 * `demand` bytes/s gets under the current limit, and ticks.
 */
function fakeNode(options: {
  targetMs: number;
  maxRate?: number;
  minRate?: number;
  stalls?: { lateMs(): number };
}) {
  let clock = 0;
  const now = () => clock;
  const window = new LatencyWindow({ now, minSamples: 10 });
  // A huge fixed burst: simulated transfers never wait on real timers.
  const buckets = [0, 1].map(() => new TokenBucket({ burst: 2 ** 40, now }));
  const changes: number[] = [];
  const adaptive = new AdaptiveRate({
    ...options,
    buckets,
    window,
    now,
    onChange: (rate) => changes.push(rate),
  });
  const step = async (writeMs: number | undefined, demand: number) => {
    clock += 200;
    if (writeMs !== undefined) for (let i = 0; i < 50; i++) window.record(writeMs);
    const bytes = Math.floor((Math.min(adaptive.rate, demand) * 200) / 1000);
    await buckets[0]?.take(bytes);
    await buckets[1]?.take(Math.floor(bytes / 4));
    adaptive.tick();
    return adaptive.rate;
  };
  return { adaptive, buckets, changes, step };
}

test('AdaptiveRate: cuts from the observed rate while p99 is above target, down to the floor', async (t) => {
  const { adaptive, buckets, step } = fakeNode({ targetMs: 10, minRate: 4 * MiB });
  t.is(adaptive.rate, 256 * MiB, 'starts at 256 MiB/s without a cap');
  t.is(buckets[0]?.rate, 256 * MiB);

  // The transfer does 200 MiB/s under a 256 MiB/s limit: the first cut halves 200.
  const first = await step(50, 200 * MiB);
  near(t, first, 100 * MiB, 0.01, 'first cut');
  t.is(buckets[0]?.rate, first);
  t.is(buckets[1]?.rate, first);

  // The next cut waits a latency window (1 s = 5 ticks), judged on later writes only.
  for (let i = 0; i < 4; i++) t.is(await step(50, 200 * MiB), first, `held at tick ${i}`);
  const second = await step(50, 200 * MiB);
  near(t, second, first / 2, 0.01, 'second cut');

  let rate = second;
  for (let i = 0; i < 40; i++) {
    const next = await step(50, 200 * MiB);
    t.true(next <= rate && next >= 4 * MiB, `tick ${i}: ${next}`);
    rate = next;
  }
  t.is(rate, 4 * MiB, 'stays at the floor');
  t.is(buckets[0]?.rate, 4 * MiB);
});

test('AdaptiveRate: rises while p99 is low or writes are idle, to unlimited without a cap', async (t) => {
  const { adaptive, buckets, changes, step } = fakeNode({ targetMs: 10, minRate: MiB });
  // Idle writes: grows ×1.25 per tick up to 4 GiB/s, which means unlimited.
  let rate = adaptive.rate;
  let ticks = 0;
  while (rate !== Infinity && ticks < 20) {
    const next = await step(undefined, 300 * MiB);
    t.true(next > rate, `tick ${ticks}: ${next} > ${rate}`);
    if (next !== Infinity) near(t, next, rate * 1.25, 0.001, `tick ${ticks}`);
    rate = next;
    ticks++;
  }
  t.is(rate, Infinity);
  t.is(ticks, 13);
  t.is(buckets[0]?.rate, Infinity);
  t.is(changes.at(-1), Infinity);
  t.is(await step(2, 300 * MiB), Infinity, 'low p99 keeps it unlimited');

  // Unlimited, the transfer does 300 MiB/s: the first cut binds at once.
  const cut = await step(50, 300 * MiB);
  near(t, cut, 150 * MiB, 0.01, 'cut from unlimited');
  t.is(buckets[1]?.rate, cut);

  // p99 in the band between 0.8× and 1× the target holds the rate.
  for (let i = 0; i < 8; i++) t.is(await step(9, 300 * MiB), cut);
  // Below the band it grows again, once the 9 ms writes have left the window (5 ticks).
  for (let i = 0; i < 4; i++) t.is(await step(5, 300 * MiB), cut);
  near(t, await step(5, 300 * MiB), cut * 1.25, 0.001, 'grows below the band');
});

test('AdaptiveRate: a configured cap is the ceiling and the start, never unlimited', async (t) => {
  const { adaptive, buckets, step } = fakeNode({ targetMs: 5, maxRate: 32 * MiB, minRate: MiB });
  t.is(adaptive.rate, 32 * MiB);
  for (let i = 0; i < 5; i++) t.is(await step(undefined, 100 * MiB), 32 * MiB);
  t.is(buckets[0]?.rate, 32 * MiB);
  near(t, await step(20, 100 * MiB), 16 * MiB, 0.01, 'cut');
  for (let i = 0; i < 30; i++) await step(1, 100 * MiB);
  t.is(adaptive.rate, 32 * MiB);
  t.is(buckets[1]?.rate, 32 * MiB);

  const invalid = (options: Partial<ConstructorParameters<typeof AdaptiveRate>[0]>) =>
    t.throws(
      () =>
        new AdaptiveRate({ targetMs: 10, buckets: [], window: new LatencyWindow(), ...options }),
    );
  for (const bad of [{ targetMs: 0 }, { minRate: -1 }, { maxRate: MiB, minRate: 2 * MiB }]) {
    const error = invalid(bad);
    t.true(isShardsnapError(error, 'invalid_argument'), JSON.stringify(bad));
  }
});

test('AdaptiveRate: a late event loop counts as write latency, only while writes come', async (t) => {
  let stallMs = 0;
  const { adaptive, step } = fakeNode({ targetMs: 10, stalls: { lateMs: () => stallMs } });
  // Handlers are quick (1 ms) but calls wait 40 ms for the loop: that is a cut.
  stallMs = 40;
  near(t, await step(1, 200 * MiB), 100 * MiB, 0.01, 'cut on the loop lateness');
  // Idle writes: nothing to protect, the rate rises although the loop is late.
  const held = adaptive.rate;
  for (let i = 0; i < 5; i++) await step(undefined, 200 * MiB);
  t.true(adaptive.rate > held);
  // The loop on time again and quick writes: the rate rises.
  stallMs = 0;
  const before = adaptive.rate;
  await step(1, 200 * MiB);
  t.true(adaptive.rate > before);
});

test('EventLoopStalls: a blocked event loop shows as lateness for about a second', async (t) => {
  const stalls = new EventLoopStalls(100, 5);
  t.teardown(() => stalls.close());
  await new Promise((resolve) => setTimeout(resolve, 150));
  const idle = stalls.lateMs();
  const until = performance.now() + 60;
  while (performance.now() < until) {
    // busy: the loop cannot run its timers
  }
  await new Promise((resolve) => setTimeout(resolve, 120));
  const blocked = stalls.lateMs();
  t.true(blocked >= 40, `lateness after a 60 ms block: ${blocked} ms (idle ${idle} ms)`);
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.true(stalls.lateMs() < 40, `after the window: ${stalls.lateMs()} ms`);
});

test('AdaptiveRate: start() ticks on an interval, stop() clears it', async (t) => {
  class Counted extends AdaptiveRate {
    ticks = 0;
    override tick(): void {
      this.ticks++;
      super.tick();
    }
  }
  const adaptive = new Counted({
    targetMs: 10,
    buckets: [new TokenBucket()],
    window: new LatencyWindow(),
    intervalMs: 10,
  });
  adaptive.start();
  adaptive.start(); // a second start() does not add a timer
  const started = performance.now();
  while (adaptive.ticks < 3 && performance.now() - started < 2000) await sleep(5);
  const elapsed = performance.now() - started;
  t.true(adaptive.ticks >= 3, `${adaptive.ticks} ticks`);
  t.true(adaptive.ticks <= elapsed / 10 + 2, `${adaptive.ticks} ticks in ${elapsed} ms: one timer`);
  adaptive.stop();
  const ticks = adaptive.ticks;
  await sleep(50);
  t.is(adaptive.ticks, ticks, 'no tick after stop()');
  adaptive.stop();
});
