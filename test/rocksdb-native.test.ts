import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

import {
  createSstWriter,
  openDb,
  RocksDbError,
  supportedCompressions,
  type Db,
  type DbIterator,
  type OpenOptions,
  type WriteOp,
} from '../src/store/rocksdb/native';

const b = (text: string): Buffer => Buffer.from(text);
const put = (key: string, value: string): WriteOp => ({
  type: 'put',
  key: b(key),
  value: b(value),
});
const del = (key: string): WriteOp => ({ type: 'del', key: b(key) });
const pad = (n: number): string => String(n).padStart(2, '0');

async function tempDir(t: ExecutionContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'shardsnap-rocksdb-'));
  t.teardown(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

// Teardowns run last-registered-first, so the db closes before its dir is removed.
async function openTemp(
  t: ExecutionContext,
  options: OpenOptions = {},
): Promise<{ db: Db; root: string; dbDir: string }> {
  const root = await tempDir(t);
  const dbDir = path.join(root, 'db');
  const db = await openDb(dbDir, options);
  t.teardown(() => db.close());
  return { db, root, dbDir };
}

async function drain(
  it: DbIterator,
  maxEntries: number,
  maxBytes: number,
): Promise<{ keys: string[]; values: string[]; sizes: number[] }> {
  const keys: string[] = [];
  const values: string[] = [];
  const sizes: number[] = [];
  for (;;) {
    const batch = await it.next(maxEntries, maxBytes);
    sizes.push(batch.keys.length);
    keys.push(...batch.keys.map(String));
    values.push(...batch.values.map(String));
    if (batch.done) return { keys, values, sizes };
  }
}

const collectGarbage: () => void = (() => {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
})();

// Native finalizers run some time after the collection that found the objects
// dead, so poll rather than assume a fixed number of turns.
async function collectUntil(done: () => boolean): Promise<boolean> {
  for (let i = 0; i < 50 && !done(); i++) {
    collectGarbage();
    await delay(10);
  }
  return done();
}

test('put, get, del and delRange', async (t) => {
  const { db } = await openTemp(t);
  await db.write([put('a', '1'), put('b', '2'), put('c', '3'), put('d', '4')]);
  t.is((await db.get(b('a')))?.toString(), '1');
  t.is(await db.get(b('missing')), undefined);

  await db.write([del('a')]);
  t.is(await db.get(b('a')), undefined);

  await db.write([{ type: 'delRange', start: b('b'), end: b('d') }]);
  t.is(await db.get(b('b')), undefined);
  t.is(await db.get(b('c')), undefined);
  t.is((await db.get(b('d')))?.toString(), '4');

  const binaryKey = Buffer.from([0, 255, 0]);
  await db.write([{ type: 'put', key: binaryKey, value: Buffer.alloc(0) }], { sync: true });
  t.deepEqual(await db.get(binaryKey), Buffer.alloc(0));
});

test('write batches are atomic and return increasing sequence numbers', async (t) => {
  const { db } = await openTemp(t);
  const start = db.latestSequence();
  const first = await db.write([put('x1', 'a'), put('x2', 'b'), put('x3', 'c')]);
  t.is(first, start + 3);
  t.is(db.latestSequence(), first);

  const before = db.getSnapshot();
  t.is(before.sequence, first);
  const second = await db.write([del('x1'), put('x4', 'd')]);
  t.true(second > first);
  t.is((await db.get(b('x1'), before))?.toString(), 'a');
  t.is(await db.get(b('x4'), before), undefined);
  t.is(await db.get(b('x1')), undefined);
  t.is((await db.get(b('x4')))?.toString(), 'd');
  before.release();

  const malformed = [put('y1', 'never'), { type: 'bogus', key: b('y2') }] as unknown as WriteOp[];
  await t.throwsAsync(db.write(malformed), { instanceOf: TypeError });
  t.is(await db.get(b('y1')), undefined);
  t.is(db.latestSequence(), second);
});

test('iterator honours bounds, batch limits and snapshot isolation', async (t) => {
  const { db } = await openTemp(t);
  await db.write(Array.from({ length: 20 }, (_, i) => put(`k${pad(i)}`, `v${pad(i)}`)));

  const snapshot = db.getSnapshot();
  await db.write([put('k05', 'changed'), del('k06'), put('k07a', 'new')]);

  const pinned = db.iterator({ gte: b('k03'), lt: b('k10'), snapshot, fillCache: false });
  // The iterator pins the snapshot, so releasing it early must not affect the scan.
  snapshot.release();
  t.true(snapshot.released);
  const isolated = await drain(pinned, 3, 1 << 20);
  t.deepEqual(isolated.keys, ['k03', 'k04', 'k05', 'k06', 'k07', 'k08', 'k09']);
  t.deepEqual(isolated.values, ['v03', 'v04', 'v05', 'v06', 'v07', 'v08', 'v09']);
  t.deepEqual(isolated.sizes, [3, 3, 1]);
  const exhausted = await pinned.next(10, 1024);
  t.deepEqual(exhausted, { keys: [], values: [], done: true });
  await pinned.close();

  const live = db.iterator({ gte: b('k05'), lt: b('k08') });
  const current = await drain(live, 100, 1 << 20);
  t.deepEqual(current.keys, ['k05', 'k07', 'k07a']);
  t.deepEqual(current.values, ['changed', 'v07', 'new']);
  await live.close();

  // Each entry is 6 bytes: the byte budget caps the batch, but a batch always
  // makes progress even when one entry exceeds it.
  const budget = db.iterator({ lt: b('k03') });
  t.deepEqual((await budget.next(100, 13)).keys.map(String), ['k00', 'k01']);
  const oversized = await budget.next(100, 1);
  t.deepEqual(oversized.keys.map(String), ['k02']);
  t.true(oversized.done);
  await budget.close();
});

test('checkpoint contains the data and its sequence and opens as a db', async (t) => {
  const { db, root } = await openTemp(t);
  await db.write([put('a', '1'), put('b', '2')]);
  const sequence = db.latestSequence();
  const checkpointDir = path.join(root, 'checkpoint');

  const info = await db.createCheckpoint(checkpointDir);
  t.is(info.sequence, sequence);
  await db.write([put('after', 'x')]);

  const copy = await openDb(checkpointDir, { createIfMissing: false });
  t.teardown(() => copy.close());
  t.is(copy.latestSequence(), sequence);
  t.is((await copy.get(b('a')))?.toString(), '1');
  t.is((await copy.get(b('b')))?.toString(), '2');
  t.is(await copy.get(b('after')), undefined);

  await t.throwsAsync(db.createCheckpoint(checkpointDir), { instanceOf: RocksDbError });
});

test('liveFiles, properties and compaction after a flush', async (t) => {
  const { db, dbDir } = await openTemp(t);
  const first = db.latestSequence() + 1;
  await db.write(
    Array.from({ length: 100 }, (_, i) => put(`key${String(i).padStart(3, '0')}`, 'v')),
  );
  const last = db.latestSequence();
  await db.flush();

  const files = await db.liveFiles();
  t.is(files.length, 1);
  const [file] = files;
  if (file === undefined) return;
  t.regex(file.name, /^\d+\.sst$/);
  t.is(path.resolve(file.directory), path.resolve(dbDir));
  t.is(file.level, 0);
  t.true(file.size > 0);
  t.is(file.smallestKey.toString(), 'key000');
  t.is(file.largestKey.toString(), 'key099');
  t.is(file.smallestSeq, first);
  t.is(file.largestSeq, last);
  const stat = await fs.stat(path.join(file.directory, file.name));
  t.is(stat.size, file.size);

  t.is(db.getProperty('rocksdb.num-files-at-level0'), '1');
  t.is(db.getIntProperty('rocksdb.estimate-num-keys'), 100);
  t.is(db.getProperty('rocksdb.no-such-property'), undefined);
  t.is(db.getIntProperty('rocksdb.no-such-property'), undefined);

  await db.compactRange();
  await db.compactRange(b('key010'), b('key020'));
  t.is(db.getProperty('rocksdb.num-files-at-level0'), '0');
  t.is((await db.get(b('key050')))?.toString(), 'v');
});

test('sst writer output is visible after ingest; out-of-order keys error', async (t) => {
  const { db, root } = await openTemp(t);
  await db.write([put('s02', 'old')]);
  const sstPath = path.join(root, 'ingest.sst');

  const writer = await createSstWriter(sstPath, { compression: 'none' });
  writer.put(b('s01'), b('one'));
  t.throws(() => writer.put(b('s00'), b('zero')), {
    instanceOf: RocksDbError,
    code: 'InvalidArgument',
  });
  await writer.putBatch([b('s02'), b('s03')], [b('two'), b('three')]);
  await t.throwsAsync(writer.putBatch([b('s03')], [b('dup')]), {
    instanceOf: RocksDbError,
    code: 'InvalidArgument',
  });
  const info = await writer.finish();
  t.is(info.entries, 3);
  t.true(info.fileSize > 0);
  await t.throwsAsync(writer.finish(), { code: 'Closed' });
  t.throws(() => writer.put(b('s09'), b('late')), { code: 'Closed' });
  await writer.abandon();
  t.is((await fs.stat(sstPath)).size, info.fileSize);

  const before = db.latestSequence();
  await db.ingest([sstPath], { moveFiles: false });
  t.is((await db.get(b('s01')))?.toString(), 'one');
  t.is((await db.get(b('s02')))?.toString(), 'two');
  t.is((await db.get(b('s03')))?.toString(), 'three');
  t.true(db.latestSequence() > before);
  const iterated = await drain(db.iterator({ gte: b('s'), lt: b('t') }), 10, 1 << 20);
  t.deepEqual(iterated.keys, ['s01', 's02', 's03']);

  await t.throwsAsync(db.ingest([path.join(root, 'missing.sst')]), { instanceOf: RocksDbError });
});

test('an abandoned sst writer removes its partial file', async (t) => {
  const root = await tempDir(t);
  const sstPath = path.join(root, 'partial.sst');
  const writer = await createSstWriter(sstPath);
  writer.put(b('a'), b('1'));
  await writer.abandon();
  await writer.abandon();
  await t.throwsAsync(fs.stat(sstPath), { code: 'ENOENT' });
  t.throws(() => writer.put(b('b'), b('2')), { instanceOf: RocksDbError, code: 'Closed' });

  const empty = await createSstWriter(path.join(root, 'empty.sst'));
  await t.throwsAsync(empty.finish(), { instanceOf: RocksDbError, code: 'InvalidArgument' });
  await empty.abandon();
});

test('a read-only db rejects writes with a RocksDbError', async (t) => {
  const root = await tempDir(t);
  const dbDir = path.join(root, 'db');
  const writable = await openDb(dbDir);
  await writable.write([put('a', '1')]);
  await writable.close();

  const readOnly = await openDb(dbDir, { readOnly: true });
  t.teardown(() => readOnly.close());
  t.is((await readOnly.get(b('a')))?.toString(), '1');
  const error = await t.throwsAsync(readOnly.write([put('b', '2')]), { instanceOf: RocksDbError });
  t.is(error?.code, 'NotSupported');
  t.truthy(error?.message);
  await t.throwsAsync(readOnly.flush(), { instanceOf: RocksDbError });
  t.is(await readOnly.get(b('b')), undefined);

  await t.throwsAsync(openDb(path.join(root, 'absent'), { createIfMissing: false }), {
    instanceOf: RocksDbError,
    code: 'InvalidArgument',
  });
});

test('every operation on a closed db fails with code Closed', async (t) => {
  const { db, root } = await openTemp(t);
  await db.write([put('a', '1')]);
  await db.close();
  t.true(db.closed);

  const closed = { instanceOf: RocksDbError, code: 'Closed' } as const;
  await t.throwsAsync(db.get(b('a')), closed);
  await t.throwsAsync(db.write([put('b', '2')]), closed);
  await t.throwsAsync(db.flush(), closed);
  await t.throwsAsync(db.compactRange(), closed);
  await t.throwsAsync(db.liveFiles(), closed);
  await t.throwsAsync(db.createCheckpoint(path.join(root, 'cp')), closed);
  await t.throwsAsync(db.ingest([path.join(root, 'x.sst')]), closed);
  t.throws(() => db.latestSequence(), closed);
  t.throws(() => db.getSnapshot(), closed);
  t.throws(() => db.iterator(), closed);
  t.throws(() => db.getProperty('rocksdb.stats'), closed);
  await t.notThrowsAsync(db.close());
});

test('closing a db with open iterators, snapshots and in-flight reads', async (t) => {
  const { db } = await openTemp(t);
  await db.write([put('a', '1'), put('b', '2'), put('c', '3')]);
  const snapshot = db.getSnapshot();
  const iterator = db.iterator({ snapshot });
  const untouched = db.iterator({ gte: b('b') });
  t.deepEqual((await iterator.next(1, 1024)).keys.map(String), ['a']);

  // Operations already issued finish before the close takes effect.
  const pendingGet = db.get(b('a'), snapshot);
  const pendingNext = iterator.next(1, 1024);
  const closing = db.close();
  t.is((await pendingGet)?.toString(), '1');
  t.deepEqual((await pendingNext).keys.map(String), ['b']);
  await closing;

  t.true(snapshot.released);
  t.notThrows(() => snapshot.release());
  await t.throwsAsync(iterator.next(1, 1024), { instanceOf: RocksDbError, code: 'Closed' });
  await t.notThrowsAsync(iterator.close());
  await t.notThrowsAsync(untouched.close());
});

test('released snapshots, closed iterators and overlapping next calls', async (t) => {
  const { db } = await openTemp(t);
  await db.write([put('a', '1'), put('b', '2')]);

  const snapshot = db.getSnapshot();
  snapshot.release();
  snapshot.release();
  await t.throwsAsync(db.get(b('a'), snapshot), { instanceOf: RocksDbError, code: 'Closed' });
  t.throws(() => db.iterator({ snapshot }), { instanceOf: RocksDbError, code: 'Closed' });
  t.is(db.getIntProperty('rocksdb.num-snapshots'), 0);

  const iterator = db.iterator();
  const inFlight = iterator.next(1, 1024);
  await t.throwsAsync(iterator.next(1, 1024), { instanceOf: RocksDbError, code: 'Busy' });
  // close() during a next() waits for it instead of pulling the iterator away.
  const closing = iterator.close();
  t.deepEqual((await inFlight).keys.map(String), ['a']);
  await closing;
  await iterator.close();
  await t.throwsAsync(iterator.next(1, 1024), { instanceOf: RocksDbError, code: 'Closed' });

  await t.throwsAsync(db.get('a' as unknown as Buffer), { instanceOf: TypeError });
  const fresh = db.iterator();
  await t.throwsAsync(fresh.next(0, 1024), { instanceOf: RangeError });
  await fresh.close();
  t.throws(() => db.iterator({ snapshot: {} as never }), { instanceOf: TypeError });
});

test('garbage collection releases forgotten snapshots and iterators', async (t) => {
  const { db } = await openTemp(t);
  await db.write([put('a', '1')]);
  (() => {
    for (let i = 0; i < 10; i++) {
      db.getSnapshot();
      db.iterator({ snapshot: db.getSnapshot() });
    }
  })();
  t.is(db.getIntProperty('rocksdb.num-snapshots'), 20);
  t.true(await collectUntil(() => db.getIntProperty('rocksdb.num-snapshots') === 0));

  // Finalizers that run after the db closed must not touch the freed handle.
  let finalized = 0;
  const registry = new FinalizationRegistry(() => finalized++);
  (() => {
    registry.register(db.getSnapshot(), 0);
    registry.register(db.iterator(), 0);
  })();
  await db.close();
  t.true(await collectUntil(() => finalized === 2));
  t.true(db.closed);
});

test('open options are applied', async (t) => {
  const compressions = supportedCompressions();
  t.true(compressions.includes('none'));
  const compression = compressions.includes('zstd') ? 'zstd' : 'none';
  const { db } = await openTemp(t, {
    compression,
    statistics: true,
    blockCacheSize: 8 << 20,
    bloomBitsPerKey: 12,
    writeBufferSize: 4 << 20,
    maxWriteBufferNumber: 3,
    targetFileSizeBase: 8 << 20,
    maxBackgroundJobs: 2,
  });
  await db.write([put('a', '1')]);
  t.regex(db.getProperty('rocksdb.options-statistics') ?? '', /rocksdb\.block\.cache/);
  t.is(db.getIntProperty('rocksdb.block-cache-capacity'), 8 << 20);

  const root = await tempDir(t);
  await t.throwsAsync(openDb(path.join(root, 'db'), { compression: 'brotli' as never }), {
    instanceOf: TypeError,
  });
  await t.throwsAsync(openDb(path.join(root, 'db'), { writeBufferSize: -1 }), {
    instanceOf: RangeError,
  });
});
