import test from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { type Mutation, type StoreRecord, slotOf } from '../src/core';
import { MemoryStore, RocksDbStore, type Store, digestStore } from '../src/store';

// The RocksDB store applies random batches exactly as the memory store does: same
// results, same errors, same reads, digests and stats.

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

function randomBatch(random: () => number, now: number): Mutation[] {
  const pick = (n: number): number => Math.floor(random() * n);
  const key = (): Buffer => Buffer.from(pick(10) === 0 ? `{hot}:${pick(5)}` : `key:${pick(60)}`);
  const bytes = (): Buffer => Buffer.from('v'.repeat(pick(12)) + String(pick(100)));
  const expiry = (): number => [0, 0, 0, now - 1000, now + 50, now + 1_000_000][pick(6)] as number;
  const batch: Mutation[] = [];
  for (let i = 0, n = 1 + pick(6); i < n; i++) {
    switch (pick(9)) {
      case 0:
      case 1:
        batch.push({ op: 'set', key: key(), value: bytes(), expireAtMs: expiry() });
        break;
      case 2:
        batch.push({ op: 'del', key: key() });
        break;
      case 3:
        batch.push({
          op: 'hset',
          key: key(),
          fields: [
            { field: bytes(), value: bytes() },
            { field: bytes(), value: bytes() },
          ],
        });
        break;
      case 4:
        batch.push({
          op: pick(2) === 0 ? 'lpush' : 'rpush',
          key: key(),
          values: [bytes(), bytes()],
        });
        break;
      case 5:
        batch.push({ op: 'sadd', key: key(), members: [bytes(), bytes(), bytes()] });
        break;
      case 6:
        batch.push({
          op: 'zadd',
          key: key(),
          members: [{ member: bytes(), score: random() * 100 - 50 }],
        });
        break;
      default:
        batch.push({ op: 'expire', key: key(), expireAtMs: expiry() });
    }
  }
  return batch;
}

async function outcome(store: Store, batch: Mutation[]): Promise<string> {
  try {
    return `seq ${(await store.write(batch)).seq}`;
  } catch (error) {
    return `error ${(error as { code?: string }).code}: ${(error as Error).message}`;
  }
}

for (const seed of [1, 2, 3]) {
  test(`random batches, seed ${seed}: rocksdb behaves like memory`, async (t) => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'shardsnap-diff-'));
    let now = 10_000_000;
    const clock = (): number => now;
    const memory = new MemoryStore({ now: clock });
    const rocks = await RocksDbStore.open(dir, { now: clock });
    t.teardown(async () => {
      await rocks.close();
      await fs.rm(dir, { recursive: true, force: true });
    });
    const random = rng(seed);
    const keys = [
      ...Array.from({ length: 60 }, (_, i) => `key:${i}`),
      ...Array.from({ length: 5 }, (_, i) => `{hot}:${i}`),
    ].map((k) => Buffer.from(k));
    for (let round = 0; round < 300; round++) {
      const batch = randomBatch(random, now);
      t.is(await outcome(rocks, batch), await outcome(memory, batch), `round ${round}`);
      if (round % 10 === 0) now += 100;
      if (round % 25 === 0) {
        const [m, r] = await Promise.all([memory.read(keys), rocks.read(keys)]);
        t.deepEqual(r, m, `reads at round ${round}`);
        const [ms, rs] = await Promise.all([memory.stats(), rocks.stats()]);
        t.deepEqual({ ...rs, openViews: 0 }, { ...ms, openViews: 0 }, `stats at round ${round}`);
        t.is(
          (await digestStore(rocks, [])).digest,
          (await digestStore(memory, [])).digest,
          `digest at round ${round}`,
        );
      }
      if (round === 150) {
        // Move a slot range from memory to both, through views and installs.
        const range = { start: 2000, end: 12000 };
        const view = await memory.openView([range]);
        const records: StoreRecord[] = [];
        for await (const batch of view.batches({ maxRecords: 13, maxBytes: 1 << 20 }))
          records.push(...batch);
        view.close();
        t.true(
          records.every(
            (r, i) => i === 0 || slotOf(r.key) >= slotOf((records[i - 1] as StoreRecord).key),
          ),
        );
        for (const store of [memory, rocks] as Store[]) {
          const staged = await store.beginInstall({ slots: [range], full: false, seq: 1 });
          for (let i = 0; i < records.length; i += 9) await staged.add(records.slice(i, i + 9));
          await staged.commit();
        }
        t.is((await rocks.stats()).seq, (await memory.stats()).seq);
      }
    }
    t.is(
      (await digestStore(rocks, [{ start: 0, end: 9000 }])).digest,
      (await digestStore(memory, [{ start: 0, end: 9000 }])).digest,
    );
  });
}
