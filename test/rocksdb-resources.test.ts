import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import test from 'ava';
import { ShardsnapClient, loadSynthetic } from '../src/client';
import type { SlotRange } from '../src/core';
import { BIN } from './helpers/cli';
import { nodeFor, rawUnary, tempDirFor, waitFor } from './helpers/harness';

async function idle(client: ShardsnapClient): Promise<boolean> {
  const stats = await client.stats();
  return stats.activeStreams === 0 && stats.activeSnapshots === 0 && stats.activeBuilds === 0;
}

for (const [what, create] of [
  [
    'a checkpoint',
    { slots: [] as SlotRange[], strategy: '', compression: 'COMPRESSION_NONE' as const },
  ],
  [
    'an iterator',
    {
      slots: [{ start: 0, end: 8000 }] as SlotRange[],
      strategy: 'rocksdb-iterator',
      compression: 'COMPRESSION_NONE' as const,
    },
  ],
] as const) {
  test(`a cancelled fetch of ${what} snapshot leaves no checkpoint, view or lease behind`, async (t) => {
    const node = await nodeFor(t, { backend: 'rocksdb' });
    await loadSynthetic(node.client, { keys: 10_000, valueSize: 400, types: 'string', seed: 41 });
    const stream = node.client.connection.snapshots.FetchSnapshot({
      snapshotId: '',
      chunkSize: 4096,
      create,
    });
    const first = await new Promise<unknown>((resolve, reject) => {
      stream.once('data', resolve);
      stream.once('error', reject);
    });
    t.truthy(first);
    stream.cancel();
    await new Promise((resolve) => stream.once('error', resolve).once('end', resolve));
    t.true(await waitFor(() => idle(node.client), 10_000), 'streams, views and builds back to 0');
    const checkpoints = join(node.dataDir, 'checkpoints');
    t.true(
      await waitFor(async () => (await readdir(checkpoints).catch(() => [])).length === 0, 5_000),
      'no checkpoint directory left',
    );
  });
}

// setpriv execs the node in place (same pid), so stopping it by pid stops the node.
const SETPRIV = '/usr/bin/setpriv';
const asNobody = process.getuid?.() === 0 && existsSync(SETPRIV) ? test : test.skip;
const NOBODY = ['--reuid=65534', '--regid=65534', '--clear-groups', '--'];

asNobody('a RocksDB failure becomes a clear status and the node keeps serving', async (t) => {
  const dataDir = await tempDirFor(t, 'shardsnap-ro-');
  await chown(dataDir, 65534, 65534);
  const child = spawn(
    SETPRIV,
    [
      ...NOBODY,
      process.execPath,
      BIN,
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--backend',
      'rocksdb',
      '--data-dir',
      dataDir,
      '--log-level',
      'error',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('exit', resolve));
    }
  });
  const address = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const match = /listening on (\S+)/.exec(out);
      if (match) resolve(match[1] as string);
    });
    child.once('exit', (code) => reject(new Error(`serve exited with ${code}`)));
  });
  const client = new ShardsnapClient(address);
  t.teardown(() => client.close());
  await client.write({
    mutations: [{ op: 'set', key: Buffer.from('k'), value: Buffer.from('v'), expireAtMs: 0 }],
  });
  // Checkpoints cannot be created: RocksDB itself fails to make the directory.
  const checkpoints = join(dataDir, 'checkpoints');
  await mkdir(checkpoints, { recursive: true });
  await chown(checkpoints, 0, 0);
  await chmod(checkpoints, 0o555);
  const result = await rawUnary((cb) =>
    client.connection.snapshots.CreateSnapshot({ slots: [] }, cb),
  );
  t.false(result.ok);
  if (!result.ok) {
    t.is(result.error.code, status.INTERNAL);
    t.regex(result.error.details, /op=checkpoint/);
    t.regex(result.error.details, /IO ?error|Permission denied/i);
  }
  // Still serving.
  t.is((await client.read({ keys: [Buffer.from('k')] }))[0]?.string?.toString(), 'v');
  t.is(Number((await client.stats()).keyCount), 1);
  t.is(child.exitCode, null);
});

asNobody(
  'a node refuses to start on a data dir it cannot write, with a clear message',
  async (t) => {
    const dataDir = await tempDirFor(t, 'shardsnap-ro-');
    await chmod(dataDir, 0o755);
    const child = spawn(
      SETPRIV,
      [
        ...NOBODY,
        process.execPath,
        BIN,
        'serve',
        '--listen',
        '127.0.0.1:0',
        '--backend',
        'rocksdb',
        '--data-dir',
        join(dataDir, 'node'),
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    t.not(code, 0);
    t.regex(stderr, /permission denied|EACCES/i);
  },
);
