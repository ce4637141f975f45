import test from 'ava';
import {
  MAX_SLOT,
  type Mutation,
  type SlotRange,
  type StoreRecord,
  encodeRecord,
  slotOf,
} from '../src/core';
import { MemoryStore, dropSlots, dropSlotsInSteps } from '../src/store';
import { Arena } from '../src/store/memory/arena';
import { Keyspace, hashKey } from '../src/store/memory/keyspace';
import { nativeSegments } from '../src/store/memory/segments';
import { SlotTable } from '../src/store/memory/slot-table';
import type { StoreView } from '../src/store/store';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 0x1_0000_0000;
  };
}

test('slot tables agree with a Map under random inserts and removes (backward-shift deletion)', (t) => {
  const keyspace = new Keyspace();
  const table = new SlotTable();
  const model = new Map<string, number>();
  const random = rng(7);
  for (let step = 0; step < 20_000; step++) {
    // Few distinct keys and a tiny hash space force long probe runs and wrap-arounds.
    const name = `k${Math.floor(random() * 300)}`;
    const key = Buffer.from(name);
    const hash = hashKey(key) & 0x3f;
    const found = table.find(keyspace, key, hash);
    t.is(found, model.get(name) ?? -1, `step ${step}: find ${name}`);
    if (found >= 0 && random() < 0.5) {
      table.remove(found, hash);
      keyspace.free(found);
      model.delete(name);
    } else if (found < 0) {
      const id = keyspace.createString(key, hash, 0, Buffer.alloc(0), 0);
      table.insert(id, hash);
      model.set(name, id);
    }
    if (step % 1000 === 0) t.is(table.size, model.size);
  }
  for (const [name, id] of model) {
    const key = Buffer.from(name);
    t.is(table.find(keyspace, key, hashKey(key) & 0x3f), id);
  }
  t.deepEqual(
    [...table.ids()].sort((a, b) => a - b),
    [...model.values()].sort((a, b) => a - b),
  );
});

const canonical = (records: readonly StoreRecord[]): string[] =>
  records.map((r) => encodeRecord(r.key, r.entry, true).toString('hex')).sort();

/** The keys on which two canonical listings differ (a short message instead of a dump). */
function differences(actual: readonly string[], expected: readonly string[]): string[] {
  const keyOf = (hex: string): string => {
    const record = Buffer.from(hex, 'hex');
    return record.toString('latin1', 13, 13 + record.readUInt32LE(9));
  };
  const a = new Map(actual.map((h) => [keyOf(h), h]));
  const e = new Map(expected.map((h) => [keyOf(h), h]));
  const out: string[] = [];
  if (actual.length !== a.size) out.push(`${actual.length - a.size} duplicate keys`);
  for (const [key, hex] of e) {
    if (!a.has(key)) out.push(`missing ${key}`);
    else if (a.get(key) !== hex)
      out.push(`differs ${key}: type ${hex.slice(0, 2)} vs ${a.get(key)?.slice(0, 2)}`);
  }
  for (const key of a.keys()) if (!e.has(key)) out.push(`extra ${key}`);
  return out.slice(0, 8);
}

async function contentOf(store: MemoryStore, slots: SlotRange[] = []): Promise<string[]> {
  const view = await store.openView(slots);
  const records: StoreRecord[] = [];
  for await (const batch of view.batches({ maxRecords: 50, maxBytes: 1 << 20 }))
    records.push(...batch);
  view.close();
  return canonical(records);
}

function randomMutation(random: () => number, keys: readonly Buffer[], now: number): Mutation {
  const key = keys[Math.floor(random() * keys.length)] as Buffer;
  const r = random();
  const bytes = (n: number): Buffer => Buffer.from(`v${Math.floor(random() * 1e9)}`.repeat(n));
  if (r < 0.35) {
    return { op: 'set', key, value: bytes(1 + Math.floor(random() * 3)), expireAtMs: 0 };
  }
  if (r < 0.45) return { op: 'del', key };
  if (r < 0.55) {
    return { op: 'expire', key, expireAtMs: random() < 0.3 ? 0 : now + Math.floor(random() * 50) };
  }
  // Collections grow past the encoded-blob limit, so both representations are exercised.
  const many = random() < 0.1 ? 200 : 3;
  const members = Array.from({ length: many }, () => Buffer.from(`m${Math.floor(random() * 400)}`));
  if (r < 0.7)
    return { op: 'hset', key, fields: members.map((field) => ({ field, value: bytes(1) })) };
  if (r < 0.8) return { op: 'rpush', key, values: members };
  if (r < 0.9) return { op: 'sadd', key, members };
  return { op: 'zadd', key, members: members.map((member) => ({ member, score: random() })) };
}

for (const seed of [1, 2, 3, 4]) {
  test(`views opened at random points equal the store at their seq (seed ${seed}); nothing leaks`, async (t) => {
    let now = 1_000_000;
    const store = new MemoryStore({ now: () => now });
    const random = rng(seed);
    // Keys of a few slots, so writes hit slots that views are walking.
    const keys = Array.from({ length: 120 }, (_, i) => Buffer.from(`{tag${i % 6}}key${i}`));
    const open: Array<{
      view: StoreView;
      expected: string[];
      records: StoreRecord[];
      it: AsyncIterator<StoreRecord[]>;
      done: boolean;
    }> = [];
    for (let round = 0; round < 600; round++) {
      const batch = Array.from({ length: 1 + Math.floor(random() * 4) }, () =>
        randomMutation(random, keys, now),
      );
      try {
        await store.write(batch);
      } catch {
        // WRONGTYPE: the batch changed nothing, as the conformance suite checks.
      }
      if (round % 7 === 0) now += 10;
      const dice = random();
      if (dice < 0.05 && open.length < 4) {
        const expected = await contentOf(store);
        const view = await store.openView([]);
        const it = view.batches({ maxRecords: 3, maxBytes: 1 << 20 })[Symbol.asyncIterator]();
        open.push({ view, expected, records: [], it, done: false });
      } else if (dice < 0.08) {
        // A slot-range install racing the open views.
        const slot = slotOf(keys[Math.floor(random() * keys.length)] as Buffer);
        const staged = await store.beginInstall({
          slots: [{ start: slot, end: slot }],
          full: false,
          seq: 0,
        });
        const key = Buffer.from(`{tag${slot}}installed`);
        if (slotOf(key) === slot) {
          await staged.add([
            { key, entry: { value: { type: 'string', value: Buffer.from('i') }, expireAtMs: 0 } },
          ]);
        }
        await staged.commit();
      }
      for (const o of open) {
        const next = await o.it.next();
        if (next.done) {
          t.deepEqual(
            differences(canonical(o.records), o.expected),
            [],
            `round ${round}: view at seq ${o.view.seq}`,
          );
          o.view.close();
          o.done = true;
        } else o.records.push(...next.value);
      }
      open.splice(0, open.length, ...open.filter((o) => !o.done));
    }
    for (const o of open) {
      for (;;) {
        const next = await o.it.next();
        if (next.done) break;
        o.records.push(...next.value);
      }
      t.deepEqual(differences(canonical(o.records), o.expected), []);
      o.view.close();
    }
    t.is((await store.stats()).openViews, 0);
    const usage = store.memoryUsage();
    t.is(
      usage.records,
      (await store.stats()).keyCount,
      'every record is a live key once views close',
    );
  });
}

test('compaction moves live records out of sparse segments and keeps every value', (t) => {
  const keyspace = new Keyspace();
  const value = (i: number): Buffer => Buffer.alloc(1000, i % 251);
  const ids: number[] = [];
  for (let i = 0; i < 40_000; i++) {
    const key = Buffer.from(`key:${i}`);
    const id = keyspace.createString(key, hashKey(key), slotOf(key), value(i), 0);
    keyspace.put(id, -1);
    ids.push(id);
  }
  // Remove three keys of four: every segment is now a quarter full.
  for (let i = 0; i < ids.length; i++) if (i % 4 !== 0) keyspace.remove(ids[i] as number);
  const before = keyspace.arena.allocated;
  t.true(keyspace.arena.liveBytes * 3 < before);
  let moved = 0;
  for (let step = 0; step < 1000; step++) {
    const n = keyspace.compactStep(4096, 0, 64 * 1024);
    // A step stops once it copied 64 KiB: at most one record past it.
    t.true(n <= Math.ceil((64 * 1024) / 1007) + 1, `${n} records in one step`);
    moved += n;
    if (
      n === 0 &&
      keyspace.arena.allocated - keyspace.arena.liveBytes < keyspace.arena.allocated / 4
    )
      break;
  }
  t.true(moved > 0);
  t.true(keyspace.arena.allocated < before / 2, `${keyspace.arena.allocated} of ${before}`);
  for (let i = 0; i < ids.length; i += 4) {
    const key = Buffer.from(`key:${i}`);
    const id = keyspace.find(slotOf(key), key, hashKey(key));
    t.true(id >= 0);
    const entry = keyspace.entry(id, 'copy');
    t.true(entry.value.type === 'string' && entry.value.value.equals(value(i)), `key:${i}`);
  }
  t.is(keyspace.keyCount, 10_000);
});

/** Sets every key to `value`, `perWrite` keys a batch. */
async function setKeys(
  store: MemoryStore,
  keys: readonly Buffer[],
  value: Buffer,
  perWrite = keys.length,
): Promise<void> {
  for (let at = 0; at < keys.length; at += perWrite)
    await store.write(
      keys.slice(at, at + perWrite).map((key) => ({ op: 'set', key, value, expireAtMs: 0 })),
    );
}

test('records a large slot drop replaced are freed in steps after the swap; views keep theirs', async (t) => {
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const keys = [...Array(50_000).keys()].map((i) => Buffer.from(`key:${i}`));
  await setKeys(store, keys, Buffer.alloc(100, 1), 5000);
  const refill = (): Promise<void> => setKeys(store, keys, Buffer.alloc(100, 1));
  const drop = (): Promise<{ seq: number }> => dropSlots(store, [{ start: 0, end: MAX_SLOT }]);
  await drop();
  t.is((await store.stats()).keyCount, 0, 'the drop is visible at once');
  t.deepEqual(await store.read([keys[7] as Buffer]), [undefined]);
  t.true(store.memoryUsage().records > 40_000, 'the old records are not all freed in that turn');
  await store.reclaimed();
  t.is(store.memoryUsage().records, 0, 'then every one is freed');

  await refill();
  const view = await store.openView([]);
  await drop();
  await store.reclaimed();
  t.is(store.memoryUsage().records, 50_000, 'a view opened before the drop pins them');
  let seen = 0;
  for await (const batch of view.batches({ maxRecords: 1000, maxBytes: 1 << 20 }))
    seen += batch.length;
  t.is(seen, 50_000);
  view.close();
  t.is(store.memoryUsage().records, 0, 'freed once the view lets go');

  // Closed while the queue still holds ids: nothing is retired after the keyspace is cleared.
  await setKeys(store, keys, Buffer.alloc(10));
  await dropSlots(store, [{ start: 0, end: MAX_SLOT }]);
  await store.close();
  await store.reclaimed();
  t.pass();
});

test('a background slot drop goes in steps of dropStepSlots slots, none in the turn of the call', async (t) => {
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const keys = [...Array(20_000).keys()].map((i) => Buffer.from(`key:${i}`));
  await setKeys(store, keys, Buffer.alloc(10));
  const before = await store.stats();
  const seqs: number[] = [];
  const unsubscribe = store.onChange((change) => {
    if (change.kind === 'replace') seqs.push(change.seq);
  });
  const dropping = dropSlotsInSteps(store, [
    { start: 0, end: 999 },
    { start: 5000, end: 5000 },
  ]);
  t.is((await store.stats()).keyCount, before.keyCount, 'nothing dropped in the turn of the call');
  await dropping;
  unsubscribe();
  t.is(seqs.length, Math.ceil(1000 / store.dropStepSlots) + 1, 'one batch per step');
  const left = keys.filter((key) => {
    const slot = slotOf(key);
    return !(slot <= 999 || slot === 5000);
  });
  t.is((await store.stats()).keyCount, left.length);
});

test('the sweep compacts the arena only while no view is open and no install is staged', async (t) => {
  const store = new MemoryStore({ expirySweep: { intervalMs: 60_000, recordsPerStep: 65_536 } });
  t.teardown(() => store.close());
  const sweep = (store as unknown as { sweep: { step(): number } }).sweep;
  const keys = [...Array(60_000).keys()].map((i) => Buffer.from(`key:${i}`));
  await setKeys(store, keys, Buffer.alloc(1000, 7), 1000);
  // Three keys of four removed: every segment is a quarter full.
  const removed = keys.filter((_, i) => i % 4 !== 0);
  for (let at = 0; at < removed.length; at += 1000)
    await store.write(removed.slice(at, at + 1000).map((key) => ({ op: 'del', key })));
  const fragmented = store.memoryUsage().arenaBytes;
  t.true(store.memoryUsage().liveBytes * 3 < fragmented);

  const view = await store.openView([]);
  for (let i = 0; i < 20; i++) sweep.step();
  t.is(store.memoryUsage().arenaBytes, fragmented, 'no compaction while a view is open');
  view.close();
  const install = await store.beginInstall({ slots: [{ start: 0, end: 0 }], full: false, seq: 0 });
  for (let i = 0; i < 20; i++) sweep.step();
  t.is(store.memoryUsage().arenaBytes, fragmented, 'no compaction while an install is staged');
  await install.abort();
  for (let i = 0; i < 20; i++) sweep.step();
  t.true(
    store.memoryUsage().arenaBytes < fragmented / 2,
    `compacted once both ended: ${store.memoryUsage().arenaBytes} of ${fragmented}`,
  );
  t.is((await store.stats()).keyCount, 15_000);
});

test('the expiry sweep removes expired keys in bounded steps; an open view still sees them', async (t) => {
  let now = 1_000_000;
  const store = new MemoryStore({
    now: () => now,
    expirySweep: { intervalMs: 60_000, recordsPerStep: 1000 },
  });
  t.teardown(() => store.close());
  const sweep = (store as unknown as { sweep: { step(): number } }).sweep;
  const batch: Mutation[] = [];
  for (let i = 0; i < 5000; i++) {
    batch.push({
      op: 'set',
      key: Buffer.from(`k${i}`),
      value: Buffer.from('v'),
      expireAtMs: i % 2 === 0 ? now + 1000 : 0,
    });
  }
  await store.write(batch);
  t.is(sweep.step(), 0, 'nothing has expired yet');
  const view = await store.openView([]);
  now += 1000;
  let removed = 0;
  for (let step = 0; step < 5; step++) {
    const n = sweep.step();
    t.true(n <= 1000, 'a step examines at most recordsPerStep records');
    removed += n;
  }
  t.is(removed, 2500);
  const stats = await store.stats();
  t.is(stats.keyCount, 2500);
  t.is(
    stats.dataBytes,
    2500 * 1 +
      [...Array(5000).keys()].filter((i) => i % 2 === 1).reduce((n, i) => n + `k${i}`.length, 0),
  );
  let seen = 0;
  for await (const records of view.batches({ maxRecords: 100, maxBytes: 1 << 20 }))
    seen += records.length;
  view.close();
  t.is(seen, 5000, 'the view opened before the sweep holds the keys as they were');
  t.is((await contentOf(store)).length, 2500);
  t.is(store.memoryUsage().records, 2500, 'swept records are freed once the view closes');
});

test('arena segments are mappings from the addon and keep their bytes', async (t) => {
  t.true(nativeSegments(), 'the segments addon is built by make');
  const arena = new Arena();
  const filled: Array<{ seg: number; off: number; byte: number }> = [];
  // Fill three segments, leaving time for the spare's prefault between them.
  for (let i = 0; i < 3 * 8; i++) {
    const { seg, off } = arena.allocate(1 << 20);
    arena.segment(seg).fill(i, off, off + (1 << 20));
    filled.push({ seg, off, byte: i });
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  for (const { seg, off, byte } of filled) {
    const buf = arena.segment(seg);
    t.is(buf[off], byte);
    t.is(buf[off + (1 << 20) - 1], byte);
  }
  t.is(arena.segmentCount, 3);
  // A value larger than a quarter segment gets a mapping of its own.
  const big = arena.allocate(5 << 20);
  t.is(arena.segment(big.seg).length, 5 << 20);
  arena.release(big.seg, 5 << 20);
  t.is(arena.segmentCount, 3);
});

test('a view closed while its consumer holds a batch ends its walk and leaks no pin', async (t) => {
  const store = new MemoryStore();
  const keys = Array.from({ length: 200 }, (_, i) => Buffer.from(`{s}k${i}`));
  await store.write(
    keys.map((key) => ({ op: 'set', key, value: Buffer.from('a'), expireAtMs: 0 })),
  );
  const view = await store.openView([]);
  const walk = view.batches({ maxRecords: 10, maxBytes: 1 << 20 })[Symbol.asyncIterator]();
  t.false((await walk.next()).done);
  // Replace every key twice while the batch is held: the first replacement is preserved.
  for (const value of ['b', 'c']) {
    await store.write(
      keys.map((key) => ({ op: 'set', key, value: Buffer.from(value), expireAtMs: 0 })),
    );
  }
  view.close();
  t.true((await walk.next()).done, 'the walk stops instead of reading records it no longer holds');
  t.is(store.memoryUsage().records, 200, 'every record the view had pinned is freed');
});

test('an empty key with an empty value keeps its bytes when the rest of its segment dies', async (t) => {
  const store = new MemoryStore();
  const empty = Buffer.alloc(0);
  await store.write([{ op: 'set', key: empty, value: empty, expireAtMs: 0 }]);
  const big = Buffer.alloc(64 << 10, 1);
  const keys = Array.from({ length: 200 }, (_, i) => Buffer.from(`k${i}`));
  await store.write(keys.map((key) => ({ op: 'set', key, value: big, expireAtMs: 0 })));
  await store.write(keys.map((key) => ({ op: 'del', key })));
  const [entry] = await store.read([empty]);
  t.true(entry?.value.type === 'string' && entry.value.value.length === 0);
  t.is((await contentOf(store)).length, 1);
});

test('a staged install refuses records once its store is closed', async (t) => {
  const store = new MemoryStore();
  const staged = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 1,
  });
  await store.close();
  await t.throwsAsync(
    staged.add([
      {
        key: Buffer.from('k'),
        entry: { value: { type: 'string', value: Buffer.from('v') }, expireAtMs: 0 },
      },
    ]),
    { message: /closed/ },
  );
  await staged.abort();
});
