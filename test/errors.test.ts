import test from 'ava';
import { status } from '@grpc/grpc-js';
import { loadSynthetic } from '../src/client';
import type { CreateSnapshotRequest } from '../src/generated/shardsnap/v1/CreateSnapshotRequest';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import {
  b,
  nodeFor,
  rawFetch,
  rawUnary,
  slowScan,
  strategiesWith,
  unaryCode,
} from './helpers/harness';

const BAD_RANGES = [
  { name: 'start > end', slots: [{ start: 10, end: 5 }] },
  { name: 'end > 16383', slots: [{ start: 0, end: 16384 }] },
  { name: 'start > 16383', slots: [{ start: 20000, end: 20001 }] },
  {
    name: 'one bad range among good ones',
    slots: [
      { start: 0, end: 10 },
      { start: 100, end: 99 },
    ],
  },
];

const create = (request: Partial<CreateSnapshotRequest>): CreateSnapshotRequest => ({
  slots: [],
  strategy: '',
  compression: 'COMPRESSION_NONE',
  ...request,
});

test('bad slot ranges are INVALID_ARGUMENT for CreateSnapshot, Digest and FetchSnapshot with create', async (t) => {
  const node = await nodeFor(t);
  const { shard, snapshots } = node.client.connection;
  await node.client.write([{ op: 'set', key: b('k'), value: b('v'), expireAtMs: 0 }]);
  for (const { name, slots } of BAD_RANGES) {
    t.is(
      await unaryCode((cb) => snapshots.CreateSnapshot(create({ slots }), cb)),
      status.INVALID_ARGUMENT,
      `CreateSnapshot ${name}`,
    );
    t.is(
      await unaryCode((cb) => shard.Digest({ slots }, cb)),
      status.INVALID_ARGUMENT,
      `Digest ${name}`,
    );
    const fetch = await rawFetch(node.client.connection, {
      snapshotId: '',
      create: create({ slots }),
    });
    t.is(fetch.error?.code, status.INVALID_ARGUMENT, `FetchSnapshot ${name}`);
    t.is(fetch.chunks.length, 0);
  }
  // Nothing was created by the refused requests.
  t.is((await node.client.listSnapshots()).length, 0);
  // Edge values are fine.
  t.is(
    await unaryCode((cb) =>
      shard.Digest(
        {
          slots: [
            { start: 16383, end: 16383 },
            { start: 0, end: 0 },
          ],
        },
        cb,
      ),
    ),
    status.OK,
  );
});

test('snapshot ids: unknown is NOT_FOUND, malformed or empty is INVALID_ARGUMENT', async (t) => {
  const node = await nodeFor(t);
  const { snapshots } = node.client.connection;
  const unknown = 'lq3x9z0a-0123abcd';
  t.is(await unaryCode((cb) => snapshots.GetSnapshot({ id: unknown }, cb)), status.NOT_FOUND);
  t.is(await unaryCode((cb) => snapshots.DeleteSnapshot({ id: unknown }, cb)), status.NOT_FOUND);
  t.is(
    (await rawFetch(node.client.connection, { snapshotId: unknown })).error?.code,
    status.NOT_FOUND,
  );
  t.is(
    (await rawFetch(node.client.connection, { snapshotId: unknown, offset: 10 })).error?.code,
    status.NOT_FOUND,
  );

  for (const id of ['../x', 'a/b', 'UPPER', '-leading-dash', 'x'.repeat(65), 'with space']) {
    t.is(
      await unaryCode((cb) => snapshots.GetSnapshot({ id }, cb)),
      status.INVALID_ARGUMENT,
      `Get ${id}`,
    );
    t.is(
      await unaryCode((cb) => snapshots.DeleteSnapshot({ id }, cb)),
      status.INVALID_ARGUMENT,
      `Delete ${id}`,
    );
    t.is(
      (await rawFetch(node.client.connection, { snapshotId: id })).error?.code,
      status.INVALID_ARGUMENT,
      `Fetch ${id}`,
    );
  }
  t.is(await unaryCode((cb) => snapshots.GetSnapshot({ id: '' }, cb)), status.INVALID_ARGUMENT);
  t.is(await unaryCode((cb) => snapshots.DeleteSnapshot({ id: '' }, cb)), status.INVALID_ARGUMENT);
});

test('fetch offsets past the end and chunk sizes out of bounds are INVALID_ARGUMENT', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 200, valueSize: 50, types: 'string', seed: 1 });
  const info = await node.client.waitReady((await node.client.createSnapshot()).id);
  const size = Number(info.sizeBytes);
  const conn = node.client.connection;
  t.is(
    (await rawFetch(conn, { snapshotId: info.id, offset: size + 1 })).error?.code,
    status.INVALID_ARGUMENT,
  );
  t.is(
    (await rawFetch(conn, { snapshotId: info.id, offset: size * 10 })).error?.code,
    status.INVALID_ARGUMENT,
  );
  for (const chunkSize of [1, 4095, (16 << 20) + 1, 0xffffffff]) {
    const { error, chunks } = await rawFetch(conn, { snapshotId: info.id, chunkSize });
    t.is(error?.code, status.INVALID_ARGUMENT, `chunk_size ${chunkSize}`);
    t.is(chunks.length, 0);
  }
  // The bounds themselves are accepted.
  for (const chunkSize of [4096, 16 << 20]) {
    t.is(
      (await rawFetch(conn, { snapshotId: info.id, chunkSize })).error,
      undefined,
      `chunk_size ${chunkSize}`,
    );
  }
  // A bad chunk size with `create` fails before a snapshot is built.
  const withCreate = await rawFetch(conn, { snapshotId: '', chunkSize: 100, create: create({}) });
  t.is(withCreate.error?.code, status.INVALID_ARGUMENT);
  t.is((await node.client.listSnapshots()).length, 1);
});

test('an unknown strategy is INVALID_ARGUMENT', async (t) => {
  const node = await nodeFor(t);
  const { snapshots } = node.client.connection;
  t.is(
    await unaryCode((cb) => snapshots.CreateSnapshot(create({ strategy: 'no-such-strategy' }), cb)),
    status.INVALID_ARGUMENT,
  );
  const fetch = await rawFetch(node.client.connection, {
    snapshotId: '',
    create: create({ strategy: 'nope' }),
  });
  t.is(fetch.error?.code, status.INVALID_ARGUMENT);
  t.is((await node.client.listSnapshots()).length, 0);
  // The named default works.
  t.is(
    await unaryCode((cb) => snapshots.CreateSnapshot(create({ strategy: 'memory-scan' }), cb)),
    status.OK,
  );
});

test('WRONGTYPE is FAILED_PRECONDITION and the whole batch is not applied', async (t) => {
  const node = await nodeFor(t);
  const { shard } = node.client.connection;
  await node.client.write([{ op: 'set', key: b('str'), value: b('v'), expireAtMs: 0 }]);
  await node.client.write([{ op: 'rpush', key: b('list'), values: [b('a')] }]);
  const before = await node.client.digest();
  const wrongOps = [
    { rpush: { key: b('str'), values: [b('x')] } },
    { hset: { key: b('list'), fields: [{ field: b('f'), value: b('v') }] } },
    { sadd: { key: b('str'), members: [b('m')] } },
    { zadd: { key: b('list'), members: [{ member: b('m'), score: 1 }] } },
    { lpush: { key: b('str'), values: [b('x')] } },
  ];
  for (const wrong of wrongOps) {
    const result = await rawUnary<{ seq: number }>((cb) =>
      shard.Write(
        {
          mutations: [
            { set: { key: b('earlier-in-batch'), value: b('must not appear'), expireAtMs: 0 } },
            { rpush: { key: b('list'), values: [b('must not appear')] } },
            wrong,
          ],
        },
        cb,
      ),
    );
    t.false(result.ok);
    if (!result.ok) {
      t.is(result.error.code, status.FAILED_PRECONDITION, JSON.stringify(Object.keys(wrong)));
      t.regex(result.error.details, /WRONGTYPE/);
    }
  }
  // A type clash created within the batch itself is caught too.
  const inBatch = await rawUnary((cb) =>
    shard.Write(
      {
        mutations: [
          { set: { key: b('fresh'), value: b('s'), expireAtMs: 0 } },
          { sadd: { key: b('fresh'), members: [b('m')] } },
        ],
      },
      cb,
    ),
  );
  t.false(inBatch.ok);
  if (!inBatch.ok) t.is(inBatch.error.code, status.FAILED_PRECONDITION);

  const [earlier, list, fresh] = await node.client.read([
    b('earlier-in-batch'),
    b('list'),
    b('fresh'),
  ]);
  t.false(earlier!.found, 'a set earlier in the refused batch is not visible');
  t.deepEqual(list!.list!.items, [b('a')]);
  t.false(fresh!.found);
  const after = await node.client.digest();
  t.is(after.digest, before.digest);
  t.is(Number(after.seq), Number(before.seq), 'a refused batch takes no seq');
  // A set may replace any type (it is not a WRONGTYPE).
  t.is(
    await unaryCode((cb) =>
      shard.Write(
        { mutations: [{ set: { key: b('list'), value: b('now a string'), expireAtMs: 0 } }] },
        cb,
      ),
    ),
    status.OK,
  );
});

test('empty and malformed mutations are INVALID_ARGUMENT', async (t) => {
  const node = await nodeFor(t);
  const { shard } = node.client.connection;
  t.is(await unaryCode((cb) => shard.Write({ mutations: [] }, cb)), status.INVALID_ARGUMENT);
  t.is(
    await unaryCode((cb) => shard.Write({ mutations: [{}] }, cb)),
    status.INVALID_ARGUMENT,
    'no op set',
  );
  t.is(
    await unaryCode((cb) =>
      shard.Write({ mutations: [{ rpush: { key: b('l'), values: [] } }] }, cb),
    ),
    status.INVALID_ARGUMENT,
  );
  t.is(
    await unaryCode((cb) =>
      shard.Write({ mutations: [{ hset: { key: b('h'), fields: [] } }] }, cb),
    ),
    status.INVALID_ARGUMENT,
  );
  t.is(
    await unaryCode((cb) =>
      shard.Write({ mutations: [{ sadd: { key: b('s'), members: [] } }] }, cb),
    ),
    status.INVALID_ARGUMENT,
  );
  t.is(
    await unaryCode((cb) =>
      shard.Write(
        {
          mutations: [{ zadd: { key: b('z'), members: [{ member: b('m'), score: Number.NaN }] } }],
        },
        cb,
      ),
    ),
    status.INVALID_ARGUMENT,
  );
  t.is(
    await unaryCode((cb) =>
      shard.Write({ mutations: [{ set: { key: b('k'), value: b('v'), expireAtMs: -5 } }] }, cb),
    ),
    status.INVALID_ARGUMENT,
  );
  t.is(Number((await node.client.stats()).seq), 0, 'nothing was applied');
  t.is(Number((await node.client.stats()).keyCount), 0);
});

test('two concurrent builds over a limit of one: one is RESOURCE_EXHAUSTED', async (t) => {
  const node = await nodeFor(t, { maxConcurrentBuilds: 1 });
  await loadSynthetic(node.client, { keys: 20_000, valueSize: 100, types: 'string', seed: 2 });
  const { snapshots } = node.client.connection;
  const results = await Promise.all([
    rawUnary((cb) => snapshots.CreateSnapshot(create({}), cb)),
    rawUnary((cb) => snapshots.CreateSnapshot(create({}), cb)),
  ]);
  const codes = results.map((r) => (r.ok ? status.OK : r.error.code)).sort();
  t.deepEqual(codes, [status.OK, status.RESOURCE_EXHAUSTED]);
  t.is((await node.client.listSnapshots()).length, 1, 'the refused build left no entry');
});

test('builds over the limit are refused while one runs, accepted after it ends', async (t) => {
  const node = await nodeFor(t, {
    maxConcurrentBuilds: 1,
    strategies: strategiesWith(slowScan({ batch: 50, delayMs: 10 })),
  });
  await loadSynthetic(node.client, { keys: 1000, valueSize: 50, types: 'string', seed: 3 });
  const { snapshots } = node.client.connection;
  const first = await node.client.createSnapshot({ strategy: 'slow-scan' });
  t.is(first.state, 'BUILDING');
  t.is(
    await unaryCode((cb) => snapshots.CreateSnapshot(create({}), cb)),
    status.RESOURCE_EXHAUSTED,
  );
  const fetch = await rawFetch(node.client.connection, { snapshotId: '', create: create({}) });
  t.is(fetch.error?.code, status.RESOURCE_EXHAUSTED, 'FetchSnapshot with create too');
  await node.client.waitReady(first.id);
  t.is(await unaryCode((cb) => snapshots.CreateSnapshot(create({}), cb)), status.OK);
});

test('PullSnapshot: a bad source is INVALID_ARGUMENT, an unreachable one fails in bounded time', async (t) => {
  const node = await nodeFor(t);
  await node.client.write([{ op: 'set', key: b('keep'), value: b('me'), expireAtMs: 0 }]);
  const before = await node.client.digest();
  const pull = async (
    request: { source: string; slots?: Array<{ start: number; end: number }> },
    timeoutMs = 10_000,
  ) => {
    const stream = node.client.connection.snapshots.PullSnapshot(
      { source: request.source, slots: request.slots ?? [], snapshotId: '' },
      { deadline: Date.now() + timeoutMs },
    );
    const messages: PullProgress__Output[] = [];
    try {
      for await (const m of stream as AsyncIterable<PullProgress__Output>) messages.push(m);
      return { code: status.OK, messages };
    } catch (error) {
      return { code: (error as { code: number }).code, messages };
    }
  };
  for (const source of ['', 'not an address', 'host-without-port', '127.0.0.1:99999', ':80']) {
    t.is((await pull({ source })).code, status.INVALID_ARGUMENT, `source "${source}"`);
  }
  t.is(
    (await pull({ source: '127.0.0.1:1', slots: [{ start: 5, end: 1 }] })).code,
    status.INVALID_ARGUMENT,
    'bad slots',
  );

  const started = Date.now();
  const unreachable = await pull({ source: '127.0.0.1:1' });
  const elapsed = Date.now() - started;
  t.not(unreachable.code, status.OK);
  t.not(
    unreachable.code,
    status.DEADLINE_EXCEEDED,
    `failed on its own, not by our deadline (${elapsed} ms)`,
  );
  t.is(unreachable.code, status.UNAVAILABLE);
  t.true(elapsed < 8_000);
  t.is((await node.client.digest()).digest, before.digest, 'nothing changed');
});
