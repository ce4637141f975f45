import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { ShardsnapClient } from '../src/client';
import { ErrorCodes, type Mutation, isShardsnapError } from '../src/core';
import { DELTA_FORMAT_VERSION, RecordsDecoder } from '../src/snapshot';
import { b, nodeFor, sleep, tempDirFor, waitFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';

/** Pulls into `target` from `source` (a new snapshot, incremental with `sinceSeq`). */
async function pull(
  target: TestNode,
  source: TestNode,
  options: { sinceSeq?: number; force?: boolean } = {},
): Promise<{ seq: number; keysInstalled: number; labels: Record<string, string> }> {
  for await (const progress of target.client.pull({
    source: source.node.address,
    force: options.force ?? false,
    ...(options.sinceSeq !== undefined ? { sinceSeq: options.sinceSeq } : {}),
  })) {
    if (progress.done && progress.result) {
      return {
        seq: Number(progress.result.seq),
        keysInstalled: Number(progress.result.keysInstalled),
        labels: progress.result.labels,
      };
    }
  }
  throw new Error('pull ended without a result');
}

const seqOf = async (client: ShardsnapClient): Promise<number> =>
  Number((await client.stats()).seq);
const digestOf = async (client: ShardsnapClient): Promise<string> => (await client.digest()).digest;

/** Writes of every type, in a few batches. */
function everyType(prefix: string, expireAtMs = 0): Mutation[][] {
  const k = (name: string): Buffer => b(`${prefix}:${name}`);
  return [
    [
      { op: 'set', key: k('s'), value: b('v1'), expireAtMs },
      { op: 'hset', key: k('h'), fields: [{ field: b('f'), value: b('x') }] },
    ],
    [
      { op: 'rpush', key: k('l'), values: [b('a'), b('b')] },
      { op: 'sadd', key: k('set'), members: [b('m1'), b('m2')] },
      { op: 'zadd', key: k('z'), members: [{ member: b('z1'), score: 1.5 }] },
    ],
  ];
}

async function writeAll(client: ShardsnapClient, batches: Mutation[][]): Promise<void> {
  for (const mutations of batches) await client.write({ mutations });
}

test('a base and a delta installed equal the source, with every type, deletes and expiries', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  for (let i = 0; i < 5; i++) await writeAll(source.client, everyType(`base${i}`));
  await source.client.write({
    mutations: [{ op: 'set', key: b('soon'), value: b('gone'), expireAtMs: Date.now() + 300 }],
  });
  const base = await pull(target, source, { force: true });
  t.is(base.seq, await seqOf(source.client));
  t.is(await seqOf(target.client), base.seq, 'a full install adopts the source seq');

  // Between base and delta: updates of every type, new keys, deletes, an expire in the
  // past, a key that expires by itself, and keys written then deleted again.
  await writeAll(source.client, everyType('base0'));
  await writeAll(source.client, everyType('fresh', Date.now() + 600_000));
  await source.client.write({
    mutations: [
      { op: 'del', key: b('base1:h') },
      { op: 'del', key: b('base2:z') },
      { op: 'expire', key: b('base3:set'), expireAtMs: Date.now() - 1 },
      { op: 'expire', key: b('base4:s'), expireAtMs: Date.now() + 500_000 },
      { op: 'set', key: b('temp'), value: b('x'), expireAtMs: 0 },
      { op: 'lpush', key: b('base1:l'), values: [b('head')] },
    ],
  });
  await source.client.write({ mutations: [{ op: 'del', key: b('temp') }] });
  await source.client.write({
    mutations: [{ op: 'set', key: b('brief'), value: b('y'), expireAtMs: Date.now() + 150 }],
  });
  await sleep(350);
  t.not(await digestOf(target.client), await digestOf(source.client));

  const delta = await pull(target, source, { sinceSeq: base.seq });
  t.is(delta.seq, await seqOf(source.client));
  t.is(await seqOf(target.client), delta.seq, 'a delta of every slot moves the target to its seq');
  t.is(await digestOf(target.client), await digestOf(source.client));
  const [gone, expired] = await target.client.read({ keys: [b('base1:h'), b('base3:set')] });
  t.false(gone?.found ?? false);
  t.false(expired?.found ?? false);
});

test('a delta on the wrong base is refused with the target seq and leaves the target unchanged', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  await writeAll(source.client, everyType('a'));
  const base = await pull(target, source, { force: true });
  await writeAll(source.client, everyType('b'));
  // The target moves on by itself: the delta's base is no longer its state.
  await target.client.write({
    mutations: [{ op: 'set', key: b('local'), value: b('1'), expireAtMs: 0 }],
  });
  const before = await digestOf(target.client);
  const targetSeq = await seqOf(target.client);
  t.not(targetSeq, base.seq);
  const error = await t.throwsAsync(pull(target, source, { sinceSeq: base.seq }));
  t.true(isShardsnapError(error, ErrorCodes.failedPrecondition), String(error));
  const refused = error as unknown as { reason: string; metadata: Record<string, string> };
  t.is(refused.reason, 'BASE_SEQ_MISMATCH');
  t.is(refused.metadata.target_seq, String(targetSeq));
  t.is(refused.metadata.base_seq, String(base.seq));
  t.is(await digestOf(target.client), before);
  t.is(await seqOf(target.client), targetSeq);
});

test('a chain of three deltas keeps the target equal to the source', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  await writeAll(source.client, everyType('k'));
  let seq = (await pull(target, source, { force: true })).seq;
  for (let round = 0; round < 3; round++) {
    await writeAll(source.client, everyType(`r${round}`));
    await writeAll(source.client, everyType('k'));
    await source.client.write({ mutations: [{ op: 'del', key: b(`r${round}:h`) }] });
    const delta = await pull(target, source, { sinceSeq: seq });
    t.is(delta.seq, await seqOf(source.client));
    t.is(await digestOf(target.client), await digestOf(source.client), `after delta ${round + 1}`);
    seq = delta.seq;
  }
  // Nothing changed since: an empty delta, accepted.
  const empty = await pull(target, source, { sinceSeq: seq });
  t.is(empty.keysInstalled, 0);
  t.is(await digestOf(target.client), await digestOf(source.client));
});

test('a since_seq the change log no longer reaches is OUT_OF_RANGE', async (t) => {
  const source = await nodeFor(t, { changeLogBytes: 4096 });
  for (let i = 0; i < 50; i++) {
    await source.client.write({
      mutations: [{ op: 'set', key: b(`k${i}`), value: Buffer.alloc(200, 1), expireAtMs: 0 }],
    });
  }
  const error = await t.throwsAsync(source.client.createSnapshot({ sinceSeq: 1 }));
  t.true(isShardsnapError(error, ErrorCodes.outOfRange), String(error));
  const ahead = await t.throwsAsync(source.client.createSnapshot({ sinceSeq: 1_000 }));
  t.true(isShardsnapError(ahead, ErrorCodes.outOfRange), String(ahead));
  // A recent seq is still held.
  const recent = await source.client.createSnapshot({ sinceSeq: 49 });
  t.is(recent.baseSeq, 49);
});

test('an install in the window of a delta makes it OUT_OF_RANGE', async (t) => {
  const source = await nodeFor(t);
  const other = await nodeFor(t);
  await writeAll(source.client, everyType('a'));
  await writeAll(other.client, everyType('b'));
  const since = await seqOf(source.client);
  // A slot-range install replaces slots after `since`: the delta cannot say what they lost.
  for await (const progress of source.client.pull({
    source: other.node.address,
    slots: [{ start: 0, end: 8000 }],
  })) {
    if (progress.done) break;
  }
  t.is(await seqOf(source.client), since + 1);
  const error = await t.throwsAsync(source.client.createSnapshot({ sinceSeq: since }));
  t.true(isShardsnapError(error, ErrorCodes.outOfRange), String(error));
  // Slots the install did not touch still have their delta.
  const untouched = await source.client.createSnapshot({
    sinceSeq: since,
    slots: [{ start: 8001, end: 16383 }],
  });
  t.is(untouched.baseSeq, since);
});

test('RocksDB nodes answer since_seq with UNIMPLEMENTED', async (t) => {
  const node = await nodeFor(t, { backend: 'rocksdb' });
  await writeAll(node.client, everyType('a'));
  const error = await t.throwsAsync(node.client.createSnapshot({ sinceSeq: 0 }));
  t.true(isShardsnapError(error, ErrorCodes.unimplemented), String(error));
});

test('labels travel through the artifact, its info, a fetch and an install', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  const dir = await tempDirFor(t);
  await writeAll(source.client, everyType('a'));
  const labels = { raft_index: '42', raft_term: '7' };
  const base = await source.client.createSnapshot({ labels });
  t.deepEqual(base.labels, labels);
  t.is(base.baseSeq, undefined);
  await source.client.waitReady({ snapshotId: base.id });
  const basePath = join(dir, 'base.bin');
  await source.client.fetchToFile({ out: basePath, snapshotId: base.id });
  const installed = await target.client.installFile({ path: basePath, force: true });
  t.deepEqual(installed.labels, labels);

  await writeAll(source.client, everyType('b'));
  await source.client.write({ mutations: [{ op: 'del', key: b('a:s') }] });
  const delta = await source.client.createSnapshot({
    sinceSeq: Number(base.seq),
    labels: { raft_index: '43' },
  });
  t.is(delta.baseSeq, Number(base.seq));
  t.deepEqual(delta.labels, { raft_index: '43' });
  t.is(delta.formatVersion, DELTA_FORMAT_VERSION);
  const deltaPath = join(dir, 'delta.bin');
  const fetched = await source.client.fetchToFile({ out: deltaPath, snapshotId: delta.id });
  t.deepEqual(fetched.info.labels, { raft_index: '43' });
  const decoder = new RecordsDecoder({ verifyInnerDigest: true });
  const records = decoder.push(await readFile(deltaPath));
  const tombstones = decoder.takeTombstones();
  const { header, keyCount } = decoder.finish();
  t.is(header.base_seq, Number(base.seq));
  t.deepEqual(header.labels, { raft_index: '43' });
  t.is(records.length, 5);
  t.deepEqual(
    tombstones.map((k) => k.toString()),
    ['a:s'],
  );
  t.is(keyCount, 6);
  const applied = await target.client.installFile({ path: deltaPath });
  t.deepEqual(applied.labels, { raft_index: '43' });
  t.is(Number(applied.baseSeq), Number(base.seq));
  t.is(await digestOf(target.client), await digestOf(source.client));
});

test('a delta of 1% of 20k keys is far smaller and faster than the full snapshot', async (t) => {
  const source = await nodeFor(t);
  const keys = 20_000;
  for (let at = 0; at < keys; at += 1000) {
    const mutations: Mutation[] = [];
    for (let i = at; i < at + 1000; i++) {
      mutations.push({ op: 'set', key: b(`key:${i}`), value: Buffer.alloc(100, i), expireAtMs: 0 });
    }
    await source.client.write({ mutations });
  }
  const baseSeq = await seqOf(source.client);
  const build = async (sinceSeq?: number): Promise<{ bytes: number; ms: number }> => {
    const started = performance.now();
    const created = await source.client.createSnapshot(sinceSeq === undefined ? {} : { sinceSeq });
    const ready = await source.client.waitReady({ snapshotId: created.id, pollMs: 5 });
    return { bytes: Number(ready.sizeBytes), ms: performance.now() - started };
  };
  const full = await build();
  const changed: Mutation[] = [];
  for (let i = 0; i < keys; i += 100) {
    changed.push({ op: 'set', key: b(`key:${i}`), value: Buffer.alloc(100, 7), expireAtMs: 0 });
  }
  await source.client.write({ mutations: changed });
  const delta = await build(baseSeq);
  t.log(
    `full: ${full.bytes} bytes in ${full.ms.toFixed(1)} ms; delta of ${changed.length} keys: ` +
      `${delta.bytes} bytes in ${delta.ms.toFixed(1)} ms`,
  );
  t.true(delta.bytes <= 0.05 * full.bytes, `${delta.bytes} vs ${full.bytes}`);
  await waitFor(() => source.node.catalog.buildingCount === 0);
});
