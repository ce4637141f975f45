import test, { type ExecutionContext } from 'ava';
import { join } from 'node:path';
import { loadSynthetic, type ShardsnapClient } from '../src/client';
import { type Mutation, type SlotRange, slotOf } from '../src/core';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import { verifyArtifactFile } from '../src/snapshot';
import { b, comparable, nodeFor, rawFetch, tempDirFor } from './helpers/harness';

const FUTURE = Date.now() + 7 * 86_400_000;

/** One key of every type, with expiries, binary bytes, ordered list items and odd scores. */
function everyType(prefix: string): { mutations: Mutation[]; keys: Buffer[] } {
  const k = (name: string): Buffer => b(`${prefix}:${name}`);
  const mutations: Mutation[] = [
    { op: 'set', key: k('str'), value: b('hello world'), expireAtMs: 0 },
    {
      op: 'set',
      key: k('str-exp'),
      value: Buffer.from([0, 1, 2, 255, 254, 0]),
      expireAtMs: FUTURE,
    },
    {
      op: 'set',
      key: Buffer.from([0xff, 0x00, 0x7f, 0x80]),
      value: Buffer.alloc(0),
      expireAtMs: 0,
    },
    { op: 'rpush', key: k('list'), values: [b('a'), b('b'), b('c')] },
    { op: 'lpush', key: k('list'), values: [b('z'), b('y')] },
    { op: 'rpush', key: k('list'), values: [b('a'), Buffer.from([0])] },
    { op: 'expire', key: k('list'), expireAtMs: FUTURE + 1 },
    {
      op: 'hset',
      key: k('hash'),
      fields: [
        { field: b('f1'), value: b('v1') },
        { field: b('f2'), value: b('') },
      ],
    },
    {
      op: 'hset',
      key: k('hash'),
      fields: [
        { field: b('f1'), value: b('v1b') },
        { field: Buffer.from([0xfe]), value: b('bin') },
      ],
    },
    { op: 'sadd', key: k('set'), members: [b('m1'), b('m2'), b('m3'), b('m2')] },
    { op: 'expire', key: k('set'), expireAtMs: FUTURE + 2 },
    {
      op: 'zadd',
      key: k('zset'),
      members: [
        { member: b('one'), score: 1 },
        { member: b('neg'), score: -2.5 },
        { member: b('big'), score: 1e300 },
        { member: b('frac'), score: 0.1 + 0.2 },
        { member: b('inf'), score: Number.POSITIVE_INFINITY },
      ],
    },
    { op: 'zadd', key: k('zset'), members: [{ member: b('one'), score: 11 }] },
  ];
  const keys = [...new Set(mutations.map((m) => m.key.toString('latin1')))].map((s) =>
    Buffer.from(s, 'latin1'),
  );
  return { mutations, keys };
}

async function readAll(client: ShardsnapClient, keys: readonly Buffer[]): Promise<unknown[]> {
  return (await client.read({ keys })).map(comparable);
}

async function seeded(t: ExecutionContext, prefix = 'rt') {
  const source = await nodeFor(t);
  const data = everyType(prefix);
  await source.client.write({ mutations: data.mutations });
  await loadSynthetic(source.client, { keys: 600, valueSize: 96, types: 'mixed', seed: 7 });
  return { source, ...data };
}

async function pullToEnd(
  client: ShardsnapClient,
  request: { source: string; slots?: SlotRange[]; snapshotId?: string },
) {
  const messages: PullProgress__Output[] = [];
  for await (const progress of client.pull(request)) messages.push(progress);
  const last = messages[messages.length - 1];
  if (!last?.done || !last.result) throw new Error('pull ended without a done message');
  return { last, result: last.result, messages };
}

test('every type written, fetched to a file and installed reads back exactly', async (t) => {
  const { source, keys } = await seeded(t);
  const target = await nodeFor(t);
  const dir = await tempDirFor(t);
  const out = join(dir, 'full.snap');

  const expected = await readAll(source.client, keys);
  // Sanity: the fixture reads back as written on the source itself (LPUSH y after z puts y first).
  t.deepEqual(expected[3], {
    found: true,
    expireAtMs: FUTURE + 1,
    list: ['y', 'z', 'a', 'b', 'c', 'a', '\0'].map((s) => b(s).toString('hex')),
  });
  t.like(expected[1], { expireAtMs: FUTURE, string: '000102fffe00' });

  const fetched = await source.client.fetchToFile({ out, chunkSize: 4096 });
  t.is(fetched.info.state, 'READY');
  t.true(fetched.bytes > 4096 * 4, 'several chunks');
  const verified = await verifyArtifactFile(out, fetched.sha256);
  t.is(verified.keyCount, Number(fetched.info.keyCount));

  const installed = await target.client.installFile({ path: out, chunkSize: 4096 });
  const sourceDigest = await source.client.digest();
  t.is(Number(installed.keysInstalled), Number(sourceDigest.keyCount));
  t.is(installed.sha256, fetched.sha256);

  t.deepEqual(await readAll(target.client, keys), expected);
  const targetDigest = await target.client.digest();
  t.is(targetDigest.digest, sourceDigest.digest);
  t.is(Number(targetDigest.keyCount), Number(sourceDigest.keyCount));
  // Synthetic keys too, spot-checked through Read.
  const synthetic = Array.from({ length: 600 }, (_, i) => b(`key:${String(i).padStart(9, '0')}`));
  t.deepEqual(await readAll(target.client, synthetic), await readAll(source.client, synthetic));
});

test('a full install replaces everything and adopts the snapshot seq', async (t) => {
  const { source, keys } = await seeded(t, 'seq');
  const target = await nodeFor(t);
  const dir = await tempDirFor(t);
  // The target has its own history: a different seq and keys the source does not have.
  for (let i = 0; i < 3; i++)
    await target.client.write({
      mutations: [{ op: 'set', key: b(`only-target-${i}`), value: b('x'), expireAtMs: 0 }],
    });
  await target.client.write({
    mutations: [{ op: 'set', key: keys[0]!, value: b('target value'), expireAtMs: 0 }],
  });

  const out = join(dir, 'a.snap');
  const fetched = await source.client.fetchToFile({ out });
  // Writes after the snapshot are not part of it.
  await source.client.write({
    mutations: [{ op: 'set', key: b('after-snapshot'), value: b('late'), expireAtMs: 0 }],
  });
  const sourceSeq = Number((await source.client.stats()).seq);
  t.true(sourceSeq > Number(fetched.info.seq));

  const installed = await target.client.installFile({ path: out });
  t.is(Number(installed.seq), Number(fetched.info.seq));
  const stats = await target.client.stats();
  t.is(Number(stats.seq), Number(fetched.info.seq), 'the target adopts the snapshot seq');
  t.is(Number(stats.keyCount), Number(fetched.info.keyCount));

  const [onlyTarget, overwritten, late] = await target.client.read({
    keys: [b('only-target-0'), keys[0]!, b('after-snapshot')],
  });
  t.false(onlyTarget!.found, 'keys only on the target are gone after a full install');
  t.deepEqual(comparable(overwritten), {
    found: true,
    expireAtMs: 0,
    string: b('hello world').toString('hex'),
  });
  t.false(late!.found);
});

test('PullSnapshot of everything makes the target equal to the source', async (t) => {
  const { source, keys } = await seeded(t, 'pull');
  const target = await nodeFor(t);
  await target.client.write({
    mutations: [{ op: 'set', key: b('stale'), value: b('x'), expireAtMs: 0 }],
  });
  const { result, messages } = await pullToEnd(target.client, { source: source.node.address });
  t.true(messages.length >= 1);
  t.truthy(result.snapshotId);
  const sourceDigest = await source.client.digest();
  const targetDigest = await target.client.digest();
  t.is(targetDigest.digest, sourceDigest.digest);
  t.is(Number(result.keysInstalled), Number(sourceDigest.keyCount));
  t.is(Number((await target.client.stats()).seq), Number(result.seq));
  t.true(Number(result.seq) <= Number((await source.client.stats()).seq));
  // The snapshot made for the pull went with it.
  await t.throwsAsync(source.client.getSnapshot({ snapshotId: result.snapshotId }), {
    message: /not found/,
  });
  t.deepEqual(await readAll(target.client, keys), await readAll(source.client, keys));
  t.false((await target.client.read({ keys: [b('stale')] }))[0]!.found);
});

test('PullSnapshot of a slot range replaces exactly those slots', async (t) => {
  const { source } = await seeded(t, 'range');
  const target = await nodeFor(t);
  const range: SlotRange = { start: 0, end: 8191 };
  const inRange = (key: Buffer): boolean => slotOf(key) <= range.end;

  // Keys on the target: one out of range with its own value, one in range that the source lacks,
  // and one out of range that the source also has (with another value).
  const candidates = Array.from({ length: 200 }, (_, i) => b(`target-key-${i}`));
  const outKey = candidates.find((k) => !inRange(k))!;
  const inKey = candidates.find((k) => inRange(k))!;
  const synthetic = Array.from({ length: 600 }, (_, i) => b(`key:${String(i).padStart(9, '0')}`));
  const sharedOut = synthetic.find((k) => !inRange(k))!;
  const sharedIn = synthetic.find((k) => inRange(k))!;
  await target.client.write({
    mutations: [
      { op: 'set', key: outKey, value: b('target-out'), expireAtMs: 0 },
      { op: 'set', key: inKey, value: b('target-in'), expireAtMs: 0 },
      { op: 'set', key: sharedOut, value: b('target-version'), expireAtMs: 0 },
      { op: 'hset', key: sharedIn, fields: [{ field: b('f'), value: b('target-version') }] },
    ],
  });
  const outsideBefore = await target.client.digest({ slots: [{ start: 8192, end: 16383 }] });
  const seqBefore = Number((await target.client.stats()).seq);

  const { result } = await pullToEnd(target.client, {
    source: source.node.address,
    slots: [range],
  });
  await t.throwsAsync(source.client.getSnapshot({ snapshotId: result.snapshotId }), {
    message: /not found/,
  });

  const sourceRange = await source.client.digest({ slots: [range] });
  const targetRange = await target.client.digest({ slots: [range] });
  t.is(targetRange.digest, sourceRange.digest);
  t.is(Number(targetRange.keyCount), Number(sourceRange.keyCount));
  t.is(Number(result.keysInstalled), Number(sourceRange.keyCount));
  t.true(Number(sourceRange.keyCount) > 100);

  const [out, removed, shared, sharedInValue] = await target.client.read({
    keys: [outKey, inKey, sharedOut, sharedIn],
  });
  t.deepEqual(comparable(out), {
    found: true,
    expireAtMs: 0,
    string: b('target-out').toString('hex'),
  });
  t.false(removed!.found, 'an in-range key only on the target is removed');
  t.deepEqual(comparable(shared), {
    found: true,
    expireAtMs: 0,
    string: b('target-version').toString('hex'),
  });
  t.deepEqual(
    comparable(sharedInValue),
    comparable((await source.client.read({ keys: [sharedIn] }))[0]),
  );
  t.is(
    (await target.client.digest({ slots: [{ start: 8192, end: 16383 }] })).digest,
    outsideBefore.digest,
    'outside untouched',
  );
  // A slot-range install does not adopt the source's seq; it is one more change on the target.
  t.is(Number((await target.client.stats()).seq), seqBefore + 1);
});

test('a slot-range snapshot installed from a file replaces exactly its slots', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  const dir = await tempDirFor(t);
  const range: SlotRange = { start: 100, end: 9000 };
  const keys = Array.from({ length: 800 }, (_, i) => b(`k${i}`));
  const inRange = keys.filter((k) => slotOf(k) >= range.start && slotOf(k) <= range.end);
  const outRange = keys.filter((k) => !inRange.includes(k));
  await source.client.write({
    mutations: keys.map((key) => ({
      op: 'set' as const,
      key,
      value: b(`source-${key.toString()}`),
      expireAtMs: 0,
    })),
  });
  // The target holds every key with another value; after the install, in-range keys it has
  // but the source lacks must go.
  await target.client.write({
    mutations: keys.map((key) => ({
      op: 'set' as const,
      key,
      value: b(`target-${key.toString()}`),
      expireAtMs: 0,
    })),
  });
  await source.client.write({
    mutations: inRange.slice(0, 10).map((key) => ({ op: 'del' as const, key })),
  });

  const out = join(dir, 'range.snap');
  const fetched = await source.client.fetchToFile({ out, slots: [range], chunkSize: 4096 });
  t.deepEqual(fetched.info.slots, [range]);
  t.is(Number(fetched.info.keyCount), inRange.length - 10);
  await target.client.installFile({ path: out });

  t.is(
    (await target.client.digest({ slots: [range] })).digest,
    (await source.client.digest({ slots: [range] })).digest,
  );
  const values = await target.client.read({ keys: inRange });
  values.forEach((v, i) => {
    if (i < 10)
      t.false(v.found, `deleted on source, removed from target: ${inRange[i]!.toString()}`);
    else t.deepEqual(v.string, b(`source-${inRange[i]!.toString()}`));
  });
  const outside = await target.client.read({ keys: outRange });
  t.true(
    outside.every((v, i) => v.found && v.string!.equals(b(`target-${outRange[i]!.toString()}`))),
    'out of range untouched',
  );
  t.is(Number((await target.client.stats()).keyCount), keys.length - 10);
});

test('zstd compression round-trips through fetch, install and pull', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  const other = await nodeFor(t);
  const dir = await tempDirFor(t);
  await source.client.write({ mutations: everyType('z').mutations });
  // Compressible values, so zstd chunks are really compressed.
  await source.client.write({
    mutations: Array.from({ length: 1500 }, (_, i) => ({
      op: 'set' as const,
      key: b(`zkey-${i}`),
      value: Buffer.from(`value ${i} `.repeat(20)),
      expireAtMs: 0,
    })),
  });
  const out = join(dir, 'z.snap');
  // Made beforehand: a snapshot a fetch makes for itself is deleted once it is fetched.
  const made = await source.client.createSnapshot({ compression: 'zstd' });
  await source.client.waitReady({ snapshotId: made.id });
  const fetched = await source.client.fetchToFile({
    out,
    snapshotId: made.id,
    compression: 'zstd',
    chunkSize: 16384,
  });
  t.is(fetched.info.compression, 'COMPRESSION_ZSTD');
  await verifyArtifactFile(out, fetched.sha256);

  // The chunks of that snapshot travel compressed, smaller than their raw bytes, with CRCs of the raw bytes.
  const raw = await rawFetch(source.client.connection, {
    snapshotId: fetched.info.id,
    chunkSize: 16384,
  });
  t.is(raw.error, undefined);
  t.true(raw.chunks.length > 2);
  const first = raw.chunks[0]!;
  t.is(first.compression, 'COMPRESSION_ZSTD');
  t.true(first.data.length < first.rawLength);

  const installed = await target.client.installFile({
    path: out,
    compression: 'zstd',
    chunkSize: 8192,
  });
  t.is(installed.sha256, fetched.sha256);
  const digest = await source.client.digest();
  t.is((await target.client.digest()).digest, digest.digest);

  const created = await source.client.createSnapshot({ compression: 'zstd' });
  await source.client.waitReady({ snapshotId: created.id });
  await pullToEnd(other.client, { source: source.node.address, snapshotId: created.id });
  t.is((await other.client.digest()).digest, digest.digest);
});

test('the digest changes with any change of value, score, expiry or member', async (t) => {
  const { source } = await seeded(t, 'dg');
  const k = (name: string): Buffer => b(`dg:${name}`);
  const changes: Array<[string, Mutation]> = [
    ['string value', { op: 'set', key: k('str'), value: b('hello worle'), expireAtMs: 0 }],
    ['string expiry', { op: 'expire', key: k('str-exp'), expireAtMs: FUTURE + 1000 }],
    ['list item', { op: 'rpush', key: k('list'), values: [b('tail')] }],
    [
      'hash field value',
      { op: 'hset', key: k('hash'), fields: [{ field: b('f2'), value: b('now set') }] },
    ],
    ['hash new field', { op: 'hset', key: k('hash'), fields: [{ field: b('f9'), value: b('') }] }],
    ['set member', { op: 'sadd', key: k('set'), members: [b('m4')] }],
    ['zset score', { op: 'zadd', key: k('zset'), members: [{ member: b('neg'), score: -2.4 }] }],
    ['zset member', { op: 'zadd', key: k('zset'), members: [{ member: b('new'), score: 1 }] }],
    ['expiry removed', { op: 'expire', key: k('list'), expireAtMs: 0 }],
    ['key deleted', { op: 'del', key: k('set') }],
    ['key type', { op: 'sadd', key: k('set'), members: [b('m1'), b('m2'), b('m3')] }],
  ];
  const seen = new Set<string>([(await source.client.digest()).digest]);
  for (const [what, mutation] of changes) {
    await source.client.write({ mutations: [mutation] });
    const digest = (await source.client.digest()).digest;
    t.false(seen.has(digest), `digest changed after: ${what}`);
    seen.add(digest);
  }
  // Same content gives the same digest, whatever the write order or node.
  const a = await nodeFor(t);
  const c = await nodeFor(t);
  await a.client.write({
    mutations: [
      { op: 'sadd', key: b('s'), members: [b('x'), b('y')] },
      {
        op: 'hset',
        key: b('h'),
        fields: [
          { field: b('a'), value: b('1') },
          { field: b('b'), value: b('2') },
        ],
      },
    ],
  });
  await c.client.write({
    mutations: [{ op: 'hset', key: b('h'), fields: [{ field: b('b'), value: b('2') }] }],
  });
  await c.client.write({ mutations: [{ op: 'sadd', key: b('s'), members: [b('y'), b('x')] }] });
  await c.client.write({
    mutations: [{ op: 'hset', key: b('h'), fields: [{ field: b('a'), value: b('1') }] }],
  });
  t.is((await a.client.digest()).digest, (await c.client.digest()).digest);
});

test('a pull of large collections across many chunks installs copies, not views of reused chunk buffers', async (t) => {
  const source = await nodeFor(t);
  // Collections too large to be kept as one encoded payload, between megabytes of strings,
  // so that their bytes arrive in chunks whose buffers the pull reuses afterwards.
  const mutations: Mutation[] = [];
  for (let c = 0; c < 6; c++) {
    mutations.push({
      op: 'hset',
      key: b(`big-hash-${c}`),
      fields: Array.from({ length: 300 }, (_, i) => ({
        field: b(`f${i}`),
        value: Buffer.alloc(64, (c * 31 + i) % 251),
      })),
    });
    mutations.push({
      op: 'rpush',
      key: b(`big-list-${c}`),
      values: Array.from({ length: 400 }, (_, i) => Buffer.alloc(48, (c * 17 + i) % 253)),
    });
    for (let s = 0; s < 600; s++) {
      mutations.push({
        op: 'set',
        key: b(`filler-${c}-${s}`),
        value: Buffer.alloc(1000, (c + s) % 256),
        expireAtMs: 0,
      });
    }
  }
  for (let i = 0; i < mutations.length; i += 500) {
    await source.client.write({ mutations: mutations.slice(i, i + 500) });
  }
  const target = await nodeFor(t);
  const { result } = await pullToEnd(target.client, { source: source.node.address });
  t.true(Number(result.bytes) > 3 << 20, 'the artifact spans several 1 MiB chunks');
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);
  const keys = [0, 3, 5].flatMap((c) => [b(`big-hash-${c}`), b(`big-list-${c}`)]);
  t.deepEqual(await readAll(target.client, keys), await readAll(source.client, keys));
});
