import test, { type ExecutionContext } from 'ava';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  type Db,
  type Snapshot,
  RocksDbError,
  createSstWriter,
  openDb,
} from '../src/store/rocksdb/native';

// The native behaviour the RocksDB store's atomic install relies on.

const b = (s: string): Buffer => Buffer.from(s);

async function openTemp(t: ExecutionContext): Promise<{ db: Db; root: string }> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'shardsnap-ingest-'));
  const db = await openDb(path.join(root, 'db'));
  t.teardown(async () => {
    await db.close();
    await fs.rm(root, { recursive: true, force: true });
  });
  return { db, root };
}

async function dump(db: Db, snapshot?: Snapshot): Promise<string[]> {
  const it = db.iterator({ snapshot });
  const out: string[] = [];
  for (;;) {
    const batch = await it.next(1000, 1 << 20);
    batch.keys.forEach((key, i) =>
      out.push(`${key.toString()}=${(batch.values[i] as Buffer).toString()}`),
    );
    if (batch.done) break;
  }
  await it.close();
  return out;
}

test("an ingested range tombstone deletes older keys of its range but not the file's own keys", async (t) => {
  const { db, root } = await openTemp(t);
  await db.write([
    { type: 'put', key: b('a1'), value: b('old') },
    { type: 'put', key: b('a2'), value: b('old') },
    { type: 'put', key: b('b1'), value: b('outside') },
    { type: 'put', key: b('zmeta'), value: b('old') },
  ]);
  await db.flush(); // older keys both in an SST file...
  await db.write([{ type: 'put', key: b('a3'), value: b('memtable') }]); // ...and in the memtable
  const before = db.getSnapshot();

  const file = path.join(root, 'install.sst');
  const writer = await createSstWriter(file);
  // Tombstones may be added before, between or after the puts.
  writer.deleteRange(b('a'), b('b'));
  await writer.putBatch([b('a2'), b('a4')], [b('new'), b('new')]);
  writer.deleteRange(b('a0'), b('a9'));
  writer.put(b('zmeta'), b('new'));
  t.is((await writer.finish()).entries, 3);
  await db.ingest([file], { moveFiles: true, snapshotConsistency: true, allowGlobalSeqNo: true });

  const expected = ['a2=new', 'a4=new', 'b1=outside', 'zmeta=new'];
  t.deepEqual(await dump(db), expected);
  t.deepEqual(await dump(db, before), [
    'a1=old',
    'a2=old',
    'a3=memtable',
    'b1=outside',
    'zmeta=old',
  ]);
  t.deepEqual((await db.multiGet([b('a1'), b('a2'), b('zmeta')])).map(String), [
    'undefined',
    'new',
    'new',
  ]);

  // Still true once compaction has merged the file with the older data, with and without the snapshot.
  await db.compactRange();
  t.deepEqual(await dump(db), expected);
  t.deepEqual(await dump(db, before), [
    'a1=old',
    'a2=old',
    'a3=memtable',
    'b1=outside',
    'zmeta=old',
  ]);
  before.release();
  await db.compactRange();
  t.deepEqual(await dump(db), expected);
});

test('a file of only range tombstones and one put can be ingested', async (t) => {
  const { db, root } = await openTemp(t);
  await db.write([{ type: 'put', key: b('a1'), value: b('old') }]);
  const file = path.join(root, 'empty.sst');
  const writer = await createSstWriter(file);
  writer.deleteRange(b('a'), b('b'));
  writer.put(b('seq'), b('1'));
  await writer.finish();
  await db.ingest([file], { moveFiles: true });
  t.deepEqual(await dump(db), ['seq=1']);
});

test('deleteRange on a finished writer fails with Closed', async (t) => {
  const { root } = await openTemp(t);
  const writer = await createSstWriter(path.join(root, 'x.sst'));
  writer.put(b('a'), b('1'));
  await writer.finish();
  t.throws(() => writer.deleteRange(b('a'), b('b')), { instanceOf: RocksDbError, code: 'Closed' });
});

test('multiGet reads many keys at one point in time', async (t) => {
  const { db } = await openTemp(t);
  await db.write([
    { type: 'put', key: b('k1'), value: b('1') },
    { type: 'put', key: b('k2'), value: Buffer.alloc(0) },
  ]);
  const snapshot = db.getSnapshot();
  await db.write([
    { type: 'del', key: b('k1') },
    { type: 'put', key: b('k3'), value: b('3') },
  ]);
  const keys = [b('k1'), b('k2'), b('k3'), b('k1')];
  t.deepEqual(await db.multiGet(keys), [undefined, Buffer.alloc(0), b('3'), undefined]);
  t.deepEqual(await db.multiGet(keys, snapshot), [b('1'), Buffer.alloc(0), undefined, b('1')]);
  t.deepEqual(await db.multiGet([]), []);
  snapshot.release();
  await t.throwsAsync(db.multiGet(keys, snapshot), { instanceOf: RocksDbError, code: 'Closed' });
  await t.throwsAsync(db.multiGet(['k1' as unknown as Buffer]), { instanceOf: TypeError });
  await db.close();
  await t.throwsAsync(db.multiGet(keys), { instanceOf: RocksDbError, code: 'Closed' });
});
