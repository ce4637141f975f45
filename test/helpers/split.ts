/** What split tests share: keys of chosen slots, a routing writer that records acks, a model store. */
import { type Mutation, type SlotRange, slotOf } from '../../src/core';
import { RoutingClient } from '../../src/client';
import { MemoryStore, digestStore } from '../../src/store';
import { b, sleep } from './harness';

/** Hash tags whose slots lie in `range` (and outside it, with `inside: false`). */
export function tagsIn(range: SlotRange, count: number, inside = true): string[] {
  const tags: string[] = [];
  for (let i = 0; tags.length < count; i++) {
    const tag = `t${i}`;
    const slot = slotOf(b(`{${tag}}`));
    if ((slot >= range.start && slot <= range.end) === inside) tags.push(tag);
  }
  return tags;
}

/** Mixed-type data over `tags`: strings, hashes, lists, sets, zsets, some with expiries. */
export function mixedData(tags: readonly string[], perTag: number): Mutation[][] {
  const batches: Mutation[][] = [];
  const future = Date.now() + 3_600_000;
  for (const tag of tags) {
    const batch: Mutation[] = [];
    for (let i = 0; i < perTag; i++) {
      const key = b(`{${tag}}k${i}`);
      switch (i % 5) {
        case 0:
          batch.push({
            op: 'set',
            key,
            value: Buffer.alloc(64 + (i % 200), i % 251),
            expireAtMs: i % 10 === 0 ? future : 0,
          });
          break;
        case 1:
          batch.push({
            op: 'hset',
            key,
            fields: [
              { field: b('f'), value: b(`v${i}`) },
              { field: b('g'), value: b('x') },
            ],
          });
          break;
        case 2:
          batch.push({ op: 'rpush', key, values: [b('a'), b(`${i}`)] });
          break;
        case 3:
          batch.push({ op: 'sadd', key, members: [b('m1'), b(`m${i}`)] });
          break;
        default:
          batch.push({ op: 'zadd', key, members: [{ member: b('z'), score: i }] });
      }
    }
    batches.push(batch);
  }
  return batches;
}

/**
 * Writes to keys of the given tags until stopped, through a RoutingClient (following MOVED,
 * retrying TRYAGAIN). Every acknowledged batch is applied to `model`, in ack order; a batch
 * that failed is recorded, never applied (its outcome is unknown to a client).
 */
export class SplitWriter {
  readonly model: MemoryStore;
  readonly routing: RoutingClient;
  acked = 0;
  readonly failures: string[] = [];
  readonly addresses = new Set<string>();
  private stopped = false;
  private readonly lanes: Promise<void>[] = [];

  constructor(
    seed: string,
    private readonly tags: readonly string[],
    model: MemoryStore,
    private readonly options: {
      lanes?: number;
      keysPerTag?: number;
      pauseMs?: number;
      valueBytes?: number;
    } = {},
  ) {
    this.model = model;
    this.routing = new RoutingClient(seed, { retryForMs: 15_000 });
  }

  start(): this {
    const lanes = this.options.lanes ?? 2;
    for (let lane = 0; lane < lanes; lane++) this.lanes.push(this.run(lane, lanes));
    return this;
  }

  private async run(lane: number, lanes: number): Promise<void> {
    const keysPerTag = this.options.keysPerTag ?? 20;
    let n = 0;
    while (!this.stopped) {
      const tag = this.tags[(n * lanes + lane) % this.tags.length] as string;
      const i = n % keysPerTag;
      n++;
      // Lanes write disjoint keys, so the model's ack order per key is the write order.
      const key = b(`{${tag}}w${lane}-${i}`);
      const batch: Mutation[] =
        n % 3 === 0
          ? [{ op: 'sadd', key: b(`{${tag}}set${lane}`), members: [b(`m${n}`)] }]
          : [{ op: 'set', key, value: this.value(lane, n), expireAtMs: 0 }];
      try {
        const { address } = await this.routing.write({ mutations: batch });
        this.addresses.add(address);
        await this.model.write(batch);
        this.acked++;
      } catch (error) {
        this.failures.push((error as Error).message);
        if (this.failures.length > 50) return;
      }
      if (this.options.pauseMs) await sleep(this.options.pauseMs);
    }
  }

  private value(lane: number, n: number): Buffer {
    const text = b(`lane${lane}-n${n}`);
    const size = this.options.valueBytes ?? 0;
    if (size <= text.length) return text;
    const value = Buffer.alloc(size, n % 251);
    text.copy(value);
    return value;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.lanes);
  }

  close(): void {
    this.routing.close();
  }
}

/** A model store holding `batches` (the initial load). */
export async function modelOf(batches: readonly Mutation[][]): Promise<MemoryStore> {
  const model = new MemoryStore();
  for (const batch of batches) await model.write(batch);
  return model;
}

export async function modelDigest(
  model: MemoryStore,
  slots: SlotRange[],
): Promise<{ digest: string; keyCount: number }> {
  const result = await digestStore(model, slots);
  return { digest: result.digest, keyCount: result.keyCount };
}
