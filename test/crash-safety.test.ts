import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ShardsnapClient, loadSynthetic } from '../src/client';
import { serve, type ServedNode } from './helpers/cli';
import { nodeFor, tempDirFor } from './helpers/harness';

/** Kills the node with SIGKILL once a pull into it has received `fraction` of the artifact. */
async function pullAndKill(
  target: ServedNode,
  source: string,
  snapshotId: string,
  fraction: number,
): Promise<'killed' | 'done'> {
  const client = new ShardsnapClient(target.address);
  try {
    for await (const p of client.pull({ source, snapshotId })) {
      if (p.done) {
        // Acknowledged: a crash right now must keep the new data.
        process.kill(target.child.pid!, 'SIGKILL');
        return 'done';
      }
      if (Number(p.totalBytes) > 0 && Number(p.bytesReceived) >= fraction * Number(p.totalBytes)) {
        process.kill(target.child.pid!, 'SIGKILL');
        return 'killed';
      }
    }
    return 'killed';
  } catch {
    return 'killed';
  } finally {
    client.close();
  }
}

async function digestOf(address: string): Promise<string> {
  const client = new ShardsnapClient(address);
  try {
    return (await client.digest()).digest;
  } finally {
    client.close();
  }
}

async function exited(node: ServedNode): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  await new Promise((resolve) => node.child.once('exit', resolve));
}

/**
 * A rocksdb node killed with SIGKILL at several points of an install restarts with
 * either its old data or the new, never a mix, and with nothing left staged.
 */
async function killDuringInstalls(
  t: ExecutionContext,
  sourceBackend: 'memory' | 'rocksdb',
): Promise<void> {
  const source = await nodeFor(t, { backend: sourceBackend });
  await loadSynthetic(source.client, { keys: 20_000, valueSize: 300, types: 'mixed', seed: 21 });
  const newDigest = (await source.client.digest()).digest;
  // A READY snapshot, so progress knows the total size.
  const snapshot = await source.client.waitReady({
    snapshotId: (await source.client.createSnapshot()).id,
  });
  const dataDir = await tempDirFor(t, 'shardsnap-crash-');
  let node = await serve(t, ['--backend', 'rocksdb'], dataDir);
  const client = new ShardsnapClient(node.address);
  await loadSynthetic(client, { keys: 3_000, valueSize: 100, types: 'string', seed: 22 });
  client.close();
  const oldDigest = await digestOf(node.address);
  const seen: string[] = [];
  for (const fraction of [0.2, 0.6, 0.97]) {
    const outcome = await pullAndKill(node, source.node.address, snapshot.id, fraction);
    await exited(node);
    node = await serve(t, ['--backend', 'rocksdb'], dataDir);
    const digest = await digestOf(node.address);
    t.true(
      digest === oldDigest || digest === newDigest,
      `after a kill at ${fraction}: old or new data, never a mix`,
    );
    if (outcome === 'done') t.is(digest, newDigest, 'an acknowledged install survives');
    seen.push(digest === newDigest ? 'new' : 'old');
    t.deepEqual(await readdir(join(dataDir, 'staging')).catch(() => []), [], 'nothing left staged');
  }
  t.log(`${sourceBackend} → rocksdb: ${seen.join(', ')}`);
  // The node is whole: a clean install after the kills gives exactly the source.
  const finish = new ShardsnapClient(node.address);
  for await (const p of finish.pull({ source: source.node.address, snapshotId: snapshot.id }))
    if (p.done) break;
  finish.close();
  t.is(await digestOf(node.address), newDigest);
}

test('SIGKILL during a records install (SST ingest) leaves old or new data', (t) =>
  killDuringInstalls(t, 'memory'));

test('SIGKILL during a checkpoint install (database swap) leaves old or new data', (t) =>
  killDuringInstalls(t, 'rocksdb'));

test('a database swap cut short is rolled back or finished when the store opens', async (t) => {
  const { RocksDbStore } = await import('../src/store');
  const { rename, cp, access } = await import('node:fs/promises');
  const dataDir = await tempDirFor(t, 'shardsnap-swap-');
  const dbDir = join(dataDir, 'db');
  const write = async (value: string): Promise<void> => {
    const store = await RocksDbStore.open(dataDir);
    await store.write([
      { op: 'set', key: Buffer.from('k'), value: Buffer.from(value), expireAtMs: 0 },
    ]);
    await store.close();
  };
  const read = async (): Promise<string | undefined> => {
    const store = await RocksDbStore.open(dataDir);
    try {
      const [entry] = await store.read([Buffer.from('k')]);
      return entry?.value.type === 'string' ? entry.value.value.toString() : undefined;
    } finally {
      await store.close();
    }
  };
  await write('old');
  // Killed after the old database was moved aside, before the new one took its place.
  await rename(dbDir, `${dbDir}.old`);
  t.is(await read(), 'old');
  // Killed after the new database took its place, before the old one was removed.
  await cp(dbDir, `${dbDir}.old`, { recursive: true });
  await write('new');
  t.is(await read(), 'new');
  await t.throwsAsync(access(`${dbDir}.old`));
});
