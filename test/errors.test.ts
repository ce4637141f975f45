import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { SpoolFullError } from '../src/build';
import { loadSynthetic } from '../src/client';
import {
  ERROR_DOMAIN,
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  checksumMismatch,
  deadlineExceeded,
  failedPrecondition,
  hasReason,
  internal,
  invalidArgument,
  noSpace,
  shuttingDown,
  snapshotFailed,
  snapshotInUse,
  snapshotNotFound,
  storeClosed,
  wrongType,
} from '../src/core';
import type { CreateSnapshotRequest } from '../src/generated/shardsnap/v1/CreateSnapshotRequest';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import { TRY_AGAIN_RETRY_MS, moved, notServed, tryAgain } from '../src/ownership/errors';
import { serverStream, unary } from '../src/server/calls';
import { CatalogFullError } from '../src/snapshot';
import {
  H2Connection,
  STATUS_DETAILS_HEADER,
  decodeRpcStatus,
  fromServiceError,
} from '../src/wire';

import {
  b,
  nodeFor,
  rawFetch,
  rawUnary,
  sleep,
  slowScan,
  strategiesWith,
  unaryCode,
} from './helpers/harness';
import { topologyChanged } from '../src/cluster';

/** The gRPC status each code travels as. */
const STATUS_OF: Record<string, grpc.status> = {
  [ErrorCodes.moved]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.tryAgain]: grpc.status.UNAVAILABLE,
  [ErrorCodes.wrongType]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.notFound]: grpc.status.NOT_FOUND,
  [ErrorCodes.failedPrecondition]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.dataLoss]: grpc.status.DATA_LOSS,
  [ErrorCodes.unavailable]: grpc.status.UNAVAILABLE,
  [ErrorCodes.resourceExhausted]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCodes.internal]: grpc.status.INTERNAL,
  [ErrorCodes.deadlineExceeded]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCodes.alreadyExists]: grpc.status.ALREADY_EXISTS,
};

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
  await node.client.write({
    mutations: [{ op: 'set', key: b('k'), value: b('v'), expireAtMs: 0 }],
  });
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
  t.is(
    await unaryCode((cb) => snapshots.GetSnapshot({ snapshotId: unknown }, cb)),
    status.NOT_FOUND,
  );
  t.is(
    await unaryCode((cb) => snapshots.DeleteSnapshot({ snapshotId: unknown }, cb)),
    status.NOT_FOUND,
  );
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
      await unaryCode((cb) => snapshots.GetSnapshot({ snapshotId: id }, cb)),
      status.INVALID_ARGUMENT,
      `Get ${id}`,
    );
    t.is(
      await unaryCode((cb) => snapshots.DeleteSnapshot({ snapshotId: id }, cb)),
      status.INVALID_ARGUMENT,
      `Delete ${id}`,
    );
    t.is(
      (await rawFetch(node.client.connection, { snapshotId: id })).error?.code,
      status.INVALID_ARGUMENT,
      `Fetch ${id}`,
    );
  }
  t.is(
    await unaryCode((cb) => snapshots.GetSnapshot({ snapshotId: '' }, cb)),
    status.INVALID_ARGUMENT,
  );
  t.is(
    await unaryCode((cb) => snapshots.DeleteSnapshot({ snapshotId: '' }, cb)),
    status.INVALID_ARGUMENT,
  );
});

test('fetch offsets past the end and chunk sizes out of bounds are INVALID_ARGUMENT', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 200, valueSize: 50, types: 'string', seed: 1 });
  const info = await node.client.waitReady({ snapshotId: (await node.client.createSnapshot()).id });
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
  await node.client.write({
    mutations: [{ op: 'set', key: b('str'), value: b('v'), expireAtMs: 0 }],
  });
  await node.client.write({ mutations: [{ op: 'rpush', key: b('list'), values: [b('a')] }] });
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

  const [earlier, list, fresh] = await node.client.read({
    keys: [b('earlier-in-batch'), b('list'), b('fresh')],
  });
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
  await node.client.waitReady({ snapshotId: first.id });
  t.is(await unaryCode((cb) => snapshots.CreateSnapshot(create({}), cb)), status.OK);
});

test('PullSnapshot: a bad source is INVALID_ARGUMENT, an unreachable one fails in bounded time', async (t) => {
  const node = await nodeFor(t);
  await node.client.write({
    mutations: [{ op: 'set', key: b('keep'), value: b('me'), expireAtMs: 0 }],
  });
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

// ---------------------------------------------------------------------------------------
// Typed errors on the wire: google.rpc.Status (ErrorInfo, RetryInfo) in
// grpc-status-details-bin, restored by the client from the details alone.

const ERRORS_SERVICE: grpc.ServiceDefinition = {
  Fail: {
    path: '/shardsnap.test.Errors/Fail',
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (bytes: Buffer) => bytes,
  },
  FailStream: {
    path: '/shardsnap.test.Errors/FailStream',
    requestStream: false,
    responseStream: true,
    requestSerialize: (value: Buffer) => value,
    requestDeserialize: (bytes: Buffer) => bytes,
    responseSerialize: (value: Buffer) => value,
    responseDeserialize: (bytes: Buffer) => bytes,
  },
};

const ErrorsClient = grpc.makeGenericClientConstructor(ERRORS_SERVICE, 'Errors');

interface ErrorCase {
  name: string;
  error: () => unknown;
  /** What the client must see; defaults to the thrown ShardsnapError's own fields. */
  expect?: { code: string; reason: string; metadata: Record<string, string> };
}

/** One case per ErrorReasons entry, each made where the code makes it. */
const REASON_CASES: ErrorCase[] = [
  { name: 'moved', error: () => moved(4242, '10.0.0.7:7421') },
  { name: 'tryAgain', error: () => tryAgain(4242) },
  { name: 'wrongType', error: () => wrongType(Buffer.from('k\xe9y', 'latin1'), 'hset') },
  { name: 'snapshotNotFound', error: () => snapshotNotFound('lq3x9z0a-0123abcd') },
  {
    name: 'snapshotFailed',
    error: () => snapshotFailed('lq3x9z0a-0123abcd', 'snapshot failed to build: boom'),
  },
  {
    name: 'checksumMismatch',
    error: () =>
      checksumMismatch('chunk CRC32C mismatch', {
        snapshotId: 'lq3x9z0a-0123abcd',
        offset: 1 << 20,
      }),
  },
  { name: 'snapshotInUse', error: () => snapshotInUse('lq3x9z0a-0123abcd', 'being streamed') },
  { name: 'storeClosed', error: () => storeClosed('memory store') },
  {
    name: 'handoffAlreadyPrepared',
    error: () =>
      failedPrecondition('handoff m-1 is already prepared', {
        reason: ErrorReasons.handoffAlreadyPrepared,
        metadata: { migration_id: 'm-1' },
      }),
  },
  { name: 'slotsNotOwned', error: () => notServed(77) },
  {
    name: 'tooManyTransfers',
    error: () =>
      new ShardsnapError(ErrorCodes.resourceExhausted, 'busy', {
        reason: ErrorReasons.tooManyTransfers,
        retryAfterMs: 2_500,
      }),
  },
  {
    name: 'spoolFull',
    error: () => new SpoolFullError('the spool would pass --spool-max-bytes'),
  },
  { name: 'catalogFull', error: () => new CatalogFullError('too many snapshots') },
  { name: 'noSpace', error: () => noSpace('no space left', '/data/snapshots/x/artifact') },
  { name: 'shuttingDown', error: () => shuttingDown() },
  {
    name: 'migrationExists',
    error: () =>
      new ShardsnapError(ErrorCodes.alreadyExists, 'migration m1-ab is known', {
        reason: ErrorReasons.migrationExists,
        metadata: { migration_id: 'm1-ab' },
      }),
  },
  {
    name: 'controllerBusy',
    error: () =>
      failedPrecondition('controller ctl-a holds the lead', {
        reason: ErrorReasons.controllerBusy,
        metadata: { holder: 'ctl-a', purpose: 'rebalance', since_ms: 1 },
      }),
  },
  { name: 'topologyChanged', error: () => topologyChanged(3, 5, false) },
  { name: 'notLeader', error: () => topologyChanged(5, 5, true) },
  {
    name: 'etcdUnavailable',
    error: () =>
      new ShardsnapError(ErrorCodes.unavailable, 'etcd did not answer', {
        reason: ErrorReasons.etcdUnavailable,
        metadata: { endpoints: '127.0.0.1:2379' },
        retryAfterMs: 1_000,
      }),
  },
];

const OTHER_CASES: ErrorCase[] = [
  {
    name: 'a non-domain error',
    error: () => new TypeError('cannot read properties of undefined'),
    expect: { code: ErrorCodes.internal, reason: 'INTERNAL', metadata: {} },
  },
  {
    name: 'a full disk from a file write',
    error: () =>
      Object.assign(new Error('ENOSPC: no space left on device, write'), {
        code: 'ENOSPC',
        path: '/nonexistent/dir/part',
      }),
    expect: {
      code: ErrorCodes.resourceExhausted,
      reason: ErrorReasons.noSpace,
      metadata: { path: '/nonexistent/dir/part' },
    },
  },
  {
    name: 'a full disk under a domain error',
    error: () =>
      internal(
        'writing the artifact',
        Object.assign(new Error('ENOSPC'), { code: 'ENOSPC', path: '/nonexistent/a' }),
      ),
    expect: {
      code: ErrorCodes.resourceExhausted,
      reason: ErrorReasons.noSpace,
      metadata: { path: '/nonexistent/a' },
    },
  },
  {
    name: 'a deadline passed on the node',
    error: () => deadlineExceeded('work took too long'),
    expect: { code: ErrorCodes.deadlineExceeded, reason: 'DEADLINE_EXCEEDED', metadata: {} },
  },
];

const ALL_CASES = [...REASON_CASES, ...OTHER_CASES];

interface ErrorsServer {
  address: string;
  client: grpc.Client;
  stop(): void;
}

/**
 * A real gRPC server whose handlers (wrapped as the node wraps its own) throw the case
 * named in the request; `relay` throws what a call to `peer` failed with, as received.
 */
async function errorsServer(t: ExecutionContext): Promise<ErrorsServer> {
  const server = new grpc.Server();
  const caseOf = (request: Buffer): ErrorCase => {
    const name = request.toString();
    const found = ALL_CASES.find((c) => c.name === name);
    if (!found) throw invalidArgument(`no case ${name}`);
    return found;
  };
  const peer: { client?: grpc.Client } = {};
  const relay = (name: string): Promise<never> =>
    new Promise((_resolve, reject) => {
      (peer.client as unknown as GenericUnary).Fail(Buffer.from(name), (error) =>
        reject(error ?? internal('the relayed call succeeded')),
      );
    });
  server.addService(ERRORS_SERVICE, {
    Fail: unary<Buffer, Buffer>('Fail', {}, async (request) => {
      const name = request.toString();
      if (name.startsWith('relay:')) return relay(name.slice('relay:'.length));
      if (name === 'slow') return sleep(5_000).then(() => Buffer.alloc(0));
      if (name === 'bare status') {
        throw Object.assign(new Error('gone'), {
          code: grpc.status.NOT_FOUND,
          details: 'gone',
          metadata: new grpc.Metadata(),
        });
      }
      throw caseOf(request).error();
    }),
    FailStream: serverStream<Buffer, Buffer>('FailStream', {}, async (request, send) => {
      await send(Buffer.from('first'));
      throw caseOf(request).error();
    }),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  const address = `127.0.0.1:${port}`;
  const client = new ErrorsClient(address, grpc.credentials.createInsecure());
  peer.client = new ErrorsClient(address, grpc.credentials.createInsecure());
  const stop = (): void => {
    client.close();
    peer.client?.close();
    server.forceShutdown();
  };
  t.teardown(stop);
  return { address, client, stop };
}

type GenericUnary = {
  Fail(
    request: Buffer,
    options: grpc.CallOptions | ((error: grpc.ServiceError | null) => void),
    callback?: (error: grpc.ServiceError | null) => void,
  ): grpc.ClientUnaryCall;
};

function callFail(
  client: grpc.Client,
  name: string,
  options: grpc.CallOptions = {},
): Promise<grpc.ServiceError> {
  return new Promise((resolve, reject) => {
    (client as unknown as GenericUnary).Fail(Buffer.from(name), options, (error) =>
      error ? resolve(error) : reject(internal(`${name}: the call succeeded`)),
    );
  });
}

function expected(c: ErrorCase): {
  code: string;
  reason: string;
  metadata: Record<string, string>;
} {
  if (c.expect) return c.expect;
  const thrown = c.error() as ShardsnapError;
  return { code: thrown.code, reason: thrown.reason, metadata: { ...thrown.metadata } };
}

function assertRestored(t: ExecutionContext, c: ErrorCase, error: ShardsnapError): void {
  const want = expected(c);
  t.is<string, string>(error.code, want.code, `${c.name}: code`);
  t.is<string, string>(error.reason, want.reason, `${c.name}: reason`);
  t.deepEqual({ ...error.metadata }, want.metadata, `${c.name}: metadata`);
  const thrown = c.error();
  const retryAfterMs = thrown instanceof ShardsnapError ? thrown.retryAfterMs : undefined;
  t.is(error.retryAfterMs, retryAfterMs, `${c.name}: retryAfterMs`);
}

test('the cases cover every ErrorReasons entry', (t) => {
  const covered = new Set(REASON_CASES.map((c) => (c.error() as ShardsnapError).reason));
  t.deepEqual([...covered].sort(), Object.values(ErrorReasons).sort());
});

test('every reason round-trips through a real gRPC server and client: code, reason, metadata, retry delay', async (t) => {
  const { client } = await errorsServer(t);
  for (const c of ALL_CASES) {
    const raw = await callFail(client, c.name);
    t.is<grpc.status | undefined, grpc.status | undefined>(
      raw.code,
      STATUS_OF[expected(c).code],
      `${c.name}: gRPC status`,
    );
    t.true(Buffer.isBuffer(raw.metadata.get(STATUS_DETAILS_HEADER)[0]), `${c.name}: details`);
    assertRestored(t, c, fromServiceError(raw, 'Fail'));
  }
});

test('a status details trailer decodes as google.rpc.Status with ErrorInfo and RetryInfo', async (t) => {
  const { client } = await errorsServer(t);
  const raw = await callFail(client, 'tryAgain');
  const status = decodeRpcStatus(raw.metadata.get(STATUS_DETAILS_HEADER)[0] as Buffer);
  t.is(status?.code, grpc.status.UNAVAILABLE);
  t.is(status?.message, 'TRYAGAIN');
  t.deepEqual(status?.errorInfo, {
    reason: 'TRYAGAIN',
    domain: ERROR_DOMAIN,
    metadata: { slot: '4242' },
  });
  t.is(status?.retryDelayMs, TRY_AGAIN_RETRY_MS);
  t.is(raw.metadata.get('grpc-retry-pushback-ms')[0], String(TRY_AGAIN_RETRY_MS));
});

test('the bulk path restores errors from its own trailers alike', async (t) => {
  const { address } = await errorsServer(t);
  const h2 = new H2Connection(address);
  t.teardown(() => h2.close());
  for (const c of [...REASON_CASES, OTHER_CASES[0] as ErrorCase]) {
    const received: Buffer[][] = [];
    const error = await t.throwsAsync(
      async () => {
        for await (const message of h2.serverStream(
          '/shardsnap.test.Errors/FailStream',
          Buffer.from(c.name),
          { maxMessageBytes: 1 << 20, signal: AbortSignal.timeout(10_000) },
        )) {
          received.push(message);
        }
      },
      { instanceOf: ShardsnapError },
    );
    t.is(Buffer.concat(received.flat()).toString(), 'first', `${c.name}: the message before`);
    if (error) assertRestored(t, c, error);
  }
});

test('a peer error passed through by a node keeps its details', async (t) => {
  const { client } = await errorsServer(t);
  for (const name of ['moved', 'tooManyTransfers', 'noSpace']) {
    const c = ALL_CASES.find((x) => x.name === name) as ErrorCase;
    assertRestored(t, c, fromServiceError(await callFail(client, `relay:${name}`), 'Fail'));
  }
});

test('a status without details gets the reason of its code; DEADLINE_EXCEEDED is deadline_exceeded', async (t) => {
  const { client } = await errorsServer(t);
  const bare = fromServiceError(await callFail(client, 'bare status'), 'Fail');
  t.is(bare.code, ErrorCodes.notFound);
  t.is(bare.reason, 'NOT_FOUND');
  t.deepEqual({ ...bare.metadata }, {});

  const started = Date.now();
  const late = await callFail(client, 'slow', { deadline: Date.now() + 100 });
  t.true(Date.now() - started < 4_000);
  t.is(late.code, grpc.status.DEADLINE_EXCEEDED);
  const error = fromServiceError(late, 'Fail');
  t.is(error.code, ErrorCodes.deadlineExceeded);
  t.is(error.reason, 'DEADLINE_EXCEEDED');
});

test('undecodable details fall back to the code and the pushback header', (t) => {
  const metadata = new grpc.Metadata();
  metadata.set(STATUS_DETAILS_HEADER, Buffer.from([0xff, 0xff, 0xff]));
  metadata.set('grpc-retry-pushback-ms', '250');
  const error = fromServiceError(
    { code: grpc.status.UNAVAILABLE, details: 'busy', metadata, message: 'busy', name: 'Error' },
    'Fail',
  );
  t.is(error.code, ErrorCodes.unavailable);
  t.is(error.reason, 'UNAVAILABLE');
  t.is(error.retryAfterMs, 250);
});

test('a real node answers WRONGTYPE and SNAPSHOT_NOT_FOUND with their metadata', async (t) => {
  const node = await nodeFor(t);
  const { shard, snapshots } = node.client.connection;
  const plain = await rawUnary((cb) =>
    shard.Write({ mutations: [{ set: { key: b('plain'), value: b('v') } }] }, cb),
  );
  t.true(plain.ok);
  const typed = await rawUnary((cb) =>
    shard.Write(
      { mutations: [{ hset: { key: b('plain'), fields: [{ field: b('f'), value: b('v') }] } }] },
      cb,
    ),
  );
  t.false(typed.ok);
  if (!typed.ok) {
    t.is(typed.error.code, grpc.status.FAILED_PRECONDITION);
    const error = fromServiceError(typed.error, 'Write');
    t.is(error.code, ErrorCodes.wrongType);
    t.true(hasReason(error, ErrorReasons.wrongType));
    t.deepEqual({ ...error.metadata }, { key: 'plain', op: 'hset' });
  }
  const missing = await rawUnary((cb) =>
    snapshots.GetSnapshot({ snapshotId: 'lq3x9z0a-0123abcd' }, cb),
  );
  t.false(missing.ok);
  if (!missing.ok) {
    const error = fromServiceError(missing.error, 'GetSnapshot');
    t.true(hasReason(error, ErrorReasons.snapshotNotFound));
    t.deepEqual({ ...error.metadata }, { snapshot_id: 'lq3x9z0a-0123abcd' });
  }
});

test('a WRONGTYPE on a huge key still reaches the client, with the start of the key', async (t) => {
  const node = await nodeFor(t);
  const { shard } = node.client.connection;
  const key = Buffer.alloc(100_000, 'k');
  t.true(
    (await rawUnary((cb) => shard.Write({ mutations: [{ set: { key, value: b('v') } }] }, cb))).ok,
  );
  const typed = await rawUnary((cb) =>
    shard.Write({ mutations: [{ sadd: { key, members: [b('m')] } }] }, cb),
  );
  t.false(typed.ok);
  if (!typed.ok) {
    t.is(typed.error.code, grpc.status.FAILED_PRECONDITION);
    const error = fromServiceError(typed.error, 'Write');
    t.true(hasReason(error, ErrorReasons.wrongType));
    t.is(error.metadata.key, 'k'.repeat(1024));
    t.is(error.metadata.key_bytes, '100000');
    t.is(error.metadata.op, 'sadd');
  }
});
