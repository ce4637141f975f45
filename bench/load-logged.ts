import type { ShardsnapClient } from '../src/client/client';
import { type LoadResult, loadSynthetic } from '../src/client/load';
import { formatCount, log, withTimeout } from './util';

/**
 * Loads `keys` synthetic string keys (seeded, the key names and values the Redis
 * baselines load too) into a node, logging progress `steps` times, bounded by `timeoutMs`.
 */
export function loadLogged(
  client: ShardsnapClient,
  options: {
    keys: number;
    valueSize: number;
    seed: number;
    timeoutMs: number;
    /** What is being loaded, for the timeout's message. */
    what: string;
    /** Put before "loaded N / M keys" in the log. */
    logPrefix: string;
    steps?: number;
  },
): Promise<LoadResult> {
  const { keys, steps = 5 } = options;
  let nextLog = 0;
  return withTimeout(
    loadSynthetic(client, {
      keys,
      valueSize: options.valueSize,
      types: 'string',
      seed: options.seed,
      concurrency: 4,
      onProgress: (done) => {
        if (done >= nextLog) {
          log(`${options.logPrefix}loaded ${formatCount(done)} / ${formatCount(keys)} keys`);
          nextLog += Math.max(1, Math.ceil(keys / steps));
        }
      },
    }),
    options.timeoutMs,
    options.what,
  );
}
