/**
 * A writer for fault tests: like SplitWriter it writes through a RoutingClient and applies
 * every acknowledged batch to a model store, but it keeps going when nodes die, and it
 * tracks the keys whose state is unknown to a client (a write to them failed: it may or may
 * not have been applied) until an acknowledged overwrite makes them known again.
 */
import { RoutingClient } from '../../src/client';
import type { Mutation } from '../../src/core';
import type { Value__Output } from '../../src/generated/shardsnap/v1/Value';
import type { MemoryStore } from '../../src/store';
import { valueToWire } from '../../src/wire/convert';
import { b, sleep } from './harness';

export interface TrackingWriterOptions {
  lanes?: number;
  /** String keys per tag and lane (each also has one set key). */
  keysPerTag?: number;
  /** Pause after each write of a lane. */
  pauseMs?: number;
  /** Pause after a failed write before the lane goes on. */
  errorPauseMs?: number;
}

export class TrackingWriter {
  readonly routing: RoutingClient;
  acked = 0;
  /** Writes that failed: their outcome is unknown to the client. */
  unknown = 0;
  /** The first error messages (at most 20). */
  readonly errors: string[] = [];
  /** Keys (latin1) a failed write may or may not have changed, not overwritten since. */
  readonly uncertain = new Set<string>();
  /** Every key (latin1) this writer wrote to. */
  readonly touched = new Set<string>();
  private stopped = true;
  private lanes: Promise<void>[] = [];
  private readonly counters: number[] = [];

  constructor(
    seed: string,
    private readonly tags: readonly string[],
    readonly model: MemoryStore,
    private readonly options: TrackingWriterOptions = {},
  ) {
    this.routing = new RoutingClient(seed, { retryForMs: 15_000 });
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Starts the lanes (again, after a stop); each lane goes on where it stopped. */
  start(): this {
    if (!this.stopped) throw new Error('the writer is running');
    this.stopped = false;
    const lanes = this.options.lanes ?? 3;
    this.lanes = [];
    for (let lane = 0; lane < lanes; lane++) this.lanes.push(this.run(lane, lanes));
    return this;
  }

  private async run(lane: number, lanes: number): Promise<void> {
    const keysPerTag = this.options.keysPerTag ?? 10;
    let n = this.counters[lane] ?? 0;
    while (!this.stopped) {
      const tag = this.tags[(n * lanes + lane) % this.tags.length] as string;
      // Lanes write disjoint keys, one write at a time: per key, ack order is write order.
      const isSet = n % 4 === 3;
      const key = isSet ? b(`{${tag}}s${lane}`) : b(`{${tag}}w${lane}-${n % keysPerTag}`);
      const batch: Mutation[] = isSet
        ? [{ op: 'sadd', key, members: [b(`m${lane}-${n}`)] }]
        : [{ op: 'set', key, value: b(`lane${lane}-n${n}`), expireAtMs: 0 }];
      n++;
      this.counters[lane] = n;
      const id = key.toString('latin1');
      this.touched.add(id);
      try {
        await this.routing.write({ mutations: batch });
        await this.model.write(batch);
        this.acked++;
        // A set replaces whatever a failed write may have left; an sadd does not.
        if (!isSet) this.uncertain.delete(id);
      } catch (error) {
        this.unknown++;
        this.uncertain.add(id);
        if (this.errors.length < 20) this.errors.push((error as Error).message);
        await sleep(this.options.errorPauseMs ?? 25);
      }
      if (this.options.pauseMs) await sleep(this.options.pauseMs);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.lanes);
  }

  /**
   * Makes every uncertain key known again with an acknowledged delete (applied to the model
   * too). Call once nothing else writes and the owners are settled. Returns how many.
   */
  async resolveUncertain(attempts = 40): Promise<number> {
    const keys = [...this.uncertain];
    for (const id of keys) {
      const batch: Mutation[] = [{ op: 'del', key: Buffer.from(id, 'latin1') }];
      for (let attempt = 1; ; attempt++) {
        try {
          await this.routing.write({ mutations: batch });
          break;
        } catch (error) {
          if (attempt >= attempts) throw error;
          await sleep(100);
        }
      }
      await this.model.write(batch);
      this.uncertain.delete(id);
    }
    return keys.length;
  }

  /** The keys written whose state the model knows. */
  certainKeys(): Buffer[] {
    return [...this.touched]
      .filter((id) => !this.uncertain.has(id))
      .map((id) => Buffer.from(id, 'latin1'));
  }

  close(): void {
    this.routing.close();
  }
}

type AnyValue = {
  found?: boolean;
  string?: Buffer | Uint8Array | string | null;
  list?: { items?: Array<Buffer | Uint8Array | string> } | null;
  hash?: {
    fields?: Array<{ field?: Buffer | Uint8Array | string; value?: Buffer | Uint8Array | string }>;
  } | null;
  set?: { members?: Array<Buffer | Uint8Array | string> } | null;
  zset?: { members?: Array<{ member?: Buffer | Uint8Array | string; score?: number }> } | null;
  expireAtMs?: unknown;
};

const hex = (x: Buffer | Uint8Array | string | null | undefined): string =>
  x === null || x === undefined ? '' : Buffer.from(x).toString('hex');

/** One string per value, equal for equal content (members sorted), from a read or a model entry. */
export function canonicalValue(value: AnyValue | undefined): string {
  if (!value || !value.found) return 'missing';
  const expiry = `@${Number(value.expireAtMs ?? 0)}`;
  if (value.string !== undefined && value.string !== null)
    return `string:${hex(value.string)}${expiry}`;
  if (value.list) return `list:${(value.list.items ?? []).map(hex).join(',')}${expiry}`;
  if (value.hash) {
    const fields = (value.hash.fields ?? []).map((f) => `${hex(f.field)}=${hex(f.value)}`);
    return `hash:${fields.sort().join(',')}${expiry}`;
  }
  if (value.set) return `set:${(value.set.members ?? []).map(hex).sort().join(',')}${expiry}`;
  if (value.zset) {
    const members = (value.zset.members ?? []).map((m) => `${hex(m.member)}=${m.score}`);
    return `zset:${members.sort().join(',')}${expiry}`;
  }
  return 'unknown-kind';
}

/**
 * Keys whose value on a node (as read) differs from the model's; `read` reads keys of the
 * node. Returns "key: node ≠ model" lines (at most `limit`).
 */
export async function modelMismatches(
  model: MemoryStore,
  keys: readonly Buffer[],
  read: (keys: Buffer[]) => Promise<Value__Output[]>,
  limit = 10,
): Promise<{ count: number; lines: string[] }> {
  let count = 0;
  const lines: string[] = [];
  for (let i = 0; i < keys.length; i += 200) {
    const chunk = keys.slice(i, i + 200);
    const [actual, expected] = await Promise.all([read(chunk), model.read(chunk)]);
    chunk.forEach((key, j) => {
      const got = canonicalValue(actual[j]);
      const want = canonicalValue(valueToWire(expected[j]) as AnyValue);
      if (got !== want) {
        count++;
        if (lines.length < limit) lines.push(`${key.toString()}: node ${got} ≠ model ${want}`);
      }
    });
  }
  return { count, lines };
}
