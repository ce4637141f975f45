import { ContentDigest, type SlotRange } from '../core';
import type { Store } from './store';

export interface DigestResult {
  digest: string;
  keyCount: number;
  seq: number;
}

/** Digest of the given slots at one point in time, computed from a store view. */
export async function digestStore(
  store: Store,
  slots: readonly SlotRange[],
  signal?: AbortSignal,
): Promise<DigestResult> {
  const view = await store.openView(slots);
  try {
    const digest = new ContentDigest();
    for await (const batch of view.batches({ maxRecords: 4096, maxBytes: 4 << 20, signal })) {
      for (const record of batch) digest.add(record);
    }
    return { digest: digest.hex(), keyCount: digest.keyCount, seq: view.seq };
  } finally {
    view.close();
  }
}
