import { sleep } from './util';

/**
 * Runs `step` with random key indexes (a fixed-seed LCG: the same run writes the same
 * keys in the same order) until `stopped()` or `maxMs`, one at a time, at most
 * `ratePerSec` a second (0: back to back). A paced writer leaves the CPU to the
 * migration on a small machine; a late write goes at once, without a catch-up burst.
 */
export async function pacedWrites(options: {
  maxMs: number;
  ratePerSec: number;
  keyCount: number;
  stopped: () => boolean;
  step: (index: number) => Promise<void>;
}): Promise<void> {
  const deadline = performance.now() + options.maxMs;
  const interval = options.ratePerSec > 0 ? 1000 / options.ratePerSec : 0;
  let state = 0x2545f491;
  let due = performance.now();
  while (!options.stopped() && performance.now() < deadline) {
    if (interval > 0) {
      const wait = due - performance.now();
      if (wait >= 1) await sleep(wait);
      due = Math.max(due, performance.now() - interval) + interval;
    }
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    await options.step(state % options.keyCount);
  }
}
