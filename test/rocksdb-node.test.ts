import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { loadSynthetic } from '../src/client';
import { unpackArtifactFile } from '../src/snapshot';
import { startNode, tempDir } from './helpers/nodes';

const run = promisify(execFile);
const FULL = [{ start: 0, end: 16383 }];

async function pulled(
  client: Awaited<ReturnType<typeof startNode>>['client'],
  request: Parameters<typeof client.pull>[0],
) {
  for await (const progress of client.pull(request))
    if (progress.done && progress.result) return progress.result;
  throw new Error('pull ended without a result');
}

test('a full rocksdb snapshot is a checkpoint that installs into an empty rocksdb node', async (t) => {
  const source = await startNode({ backend: 'rocksdb' });
  const target = await startNode({ backend: 'rocksdb' });
  t.teardown(async () => {
    await source.stop();
    await target.stop();
  });
  await loadSynthetic(source.client, { keys: 3000, valueSize: 64, types: 'mixed', seed: 11 });
  const created = await source.client.createSnapshot();
  t.is(created.strategy, 'rocksdb-checkpoint');
  t.is(created.kind, 'files');
  const dir = await tempDir();
  t.teardown(() =>
    import('node:fs/promises').then((fs) => fs.rm(dir, { recursive: true, force: true })),
  );
  const out = join(dir, 'ckpt.snap');
  const fetched = await source.client.fetchToFile({ snapshotId: created.id, out });
  t.is(Number(fetched.info.seq), Number((await source.client.stats()).seq));
  // The checkpoint directory lives only as long as the build.
  t.deepEqual(await readdir(join(source.dataDir, 'checkpoints')).catch(() => []), []);

  const result = await target.client.installFile({ path: out });
  t.is(Number(result.seq), Number(fetched.info.seq));
  t.is(Number(result.keysInstalled), 3000);
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);
  t.is(Number((await target.client.stats()).seq), Number(fetched.info.seq));
  // The installed node keeps working: writes continue from the adopted seq.
  const seq = await target.client.write({
    mutations: [{ op: 'set', key: Buffer.from('after'), value: Buffer.from('1'), expireAtMs: 0 }],
  });
  t.is(seq, Number(fetched.info.seq) + 1);

  // RocksDB's own tool opens the unpacked checkpoint and counts the same keys (plus meta keys).
  const unpacked = join(dir, 'unpacked');
  await unpackArtifactFile(out, unpacked);
  // `ldb` comes with rocksdb-tools, which the set-up installs.
  const ldb = await run('ldb', ['--db=' + unpacked, 'scan', '--key_hex', '--max_keys=1000000'], {
    maxBuffer: 64 << 20,
  });
  const dataKeys = ldb.stdout
    .split('\n')
    .filter((line) => /^0x[0-3][0-9A-F]{3}/i.test(line.trim()));
  t.is(dataKeys.length, 3000);
});

test('slot-range snapshots of a rocksdb node use the iterator and install into either backend', async (t) => {
  const rocks = await startNode({ backend: 'rocksdb' });
  const memory = await startNode();
  t.teardown(async () => {
    await rocks.stop();
    await memory.stop();
  });
  await loadSynthetic(rocks.client, { keys: 2000, valueSize: 50, types: 'mixed', seed: 12 });
  const range = [{ start: 2000, end: 9000 }];
  const info = await rocks.client.createSnapshot({ slots: range });
  t.is(info.strategy, 'rocksdb-iterator');
  const toMemory = await pulled(memory.client, { source: rocks.node.address, slots: range });
  t.true(Number(toMemory.keysInstalled) > 0);
  t.is(
    (await memory.client.digest({ slots: range })).digest,
    (await rocks.client.digest({ slots: range })).digest,
  );

  // And back: memory → a fresh rocksdb node, full.
  const back = await startNode({ backend: 'rocksdb' });
  t.teardown(() => back.stop());
  await loadSynthetic(memory.client, { keys: 500, valueSize: 30, types: 'mixed', seed: 13 });
  await pulled(back.client, { source: memory.node.address });
  t.is((await back.client.digest()).digest, (await memory.client.digest()).digest);
  t.is(
    Number((await back.client.stats()).keyCount),
    Number((await memory.client.stats()).keyCount),
  );
  // A rocksdb full snapshot asked for with the iterator strategy is a records artifact.
  const records = await rocks.client.createSnapshot({ slots: FULL, strategy: 'rocksdb-iterator' });
  t.is(records.kind, 'records');
});

test('a memory node refuses a checkpoint artifact and stays unchanged', async (t) => {
  const rocks = await startNode({ backend: 'rocksdb' });
  const memory = await startNode();
  t.teardown(async () => {
    await rocks.stop();
    await memory.stop();
  });
  await loadSynthetic(rocks.client, { keys: 200, valueSize: 20, types: 'string', seed: 3 });
  await memory.client.write({
    mutations: [{ op: 'set', key: Buffer.from('mine'), value: Buffer.from('1'), expireAtMs: 0 }],
  });
  const before = await memory.client.digest();
  const error = await t.throwsAsync(pulled(memory.client, { source: rocks.node.address }));
  t.regex(error?.message ?? '', /cannot install a "files" artifact/);
  t.is((await memory.client.digest()).digest, before.digest);
});

test('a rocksdb node restarts with its data and seq, and can start from a checkpoint', async (t) => {
  const first = await startNode({ backend: 'rocksdb' });
  await loadSynthetic(first.client, { keys: 1000, valueSize: 40, types: 'mixed', seed: 14 });
  const digest = await first.client.digest();
  const created = await first.client.createSnapshot();
  const dir = await tempDir();
  const out = join(dir, 'c.snap');
  await first.client.fetchToFile({ snapshotId: created.id, out });
  const dataDir = first.dataDir;
  first.client.close();
  await first.node.stop();

  const again = await startNode({ backend: 'rocksdb', dataDir });
  t.is((await again.client.digest()).digest, digest.digest);
  t.is(Number((await again.client.stats()).seq), Number(digest.seq));
  await again.stop();

  const checkpoint = join(dir, 'checkpoint');
  await unpackArtifactFile(out, checkpoint);
  const restored = await startNode({ backend: 'rocksdb', restoreFrom: checkpoint });
  t.is((await restored.client.digest()).digest, digest.digest);
  t.true(existsSync(join(checkpoint, 'CURRENT')), 'the checkpoint itself is left as it was');
  await restored.stop();
  const fromFile = await startNode({ backend: 'rocksdb', restoreFrom: out });
  t.is((await fromFile.client.digest()).digest, digest.digest);
  await fromFile.stop();
  const memoryFromRecords = await startNode({ restoreFrom: out }).catch((e: Error) => e);
  t.true(
    memoryFromRecords instanceof Error,
    'a memory node cannot start from a checkpoint artifact',
  );
  const fs = await import('node:fs/promises');
  await fs.rm(dir, { recursive: true, force: true });
  await fs.rm(dataDir, { recursive: true, force: true });
});
