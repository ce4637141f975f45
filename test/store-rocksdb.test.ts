import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type Entry,
  type SlotRange,
  type StoreRecord,
  isShardsnapError,
  slotOf,
} from '../src/core';
import { RocksDbStore, type RocksDbStoreOptions, digestStore, openStore } from '../src/store';
import { RocksDbError } from '../src/store/rocksdb/native';
import { runStoreSuite } from './helpers/store-suite';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'shardsnap-rocksdb-store-'));
}

runStoreSuite({
  test,
  name: 'rocksdb',
  factory: async () => {
    const dir = await tempDir();
    const store = await RocksDbStore.open(dir);
    return { store, cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
  },
});

const b = (s: string): Buffer => Buffer.from(s);
const str = (entry: Entry | undefined): string | undefined =>
  entry?.value.type === 'string' ? entry.value.value.toString() : undefined;
const stringRecord = (key: Buffer, value: string): StoreRecord => ({
  key,
  entry: { value: { type: 'string', value: b(value) }, expireAtMs: 0 },
});
/** Records in the order a view yields them: ascending slot. */
const bySlot = (records: StoreRecord[]): StoreRecord[] =>
  records.sort((x, y) => slotOf(x.key) - slotOf(y.key));

async function open(
  t: ExecutionContext,
  options: RocksDbStoreOptions = {},
): Promise<{ store: RocksDbStore; dir: string; reopen: () => Promise<RocksDbStore> }> {
  const dir = await tempDir();
  let store = await RocksDbStore.open(dir, options);
  t.teardown(async () => {
    await store.close();
    await fs.rm(dir, { recursive: true, force: true });
  });
  return {
    store,
    dir,
    reopen: async () => {
      await store.close();
      store = await RocksDbStore.open(dir, options);
      return store;
    },
  };
}

/** Key count and payload bytes per slot, computed by walking the whole store. */
async function countByWalking(
  store: RocksDbStore,
): Promise<{ keyCount: number; dataBytes: number }> {
  const view = await store.openView([]);
  let keyCount = 0;
  let dataBytes = 0;
  const { valueBytes } = await import('../src/core');
  for await (const batch of view.batches({ maxRecords: 1000, maxBytes: 1 << 20 })) {
    for (const r of batch) {
      keyCount++;
      dataBytes += r.key.length + valueBytes(r.entry.value);
    }
  }
  view.close();
  return { keyCount, dataBytes };
}

async function assertCountersExact(
  t: ExecutionContext,
  store: RocksDbStore,
  label: string,
): Promise<void> {
  const stats = await store.stats();
  const walked = await countByWalking(store);
  t.is(stats.keyCount, walked.keyCount, `${label}: keyCount`);
  t.is(stats.dataBytes, walked.dataBytes, `${label}: dataBytes`);
}

test('the registry opens a rocksdb store in <dataDir>/db', async (t) => {
  const dir = await tempDir();
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const store = await openStore('rocksdb', { dataDir: dir });
  t.is(store.backend, 'rocksdb');
  await store.write([{ op: 'set', key: b('k'), value: b('v'), expireAtMs: 0 }]);
  await store.close();
  t.true((await fs.readdir(path.join(dir, 'db'))).includes('CURRENT'));
});

test('a reopened store has the same data and seq', async (t) => {
  const { store, reopen } = await open(t);
  await store.write([
    { op: 'set', key: b('s'), value: b('v'), expireAtMs: 0 },
    { op: 'hset', key: b('h'), fields: [{ field: b('f'), value: b('1') }] },
    { op: 'zadd', key: b('z'), members: [{ member: b('m'), score: 2.5 }] },
  ]);
  await store.write([{ op: 'rpush', key: b('l'), values: [b('a'), b('b')] }]);
  const before = await store.stats();
  const digest = await digestStore(store, []);
  const again = await reopen();
  const after = await again.stats();
  t.is(after.seq, before.seq);
  t.is(after.keyCount, 4);
  t.is(after.dataBytes, before.dataBytes);
  t.is((await digestStore(again, [])).digest, digest.digest);
  t.is(str((await again.read([b('s')]))[0]), 'v');
  t.is((await again.write([{ op: 'del', key: b('s') }])).seq, before.seq + 1);
});

test('a full install adopts the snapshot seq, which survives a restart', async (t) => {
  const { store, reopen } = await open(t);
  await store.write([{ op: 'set', key: b('old'), value: b('1'), expireAtMs: 0 }]);
  const staged = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 1234,
  });
  await staged.add([stringRecord(b('new'), 'x')]);
  t.is((await staged.commit()).seq, 1234);
  const again = await reopen();
  t.is((await again.stats()).seq, 1234);
  t.is((await again.stats()).keyCount, 1);
  t.is((await again.write([{ op: 'del', key: b('new') }])).seq, 1235);
});

test('per-slot counters are exact after writes, deletes, expiries and installs, and after a restart', async (t) => {
  let now = 1_000_000;
  const { store, reopen } = await open(t, { now: () => now });
  const keys = Array.from({ length: 400 }, (_, i) => b(`key:${i}`));
  await store.write(
    keys.map((key, i) => ({ op: 'set', key, value: b('x'.repeat(i % 17)), expireAtMs: 0 })),
  );
  await assertCountersExact(t, store, 'after sets');
  t.is((await store.stats()).keyCount, 400);

  await store.write([
    { op: 'del', key: keys[0] as Buffer },
    { op: 'del', key: b('never-existed') },
    {
      op: 'set',
      key: keys[1] as Buffer,
      value: b('a much longer value than before'),
      expireAtMs: 0,
    },
    {
      op: 'hset',
      key: b('h'),
      fields: [
        { field: b('f1'), value: b('1') },
        { field: b('f2'), value: b('22') },
      ],
    },
    { op: 'hset', key: b('h'), fields: [{ field: b('f1'), value: b('111') }] },
    { op: 'sadd', key: b('s'), members: [b('a'), b('b'), b('a')] },
    { op: 'zadd', key: b('z'), members: [{ member: b('m'), score: 1 }] },
    { op: 'lpush', key: b('l'), values: [b('1'), b('22')] },
    { op: 'rpush', key: b('l'), values: [b('333')] },
  ]);
  await assertCountersExact(t, store, 'after mixed');
  t.is((await store.stats()).keyCount, 403);

  // Expiry: expired keys stay counted until a write touches them, as in the memory store.
  await store.write([{ op: 'expire', key: keys[2] as Buffer, expireAtMs: now + 10 }]);
  await store.write([{ op: 'set', key: keys[3] as Buffer, value: b('gone'), expireAtMs: now - 1 }]);
  t.is((await store.stats()).keyCount, 402, 'a set that is already expired removes the key');
  now += 100;
  t.is((await store.read([keys[2] as Buffer]))[0], undefined);
  t.is((await store.stats()).keyCount, 402);
  await store.write([{ op: 'expire', key: keys[2] as Buffer, expireAtMs: 0 }]);
  t.is((await store.stats()).keyCount, 401, 'touching an expired key removes it');
  await assertCountersExact(t, store, 'after expiry');

  // Slot-range install.
  const range = { start: 0, end: 8191 };
  const incoming = bySlot(
    Array.from({ length: 150 }, (_, i) => stringRecord(b(`in:${i}`), 'y'.repeat(i % 5))).filter(
      (r) => slotOf(r.key) <= range.end,
    ),
  );
  const staged = await store.beginInstall({ slots: [range], full: false, seq: 1 });
  await staged.add(incoming);
  await staged.commit();
  await assertCountersExact(t, store, 'after range install');
  const outside = [...keys, b('h'), b('s'), b('z'), b('l')].filter((k) => slotOf(k) > range.end);
  const outsideAlive = (await store.read(outside)).filter((e) => e !== undefined).length;
  t.is((await store.stats()).keyCount, incoming.length + outsideAlive);

  // Full install, then restart: the loaded counters equal the persisted ones.
  const full = await store.beginInstall({ slots: [{ start: 0, end: 16383 }], full: true, seq: 99 });
  await full.add(bySlot(Array.from({ length: 50 }, (_, i) => stringRecord(b(`f:${i}`), 'zz'))));
  await full.commit();
  await assertCountersExact(t, store, 'after full install');
  t.is((await store.stats()).keyCount, 50);
  const again = await reopen();
  await assertCountersExact(t, again, 'after restart');
  t.is((await again.stats()).keyCount, 50);
  t.is((await again.stats()).dataBytes, 10 * (3 + 2) + 40 * (4 + 2));
});

test('a view opened before an install commit keeps its snapshot', async (t) => {
  const { store } = await open(t);
  const keys = Array.from({ length: 100 }, (_, i) => b(`k${i}`));
  await store.write(keys.map((key) => ({ op: 'set', key, value: b('old'), expireAtMs: 0 })));
  const seqBefore = (await store.stats()).seq;
  const view = await store.openView([]);
  const rangeView = await store.openView([{ start: 0, end: 8191 }]);
  t.is(view.seq, seqBefore);
  t.is(view.keyCountHint, 100);
  t.is(rangeView.keyCountHint, keys.filter((k) => slotOf(k) <= 8191).length);
  t.is((await store.stats()).openViews, 2);

  const staged = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 500,
  });
  await staged.add(bySlot(Array.from({ length: 10 }, (_, i) => stringRecord(b(`new${i}`), 'new'))));
  await staged.commit();
  t.is((await store.stats()).keyCount, 10);
  t.is((await store.read([keys[0] as Buffer]))[0], undefined);

  const seen = new Map<string, string>();
  for await (const batch of view.batches({ maxRecords: 7, maxBytes: 1 << 20 })) {
    for (const r of batch) seen.set(r.key.toString(), str(r.entry) ?? '');
  }
  t.is(seen.size, 100);
  t.true([...seen.values()].every((v) => v === 'old'));
  rangeView.close();
  view.close();
  t.is((await store.stats()).openViews, 0);

  const after = await store.openView([]);
  t.is(after.seq, 500);
  t.is(after.keyCountHint, 10);
  after.close();
});

test('staging files are removed after commit, abort and a failed add', async (t) => {
  const { store, dir } = await open(t);
  const staging = path.join(dir, 'staging');
  const listStaging = async (): Promise<string[]> => fs.readdir(staging).catch(() => []);
  const range = { start: 0, end: 16383 };

  const committed = await store.beginInstall({ slots: [range], full: true, seq: 7 });
  await committed.add([stringRecord(b('a'), '1')]);
  t.is((await listStaging()).length, 1, 'an open install has its staging dir');
  await committed.commit();
  t.deepEqual(await listStaging(), []);

  const aborted = await store.beginInstall({ slots: [range], full: false, seq: 1 });
  await aborted.add([stringRecord(b('b'), '2')]);
  await aborted.abort();
  await aborted.abort();
  t.deepEqual(await listStaging(), []);
  t.is((await store.read([b('b')]))[0], undefined);

  const key = b('somekey');
  const failing = await store.beginInstall({
    slots: [{ start: slotOf(key) + 1, end: 16383 }],
    full: false,
    seq: 1,
  });
  const outside = await t.throwsAsync(failing.add([stringRecord(key, 'x')]));
  t.true(isShardsnapError(outside, 'data_loss'));
  t.deepEqual(await listStaging(), []);
  await t.throwsAsync(failing.commit());
  await failing.abort();

  const duplicate = await store.beginInstall({ slots: [range], full: false, seq: 1 });
  const dupError = await t.throwsAsync(
    (async () => {
      await duplicate.add([stringRecord(b('dup'), '1'), stringRecord(b('dup'), '2')]);
      await duplicate.commit();
    })(),
  );
  t.true(isShardsnapError(dupError, 'data_loss'));
  t.deepEqual(await listStaging(), []);
  t.is(str((await store.read([b('a')]))[0]), '1', 'failed installs left the store as it was');
  t.is((await store.stats()).seq, 7);
});

test('records unsorted within a slot are installed; a full install of nothing empties the store', async (t) => {
  const { store } = await open(t);
  // Keys sharing a hash tag share a slot; give them in descending order.
  const records = Array.from({ length: 50 }, (_, i) =>
    stringRecord(b(`{tag}:${String(49 - i).padStart(2, '0')}`), `${i}`),
  );
  const staged = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 3,
  });
  await staged.add(records.slice(0, 20));
  await staged.add(records.slice(20));
  t.is(staged.recordCount, 50);
  t.is((await staged.commit()).keysInstalled, 50);
  t.is((await store.stats()).keyCount, 50);
  t.is(str((await store.read([b('{tag}:00')]))[0]), '49');

  const empty = await store.beginInstall({ slots: [{ start: 0, end: 16383 }], full: true, seq: 4 });
  t.deepEqual(await empty.commit(), { seq: 4, keysInstalled: 0 });
  t.is((await store.stats()).keyCount, 0);
  t.is((await store.stats()).dataBytes, 0);
});

test('a slot-range install into several ranges leaves the slots between them alone', async (t) => {
  const { store } = await open(t);
  const keys = Array.from({ length: 300 }, (_, i) => b(`key:${i}`));
  await store.write(keys.map((key) => ({ op: 'set', key, value: b('before'), expireAtMs: 0 })));
  const ranges: SlotRange[] = [
    { start: 100, end: 3000 },
    { start: 9000, end: 16383 },
  ];
  const inRanges = (k: Buffer): boolean =>
    ranges.some((r) => slotOf(k) >= r.start && slotOf(k) <= r.end);
  const staged = await store.beginInstall({ slots: ranges, full: false, seq: 1 });
  await staged.add(bySlot(keys.filter(inRanges).map((key) => stringRecord(key, 'after'))));
  await staged.commit();
  for (const [i, entry] of (await store.read(keys)).entries()) {
    t.is(str(entry), inRanges(keys[i] as Buffer) ? 'after' : 'before');
  }
  await assertCountersExact(t, store, 'after multi-range install');
});

test('a view honours its abort signal and releases its snapshot when abandoned', async (t) => {
  const { store } = await open(t);
  await store.write(
    Array.from({ length: 100 }, (_, i) => ({
      op: 'set' as const,
      key: b(`k${i}`),
      value: b('v'),
      expireAtMs: 0,
    })),
  );
  const controller = new AbortController();
  const view = await store.openView([]);
  const error = await t.throwsAsync(
    (async () => {
      for await (const batch of view.batches({
        maxRecords: 10,
        maxBytes: 1 << 20,
        signal: controller.signal,
      })) {
        t.is(batch.length, 10);
        controller.abort();
      }
    })(),
  );
  t.true(isShardsnapError(error, 'cancelled'));
  t.is((await store.stats()).openViews, 0);

  const early = await store.openView([]);
  for await (const batch of early.batches({ maxRecords: 10, maxBytes: 1 << 20 })) {
    t.is(batch.length, 10);
    break;
  }
  t.is((await store.stats()).openViews, 0);
});

test('a closed store fails with unavailable; close is idempotent', async (t) => {
  const { store } = await open(t);
  const view = await store.openView([]);
  await store.close();
  await store.close();
  await t.throwsAsync(view.batches({ maxRecords: 1, maxBytes: 1 }).next());
  for (const call of [
    () => store.stats(),
    () => store.write([{ op: 'del', key: b('k') }]),
    () => store.read([b('k')]),
    () => store.openView([]),
    () => store.beginInstall({ slots: [], full: true, seq: 1 }),
  ]) {
    const error = await t.throwsAsync(call());
    t.true(isShardsnapError(error, 'unavailable'), String(error));
  }
});

test('a store on an unwritable data dir fails with a ShardsnapError', async (t) => {
  const dir = await tempDir();
  t.teardown(async () => {
    await fs.chmod(dir, 0o700).catch(() => undefined);
    await fs.rm(dir, { recursive: true, force: true });
  });
  // A path under a regular file cannot be created even by root.
  const file = path.join(dir, 'file');
  await fs.writeFile(file, 'x');
  const underFile = await t.throwsAsync(RocksDbStore.open(path.join(file, 'data')));
  t.true(isShardsnapError(underFile, 'failed_precondition'), String(underFile));
  t.regex(underFile?.message ?? '', /op=open/);

  // A db dir whose files cannot be written: RocksDB fails to open; the error says where.
  const dataDir = path.join(dir, 'ro');
  await (await RocksDbStore.open(dataDir)).close();
  const dbDir = path.join(dataDir, 'db');
  const lock = path.join(dbDir, 'LOCK');
  await fs.rm(lock, { force: true });
  await fs.mkdir(lock); // LOCK as a directory cannot be opened for writing, root or not
  const error = await t.throwsAsync(RocksDbStore.open(dataDir));
  t.true(isShardsnapError(error), String(error));
  t.regex(error?.message ?? '', /op=open/);
  t.true(error?.cause instanceof RocksDbError);
});

test('an existing RocksDB database that is not a shardsnap store is refused', async (t) => {
  const dir = await tempDir();
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  const { openDb } = await import('../src/store/rocksdb/native');
  const db = await openDb(path.join(dir, 'db'));
  await db.write([{ type: 'put', key: b('foreign'), value: b('1') }]);
  await db.close();
  const error = await t.throwsAsync(RocksDbStore.open(dir));
  t.true(isShardsnapError(error, 'failed_precondition'), String(error));
});

test('records in any slot order are sorted on disk; duplicates are found across batches', async (t) => {
  const { store, dir } = await open(t);
  const keys = Array.from({ length: 3000 }, (_, i) => b(`k:${i}`)); // insertion order: random slots
  const staged = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 10,
  });
  for (let i = 0; i < keys.length; i += 250) {
    await staged.add(keys.slice(i, i + 250).map((key) => stringRecord(key, key.toString())));
  }
  const sortDirs = (await fs.readdir(path.join(dir, 'staging'))).length;
  t.is(sortDirs, 1);
  const result = await staged.commit();
  t.deepEqual(result, { seq: 10, keysInstalled: 3000 });
  await assertCountersExact(t, store, 'after unordered install');
  for (const [i, entry] of (await store.read(keys)).entries())
    t.is(str(entry), (keys[i] as Buffer).toString());
  t.deepEqual(await fs.readdir(path.join(dir, 'staging')), []);

  const again = await store.beginInstall({
    slots: [{ start: 0, end: 16383 }],
    full: true,
    seq: 11,
  });
  await again.add(keys.slice(0, 100).map((key) => stringRecord(key, 'x')));
  const error = await t.throwsAsync(again.add([stringRecord(keys[5] as Buffer, 'y')]));
  t.true(isShardsnapError(error, 'data_loss'), String(error));
  t.regex(error?.message ?? '', /duplicate key "k:5"/);
  t.deepEqual(await fs.readdir(path.join(dir, 'staging')), []);
  t.is((await store.stats()).seq, 10);
});

test('write errors name the operation and keep the RocksDB error as cause', async (t) => {
  const { store } = await open(t);
  // Force a RocksDB failure under the store: close its db behind its back.
  const db = (store as unknown as { db: { close(): Promise<void> } }).db;
  await db.close();
  const error = await t.throwsAsync(
    store.write([{ op: 'set', key: b('k'), value: b('v'), expireAtMs: 0 }]),
  );
  t.true(isShardsnapError(error, 'unavailable'), String(error));
  t.regex(error?.message ?? '', /\[op=write, mutations=1, key="k"\]/);
  t.true(error?.cause instanceof RocksDbError);
  const readError = await t.throwsAsync(store.read([b('k')]));
  t.regex(readError?.message ?? '', /op=read/);
});

test('close lets accepted writes finish; a view closed mid-walk fails instead of ending early', async (t) => {
  const { store, reopen } = await open(t);
  await store.write(
    Array.from({ length: 50 }, (_, i) => ({
      op: 'set' as const,
      key: b(`k${i}`),
      value: b('v'),
      expireAtMs: 0,
    })),
  );
  const view = await store.openView([]);
  const walk = view.batches({ maxRecords: 5, maxBytes: 1 << 20 });
  const first = await walk.next();
  t.is(first.done ? 0 : first.value.length, 5);
  view.close();
  const error = await t.throwsAsync(walk.next());
  t.true(isShardsnapError(error, 'cancelled'), String(error));

  const writes = Array.from({ length: 20 }, (_, i) =>
    store.write([{ op: 'set', key: b(`late${i}`), value: b('x'), expireAtMs: 0 }]),
  );
  const closing = store.close();
  const seqs = (await Promise.all(writes)).map((r) => r.seq);
  await closing;
  t.deepEqual(
    seqs,
    Array.from({ length: 20 }, (_, i) => 2 + i),
  );
  const again = await reopen();
  t.is((await again.stats()).seq, 21);
  t.is((await again.stats()).keyCount, 70);
});

test('a full install needs a seq that is a non-negative integer', async (t) => {
  const { store } = await open(t);
  for (const seq of [-1, 1.5, Number.NaN]) {
    const error = await t.throwsAsync(store.beginInstall({ slots: [], full: true, seq }));
    t.true(isShardsnapError(error, 'invalid_argument'), String(error));
  }
});
