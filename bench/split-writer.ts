/**
 * The steady writer of the split benchmark (rows 11-12): single-key `set`s of existing keys
 * of the moving slots, one write in flight, paced like the Redis Cluster writer of the
 * baseline (bench/redis-cluster-writer.ts: same key pool, same key order from the same LCG,
 * same value bytes `writerValue(seq)`), sent through a RoutingClient, which follows MOVED
 * and retries TRYAGAIN the way a cluster client does.
 */
import { RoutingClient } from '../src/client/routing-client';
import { ShardsnapClient } from '../src/client/client';
import {
  type WriteSample,
  type WriterKey,
  type WriterStats,
  writerValue,
} from './redis-cluster-writer';
import { pacedWrites } from './paced-writes';
import { percentile } from './util';

/** Latency figures of the writes started within [from, to), as ClusterWriter.stats. */
export function samplesStats(
  samples: readonly WriteSample[],
  from: number,
  to: number,
): WriterStats {
  const window = samples.filter((s) => s.startedAt >= from && s.startedAt < to);
  const ms = window.map((s) => s.ms);
  let maxGap = 0;
  let previous = from;
  for (const s of window) {
    const ackedAt = s.startedAt + s.ms;
    maxGap = Math.max(maxGap, ackedAt - previous);
    previous = ackedAt;
  }
  const seconds = (to - from) / 1000;
  return {
    writes: window.length,
    writesPerSec: seconds > 0 ? window.length / seconds : 0,
    p50Ms: percentile(ms, 50),
    p99Ms: percentile(ms, 99),
    maxMs: ms.length > 0 ? Math.max(...ms) : NaN,
    maxGapMs: maxGap,
  };
}

/** The longest gap between consecutive acks in [from, to) and when it ended (for the timeline). */
export function longestGap(
  samples: readonly WriteSample[],
  from: number,
  to: number,
): { ms: number; endedAt: number } {
  let best = { ms: 0, endedAt: from };
  let previous = from;
  for (const s of samples) {
    if (s.startedAt < from || s.startedAt >= to) continue;
    const ackedAt = s.startedAt + s.ms;
    if (ackedAt - previous > best.ms) best = { ms: ackedAt - previous, endedAt: ackedAt };
    previous = ackedAt;
  }
  return best;
}

export class SplitWriter {
  readonly routing: RoutingClient;
  readonly samples: WriteSample[] = [];
  /** Index into `keys` → seq of its last acknowledged write. */
  readonly lastAcked = new Map<number, number>();
  /** Addresses that acknowledged writes, with their counts. */
  readonly ackedBy = new Map<string, number>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private seq = 0;

  constructor(
    seed: string,
    private readonly keys: readonly WriterKey[],
    private readonly valueBytes: number,
    retryForMs = 30_000,
  ) {
    if (keys.length === 0) throw new Error('the writer has no keys to write');
    this.routing = new RoutingClient(seed, { retryForMs, maxRedirects: 5 });
  }

  /** Writes until stop() or `maxMs`, at most `ratePerSec` a second (0: back to back). */
  start(maxMs: number, ratePerSec: number): void {
    if (this.loop) throw new Error('the writer is already running');
    this.loop = pacedWrites({
      maxMs,
      ratePerSec,
      keyCount: this.keys.length,
      stopped: () => this.stopped,
      step: async (index) => {
        const key = this.keys[index] as WriterKey;
        const seq = ++this.seq;
        const startedAt = performance.now();
        const { address } = await this.routing.write({
          mutations: [
            { op: 'set', key: key.key, value: writerValue(seq, this.valueBytes), expireAtMs: 0 },
          ],
        });
        this.samples.push({ startedAt, ms: performance.now() - startedAt });
        this.lastAcked.set(index, seq);
        this.ackedBy.set(address, (this.ackedBy.get(address) ?? 0) + 1);
      },
    });
    // Errors surface from stop(); this only keeps an early failure from going unhandled.
    this.loop.catch(() => undefined);
  }

  /** Stops the loop and waits for the write in flight; rethrows the loop's error. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.loop) await this.loop;
  }

  close(): void {
    this.routing.close();
  }

  stats(from: number, to: number): WriterStats {
    return samplesStats(this.samples, from, to);
  }

  /**
   * Reads back every key the writer acknowledged from `address` (the new owner) and
   * lists those whose value is not the last acknowledged one.
   */
  async verify(address: string): Promise<{ checked: number; lost: string[] }> {
    const client = new ShardsnapClient(address);
    const lost: string[] = [];
    let checked = 0;
    try {
      const entries = [...this.lastAcked];
      for (let at = 0; at < entries.length; at += 500) {
        const batch = entries.slice(at, at + 500);
        const values = await client.read({
          keys: batch.map(([index]) => (this.keys[index] as WriterKey).key),
        });
        batch.forEach(([index, seq], i) => {
          checked++;
          const value = values[i];
          const expected = writerValue(seq, this.valueBytes);
          if (!value?.found || !value.string || !Buffer.from(value.string).equals(expected)) {
            const got = value?.found
              ? value.string
                ? Buffer.from(value.string).subarray(0, 12).toString('latin1')
                : value.kind
              : 'not found';
            lost.push(
              `${(this.keys[index] as WriterKey).key.toString()}: expected w${seq}, got ${String(got)}`,
            );
          }
        });
      }
    } finally {
      client.close();
    }
    return { checked, lost };
  }
}
