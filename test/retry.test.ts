import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import test from 'ava';
import { ErrorCodes, ShardsnapError, isShardsnapError, retry, unavailable } from '../src/core';

const flaky = (message = 'flaky'): ShardsnapError => unavailable(message);
const isUnavailable = (error: unknown): boolean => isShardsnapError(error, ErrorCodes.unavailable);

/** Timers of this process right now (setTimeout and setInterval handles). */
const pendingTimers = (): number =>
  process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

test('retries a retryable failure until the call succeeds, passing the attempt number', async (t) => {
  const seen: number[] = [];
  const result = await retry(
    (attempt) => {
      seen.push(attempt);
      return attempt < 3 ? Promise.reject(flaky()) : Promise.resolve('ok');
    },
    { delayMs: 1, retryable: isUnavailable },
  );
  t.is(result, 'ok');
  t.deepEqual(seen, [1, 2, 3]);
});

test('attempts bounds the calls; the last error is thrown as it is', async (t) => {
  let calls = 0;
  const error = await t.throwsAsync(
    retry(() => Promise.reject(flaky(`failure ${++calls}`)), {
      attempts: 3,
      delayMs: 1,
      retryable: isUnavailable,
    }),
  );
  t.is(calls, 3);
  t.is(error?.message, 'failure 3');
  t.true(isShardsnapError(error, ErrorCodes.unavailable));
});

test('a non-retryable error is thrown at once, without a wait or another call', async (t) => {
  let calls = 0;
  const refused = new ShardsnapError(ErrorCodes.failedPrecondition, 'refused');
  const startedAt = performance.now();
  const error = await t.throwsAsync(
    retry(
      () => {
        calls++;
        return Promise.reject(refused);
      },
      { delayMs: 5_000, retryable: isUnavailable },
    ),
  );
  t.is(error, refused);
  t.is(calls, 1);
  t.true(performance.now() - startedAt < 1_000);
});

test('the wait doubles after each failure up to maxDelayMs', async (t) => {
  const startedAt: number[] = [];
  const waits: number[] = [];
  await t.throwsAsync(
    retry(
      () => {
        startedAt.push(performance.now());
        return Promise.reject(flaky());
      },
      {
        attempts: 5,
        delayMs: 20,
        maxDelayMs: 60,
        retryable: isUnavailable,
        onRetry: (_error, _attempt, waitMs) => {
          waits.push(waitMs);
        },
      },
    ),
  );
  t.deepEqual(waits, [20, 40, 60, 60]);
  for (let i = 1; i < startedAt.length; i++) {
    const gap = (startedAt[i] as number) - (startedAt[i - 1] as number);
    // A timer fires within a millisecond of its due time at the earliest.
    t.true(gap >= (waits[i - 1] as number) - 1, `wait ${i}: ${gap} ms`);
  }
});

test('forMs: no attempt is due later than forMs after the first one', async (t) => {
  const startedAt: number[] = [];
  const began = performance.now();
  const error = await t.throwsAsync(
    retry(
      () => {
        startedAt.push(performance.now() - began);
        return Promise.reject(flaky());
      },
      { forMs: 150, delayMs: 20, maxDelayMs: 400, retryable: isUnavailable },
    ),
  );
  const gaveUpAt = performance.now() - began;
  t.true(isShardsnapError(error, ErrorCodes.unavailable));
  // Due at 0, 20, 60 and 140 ms (later on a busy machine); the next one, 160 ms after the
  // last, would be past the 150: the retry gives up instead of waiting for it.
  const when = `attempts at ${startedAt.map(Math.round).join(', ')} ms, gave up at ${Math.round(gaveUpAt)} ms`;
  t.true(startedAt.length >= 2, when);
  t.true(gaveUpAt < 250, when);
});

test("an error's retryAfterMs replaces the computed wait, above maxDelayMs too", async (t) => {
  const startedAt: number[] = [];
  const waits: number[] = [];
  const result = await retry(
    (attempt) => {
      startedAt.push(performance.now());
      if (attempt === 1) {
        return Promise.reject(
          new ShardsnapError(ErrorCodes.unavailable, 'busy', { retryAfterMs: 150 }),
        );
      }
      return Promise.resolve(attempt);
    },
    {
      delayMs: 1,
      maxDelayMs: 2,
      retryable: isUnavailable,
      onRetry: (_error, _attempt, waitMs) => {
        waits.push(waitMs);
      },
    },
  );
  t.is(result, 2);
  t.deepEqual(waits, [150]);
  const gap = (startedAt[1] as number) - (startedAt[0] as number);
  t.true(gap >= 149, `the second attempt came ${gap} ms after the first`);
});

test('onRetry is awaited before the wait and the next attempt', async (t) => {
  const events: string[] = [];
  await retry(
    async (attempt) => {
      events.push(`attempt ${attempt}`);
      if (attempt === 1) throw flaky();
      return Promise.resolve();
    },
    {
      delayMs: 1,
      retryable: isUnavailable,
      onRetry: async () => {
        events.push('cleanup started');
        await new Promise((resolve) => setTimeout(resolve, 30));
        events.push('cleanup done');
      },
    },
  );
  t.deepEqual(events, ['attempt 1', 'cleanup started', 'cleanup done', 'attempt 2']);
});

test.serial(
  'an abort during a wait rejects at once with CANCELLED and leaves no timer behind',
  async (t) => {
    const controller = new AbortController();
    const timersBefore = pendingTimers();
    let calls = 0;
    const startedAt = performance.now();
    const outcome = retry(
      () => {
        calls++;
        return Promise.reject(flaky());
      },
      { signal: controller.signal, delayMs: 60_000, retryable: isUnavailable },
    );
    setTimeout(() => controller.abort(), 30);
    const error = await t.throwsAsync(outcome);
    t.true(isShardsnapError(error, ErrorCodes.cancelled), String(error));
    t.is(calls, 1);
    t.true(performance.now() - startedAt < 1_000, 'rejected at the abort, not after the wait');
    t.is(pendingTimers(), timersBefore, 'the wait left no timer');
  },
);

test('a signal of AbortSignal.timeout rejects a wait with DEADLINE_EXCEEDED', async (t) => {
  const startedAt = performance.now();
  const error = await t.throwsAsync(
    retry(() => Promise.reject(flaky()), {
      signal: AbortSignal.timeout(50),
      delayMs: 60_000,
      retryable: isUnavailable,
    }),
  );
  t.true(isShardsnapError(error, ErrorCodes.deadlineExceeded), String(error));
  t.true(performance.now() - startedAt < 1_000);
});

test("an abort's own ShardsnapError reason is the rejection", async (t) => {
  const controller = new AbortController();
  const reason = new ShardsnapError(ErrorCodes.cancelled, 'migration cancelled');
  controller.abort(reason);
  let calls = 0;
  const error = await t.throwsAsync(
    retry(
      () => {
        calls++;
        return Promise.resolve();
      },
      { signal: controller.signal, delayMs: 1, retryable: () => true },
    ),
  );
  t.is(error, reason);
  t.is(calls, 0, 'an aborted signal makes no attempt');
});

test('a process whose retry was aborted mid-wait exits at once: nothing keeps it alive', async (t) => {
  t.timeout(30_000);
  const script = `
    const { retry, unavailable } = require(${JSON.stringify(join(__dirname, '..', 'src', 'core'))});
    const controller = new AbortController();
    retry(() => Promise.reject(unavailable('down')), {
      signal: controller.signal,
      delayMs: 600000,
      retryable: () => true,
    }).catch((error) => {
      console.log(error.code);
      globalThis.abortedAt = Date.now();
    });
    setTimeout(() => controller.abort(), 50);
    process.on('exit', () => console.log('exited ' + (Date.now() - globalThis.abortedAt)));
  `;
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', '-e', script],
    {
      timeout: 20_000,
      cwd: join(__dirname, '..'),
    },
  );
  const [code, exit] = stdout.trim().split('\n');
  t.is(code, 'cancelled');
  const exitedAfter = Number(exit?.replace('exited ', ''));
  t.true(exitedAfter < 1_000, `exited ${exitedAfter} ms after the abort`);
});
