import test from 'ava';
import { existsSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ShardsnapClient } from '../src/client';
import { slotOf } from '../src/core';
import { b, flipByte, tempDirFor } from './helpers/harness';
import { BIN, cli, cliJson, serve } from './helpers/cli';

test.before(() => {
  if (!existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('the CLI is not built: run `make build` first');
  }
});

interface Digest {
  ok: boolean;
  digest: string;
  keyCount: number;
  seq: number;
}

test('load, fetch, verify, install, digest, pull and stats across two served nodes', async (t) => {
  const [a, bNode] = await Promise.all([serve(t), serve(t)]);
  const dir = await tempDirFor(t);

  const load = await cliJson<{ ok: boolean; keys: number; lastSeq: number }>([
    'load',
    '--to',
    a.address,
    '--keys',
    '2000',
    '--value-size',
    '100',
    '--types',
    'mixed',
  ]);
  t.is(load.code, 0);
  t.true(load.json.ok);
  t.is(load.json.keys, 2000);

  const out = join(dir, 'a.snap');
  const fetch = await cliJson<{
    ok: boolean;
    sha256: string;
    bytes: number;
    path: string;
    info: { id: string; keyCount: number };
  }>(['fetch', '--from', a.address, '--out', out, '--chunk-size', '4096']);
  t.is(fetch.code, 0, fetch.raw.stderr);
  t.regex(fetch.json.sha256, /^[0-9a-f]{64}$/);
  t.is(fetch.json.path, out);
  t.is(Number(fetch.json.info.keyCount), 2000);
  t.true(existsSync(out));
  t.true(existsSync(`${out}.json`));

  const verify = await cliJson<{
    ok: boolean;
    sha256: string;
    keyCount: number;
    bytes: number;
    checkedAgainstInfo: boolean;
  }>(['verify', out]);
  t.is(verify.code, 0, verify.raw.stderr);
  t.is(verify.json.sha256, fetch.json.sha256);
  t.is(verify.json.keyCount, 2000);
  t.is(verify.json.bytes, fetch.json.bytes);
  t.true(verify.json.checkedAgainstInfo);

  // Something on B that the full install must replace.
  const bClient = new ShardsnapClient(bNode.address);
  t.teardown(() => bClient.close());
  await bClient.write({
    mutations: [{ op: 'set', key: b('only-on-b'), value: b('x'), expireAtMs: 0 }],
  });

  const install = await cliJson<{ ok: boolean; keysInstalled: number; sha256: string }>([
    'install',
    '--to',
    bNode.address,
    out,
  ]);
  t.is(install.code, 0, install.raw.stderr);
  t.is(Number(install.json.keysInstalled), 2000);
  t.is(install.json.sha256, fetch.json.sha256);

  const [da, db] = await Promise.all([
    cliJson<Digest>(['digest', '--at', a.address]),
    cliJson<Digest>(['digest', '--at', bNode.address]),
  ]);
  t.is(da.code, 0);
  t.is(db.code, 0);
  t.regex(da.json.digest, /^[0-9a-f]{64}$/);
  t.is(db.json.digest, da.json.digest);
  t.is(Number(db.json.keyCount), 2000);

  // Change slots 0-100 on A (and something outside them), then pull just those slots into B.
  let inRange = 0;
  while (slotOf(b(`new-${inRange}`)) > 100) inRange++;
  let outside = 0;
  while (slotOf(b(`out-${outside}`)) <= 100) outside++;
  const aClient = new ShardsnapClient(a.address);
  t.teardown(() => aClient.close());
  await aClient.write({
    mutations: [
      { op: 'set', key: b(`new-${inRange}`), value: b('in range'), expireAtMs: 0 },
      { op: 'set', key: b(`out-${outside}`), value: b('outside'), expireAtMs: 0 },
    ],
  });
  const pull = await cliJson<{
    ok: boolean;
    keysInstalled: number;
    snapshotId: string;
    resumes: number;
  }>(['pull', '--to', bNode.address, '--from', a.address, '--slots', '0-100']);
  t.is(pull.code, 0, pull.raw.stderr);
  t.true(pull.json.ok);
  t.truthy(pull.json.snapshotId);
  const [ra, rb] = await Promise.all([
    cliJson<Digest>(['digest', '--at', a.address, '--slots', '0-100']),
    cliJson<Digest>(['digest', '--at', bNode.address, '--slots', '0-100']),
  ]);
  t.is(rb.json.digest, ra.json.digest);
  t.is(Number(pull.json.keysInstalled), Number(ra.json.keyCount));
  const [pulled, notPulled] = await bClient.read({
    keys: [b(`new-${inRange}`), b(`out-${outside}`)],
  });
  t.true(pulled!.found);
  t.false(notPulled!.found, 'keys outside the pulled slots are not copied');

  const stats = await cliJson<{
    ok: boolean;
    keyCount: number;
    seq: number;
    backend: string;
    storedSnapshots: number;
  }>(['stats', '--at', bNode.address]);
  t.is(stats.code, 0);
  t.is(stats.json.backend, 'memory');
  t.is(Number(stats.json.keyCount), 2000 + 1);
  const statsA = await cliJson<{ storedSnapshots: number }>(['stats', '--at', a.address]);
  t.is(statsA.json.storedSnapshots, 0, 'the fetch and the pull deleted the snapshots they made');
});

test('snapshots list, create and delete', async (t) => {
  const node = await serve(t);
  const load = await cli(['load', '--to', node.address, '--keys', '300', '--value-size', '50']);
  t.is(load.code, 0, load.stderr);

  const empty = await cliJson<{ ok: boolean; snapshots: unknown[] }>([
    'snapshots',
    'list',
    '--at',
    node.address,
  ]);
  t.is(empty.code, 0);
  t.deepEqual(empty.json.snapshots, []);

  const created = await cliJson<{
    ok: boolean;
    id: string;
    state: string;
    seq: number;
    keyCount: number;
    slots: unknown;
  }>(['snapshots', 'create', '--at', node.address, '--slots', '0-8000', '--wait']);
  t.is(created.code, 0, created.raw.stderr);
  t.is(created.json.state, 'ready');
  t.deepEqual(created.json.slots, [{ start: 0, end: 8000 }]);
  t.true(existsSync(join(node.dataDir, 'snapshots', created.json.id, 'artifact.bin')));

  const listed = await cliJson<{ snapshots: Array<{ id: string; state: string }> }>([
    'snapshots',
    'list',
    '--at',
    node.address,
  ]);
  t.deepEqual(
    listed.json.snapshots.map((s) => [s.id, s.state]),
    [[created.json.id, 'ready']],
  );
  // The human listing names it too.
  const human = await cli(['snapshots', 'list', '--at', node.address]);
  t.is(human.code, 0);
  t.true(human.stdout.includes(created.json.id));

  const deleted = await cliJson<{ ok: boolean; deleted: string }>([
    'snapshots',
    'delete',
    '--at',
    node.address,
    '--id',
    created.json.id,
  ]);
  t.is(deleted.code, 0);
  t.is(deleted.json.deleted, created.json.id);
  t.false(existsSync(join(node.dataDir, 'snapshots', created.json.id)));
  const after = await cliJson<{ snapshots: unknown[] }>([
    'snapshots',
    'list',
    '--at',
    node.address,
  ]);
  t.deepEqual(after.json.snapshots, []);
});

test('exit codes: not found 3, data loss 4, usage 2', async (t) => {
  const node = await serve(t);
  const dir = await tempDirFor(t);
  await cli([
    'load',
    '--to',
    node.address,
    '--keys',
    '500',
    '--value-size',
    '80',
    '--types',
    'mixed',
  ]);

  // Unknown (well-formed) snapshot ids.
  const del = await cliJson<{ ok: boolean; error: { code: string } }>([
    'snapshots',
    'delete',
    '--at',
    node.address,
    '--id',
    'lq3x9z0a-0123abcd',
  ]);
  t.is(del.code, 3);
  t.false(del.json.ok);
  t.is(del.json.error.code, 'not_found');
  const fetchUnknown = await cli([
    'fetch',
    '--from',
    node.address,
    '--id',
    'lq3x9z0a-0123abcd',
    '--out',
    join(dir, 'x.snap'),
  ]);
  t.is(fetchUnknown.code, 3, fetchUnknown.stderr);
  t.regex(fetchUnknown.stderr, /not found/);

  // A corrupted artifact, with and without its .json sidecar.
  const good = join(dir, 'good.snap');
  t.is((await cli(['fetch', '--from', node.address, '--out', good])).code, 0);
  const bytes = await readFile(good);
  flipByte(bytes, bytes.length >> 1, 0x08);
  const bad = join(dir, 'bad.snap');
  await writeFile(bad, bytes);
  await copyFile(`${good}.json`, `${bad}.json`);
  const verifyBad = await cliJson<{ ok: boolean; error: { code: string } }>(['verify', bad]);
  t.is(verifyBad.code, 4);
  t.is(verifyBad.json.error.code, 'data_loss');
  const lone = join(dir, 'lone.snap');
  await writeFile(lone, bytes);
  const verifyLone = await cli(['verify', lone]);
  t.is(verifyLone.code, 4, 'caught by the artifact itself, without a sidecar');
  t.is((await cli(['verify', good])).code, 0);

  // Usage errors.
  const usage = [
    ['digest', '--at', node.address, '--slots', '5-1'],
    ['pull', '--to', node.address, '--from', node.address, '--slots', '5-1'],
    ['fetch', '--from', node.address, '--slots', '0-16384', '--out', join(dir, 'y.snap')],
    ['stats', '--at', 'not-an-address'],
    ['load', '--to', node.address, '--keys', '-3', '--value-size', '10'],
    ['load', '--to', node.address, '--keys', '1', '--value-size', '10', '--types', 'weird'],
    ['no-such-command'],
  ];
  const results = await Promise.all(usage.map((args) => cli(args)));
  results.forEach((result, i) => t.is(result.code, 2, `${usage[i]!.join(' ')}: ${result.stderr}`));
  t.false(existsSync(join(dir, 'y.snap')));
  const client = new ShardsnapClient(node.address);
  t.teardown(() => client.close());
  t.is((await client.listSnapshots()).length, 0, 'no snapshot stays behind');
});
