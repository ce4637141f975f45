import { createCipheriv, createHash } from 'node:crypto';
import { type Mutation, invalidArgument } from '../core';

export type SyntheticTypes = 'string' | 'mixed';

export interface SyntheticOptions {
  keys: number;
  valueSize: number;
  types: SyntheticTypes;
  seed: number;
  /** Mutations per write batch. */
  batchSize?: number;
  /** Base time for expiries, so a seed gives the same data for the same base. */
  nowMs?: number;
}

/**
 * A deterministic stream of random bytes: the AES-128-CTR keystream of a key derived
 * from the seed. Fast (GB/s) and the same for the same seed on every machine.
 */
class SeededBytes {
  private readonly cipher;
  private stream = Buffer.alloc(0);
  private used = 0;
  constructor(seed: number) {
    const key = createHash('sha256').update(`shardsnap-seed-${seed}`).digest();
    this.cipher = createCipheriv('aes-128-ctr', key.subarray(0, 16), key.subarray(16, 32));
  }
  /**
   * The next `length` bytes of the keystream. Taken from a keystream block made 1 MiB at a
   * time (a counter-mode stream is the same however it is cut), so values are slices of
   * a few large buffers instead of two fresh allocations each.
   */
  next(length: number): Buffer {
    if (this.used + length > this.stream.length) {
      const rest = this.stream.subarray(this.used);
      const fresh = this.cipher.update(Buffer.alloc(Math.max(STREAM_BLOCK, length - rest.length)));
      this.stream = rest.length > 0 ? Buffer.concat([rest, fresh]) : fresh;
      this.used = 0;
    }
    const out = this.stream.subarray(this.used, this.used + length);
    this.used += length;
    return out;
  }
}

const STREAM_BLOCK = 1 << 20;

export function keyName(i: number): Buffer {
  return Buffer.from(`key:${i.toString().padStart(9, '0')}`);
}

/**
 * Write batches of synthetic data: `string` makes string keys with random values of
 * `valueSize` bytes; `mixed` cycles through every type (string, list, hash, set, zset),
 * gives one key in five an expiry one to two days ahead, and splits `valueSize` among the
 * members of collections.
 */
export function* syntheticBatches(options: SyntheticOptions): Generator<Mutation[]> {
  const { keys, valueSize, types, seed } = options;
  if (!Number.isInteger(keys) || keys < 0)
    throw invalidArgument(`--keys must be a non-negative integer`);
  if (!Number.isInteger(valueSize) || valueSize < 1 || valueSize > 64 << 20) {
    throw invalidArgument(`--value-size must be 1..${64 << 20} bytes`);
  }
  const batchSize =
    options.batchSize ?? Math.max(1, Math.min(1000, Math.floor((1 << 20) / valueSize)));
  const random = new SeededBytes(seed);
  const nowMs = options.nowMs ?? Date.now();
  let batch: Mutation[] = [];
  for (let i = 0; i < keys; i++) {
    batch.push(...keyMutations(i, valueSize, types, random, nowMs));
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}

function keyMutations(
  i: number,
  size: number,
  types: SyntheticTypes,
  random: SeededBytes,
  nowMs: number,
): Mutation[] {
  const key = keyName(i);
  if (types === 'string') return [{ op: 'set', key, value: random.next(size), expireAtMs: 0 }];
  const members = Math.max(1, Math.min(16, Math.floor(size / 16)));
  const part = Math.max(1, Math.floor(size / members));
  const expireAtMs = i % 5 === 0 ? nowMs + 86_400_000 + (i % 86_400) * 1000 : 0;
  const withExpiry = (m: Mutation): Mutation[] =>
    expireAtMs ? [m, { op: 'expire', key, expireAtMs }] : [m];
  const items = (): Buffer[] => Array.from({ length: members }, () => random.next(part));
  switch (i % 5) {
    case 0:
      return [{ op: 'set', key, value: random.next(size), expireAtMs }];
    case 1:
      return withExpiry({ op: 'rpush', key, values: items() });
    case 2:
      return withExpiry({
        op: 'hset',
        key,
        fields: items().map((value, f) => ({ field: Buffer.from(`f${f}`), value })),
      });
    case 3:
      return withExpiry({ op: 'sadd', key, members: items() });
    default:
      return withExpiry({
        op: 'zadd',
        key,
        members: items().map((member, n) => ({ member, score: n * 1.5 - i })),
      });
  }
}
