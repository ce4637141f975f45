import { asError, mutationPayloadBytes } from '../core';
import type { ShardsnapClient } from './client';
import { type SyntheticOptions, syntheticBatches } from './synthetic';

export interface LoadResult {
  keys: number;
  batches: number;
  bytes: number;
  lastSeq: number;
  elapsedMs: number;
}

/** Writes synthetic data into a node with up to `concurrency` batches in flight. */
export async function loadSynthetic(
  client: ShardsnapClient,
  options: SyntheticOptions & { concurrency?: number; onProgress?: (keysDone: number) => void },
): Promise<LoadResult> {
  const started = performance.now();
  const concurrency = options.concurrency ?? 4;
  const inFlight = new Set<Promise<void>>();
  let keys = 0;
  let batches = 0;
  let bytes = 0;
  let lastSeq = 0;
  let failure: unknown;
  for (const batch of syntheticBatches(options)) {
    if (failure) break;
    const batchKeys = new Set(batch.map((m) => m.key.toString('latin1'))).size;
    for (const m of batch) bytes += mutationPayloadBytes(m);
    const write = client.write({ mutations: batch }).then(
      (seq) => {
        lastSeq = Math.max(lastSeq, seq);
        keys += batchKeys;
        batches++;
        options.onProgress?.(keys);
      },
      (error: unknown) => {
        failure ??= error;
      },
    );
    const tracked = write.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
    if (inFlight.size >= concurrency) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  if (failure) throw asError(failure);
  return { keys, batches, bytes, lastSeq, elapsedMs: performance.now() - started };
}
