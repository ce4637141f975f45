/**
 * The client's one call shape: every method takes (request, { signal, deadlineMs }); a
 * fired signal or a passed deadline ends the call with `cancelled` / `deadline_exceeded`
 * and releases the node's side of it; fetch() yields verified chunks; ready() and
 * connectTimeoutMs wait for a node and name it when it cannot be reached.
 */
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pino from 'pino';
import test, { type ExecutionContext } from 'ava';
import * as grpc from '@grpc/grpc-js';
import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapClient,
  type CallOptions,
  type FetchedChunk,
  isShardsnapError,
  RoutingClient,
  loadSynthetic,
} from '../src';
import { ShardNode } from '../src/server';
import { loadProto } from '../src/wire/proto';
import { buildArtifact } from './helpers/artifacts';
import {
  TcpProxy,
  nodeFor,
  sha256,
  slowScan,
  strategiesWith,
  tempDirFor,
  waitFor,
} from './helpers/harness';
import { freePort } from './helpers/limits';

/** What the hanging server saw of one method: calls, their deadlines, their cancellations. */
interface Seen {
  calls: number;
  cancelled: number;
  deadlines: number[];
}

/**
 * A real gRPC server with the node's three services whose methods never answer (server
 * streams send one message first), recording what the client did to each call.
 */
async function hangingServer(t: ExecutionContext): Promise<{
  address: string;
  seen: (method: string) => Seen;
  /** Calls of every method so far. */
  total: () => number;
}> {
  const proto = loadProto().shardsnap.v1;
  const seen = new Map<string, Seen>();
  const entry = (method: string): Seen => {
    let s = seen.get(method);
    if (!s) seen.set(method, (s = { calls: 0, cancelled: 0, deadlines: [] }));
    return s;
  };
  const server = new grpc.Server();
  for (const service of [proto.Shard.service, proto.Snapshots.service, proto.Migration.service]) {
    const handlers: grpc.UntypedServiceImplementation = {};
    for (const [name, method] of Object.entries(service)) {
      handlers[name] = (
        call: grpc.ServerUnaryCall<object, object> & { write?: (m: object) => void },
      ): void => {
        const s = entry(name);
        s.calls++;
        const deadline = call.getDeadline();
        s.deadlines.push(deadline instanceof Date ? deadline.getTime() : Number(deadline));
        call.on('cancelled', () => s.cancelled++);
        // A client stream is read to its end, as a node would; nothing is ever answered.
        if (method.requestStream)
          (call as unknown as grpc.ServerReadableStream<object, object>).resume();
        if (method.responseStream && name !== 'FetchSnapshot') call.write?.({});
      };
    }
    server.addService(service, handlers);
  }
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, p) =>
      error ? reject(error) : resolve(p),
    ),
  );
  t.teardown(() => server.forceShutdown());
  const total = (): number => [...seen.values()].reduce((n, s) => n + s.calls, 0);
  return { address: `127.0.0.1:${port}`, seen: entry, total };
}

function codeOf(error: unknown): string | undefined {
  return isShardsnapError(error) ? error.code : undefined;
}

async function drain<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** One call of every unary-shaped method (promises), by the gRPC method it starts. */
function unaryCalls(
  client: ShardsnapClient,
  artifactPath: string,
  dir: string,
): Array<[string, string, (options: CallOptions) => Promise<unknown>]> {
  const slots = [{ start: 0, end: 16383 }];
  const key = Buffer.from('k');
  return [
    ['write', 'Write', (o) => client.write({ mutations: [{ op: 'del', key }] }, o)],
    ['read', 'Read', (o) => client.read({ keys: [key] }, o)],
    ['stats', 'Stats', (o) => client.stats({}, o)],
    ['digest', 'Digest', (o) => client.digest({ slots }, o)],
    ['createSnapshot', 'CreateSnapshot', (o) => client.createSnapshot({ slots }, o)],
    ['getSnapshot', 'GetSnapshot', (o) => client.getSnapshot({ snapshotId: 's' }, o)],
    ['listSnapshots', 'ListSnapshots', (o) => client.listSnapshots({}, o)],
    ['deleteSnapshot', 'DeleteSnapshot', (o) => client.deleteSnapshot({ snapshotId: 's' }, o)],
    ['waitReady', 'GetSnapshot', (o) => client.waitReady({ snapshotId: 's' }, o)],
    ['listArchives', 'ListArchives', (o) => client.listArchives({ bucket: 'b' }, o)],
    ['deleteArchive', 'DeleteArchive', (o) => client.deleteArchive({ uri: 's3://b/m' }, o)],
    ['getMigration', 'GetMigration', (o) => client.getMigration({ migrationId: 'm' }, o)],
    ['cancelMigration', 'CancelMigration', (o) => client.cancelMigration({ migrationId: 'm' }, o)],
    ['installFile', 'InstallSnapshot', (o) => client.installFile({ path: artifactPath }, o)],
    [
      'fetchToFile',
      'FetchSnapshot',
      (o) => client.fetchToFile({ out: join(dir, 'f.snap'), snapshotId: 's', parallel: 1 }, o),
    ],
  ];
}

/** One call of every streaming method, by the gRPC method it starts. */
function streamCalls(
  client: ShardsnapClient,
): Array<[string, string, (options: CallOptions) => AsyncIterable<unknown>]> {
  const slots = [{ start: 0, end: 99 }];
  return [
    ['pull', 'PullSnapshot', (o) => client.pull({ source: '127.0.0.1:1', slots }, o)],
    ['restore', 'PullSnapshot', (o) => client.restore({ uri: 's3://b/d/manifest.json' }, o)],
    [
      'archive',
      'ArchiveSnapshot',
      (o) => client.archive({ snapshotId: 's', bucket: 'b', prefix: 'p' }, o),
    ],
    [
      'migrateSlots',
      'MigrateSlots',
      (o) => client.migrateSlots({ source: '127.0.0.1:1', slots }, o),
    ],
    ['fetch', 'FetchSnapshot', (o) => client.fetch({ snapshotId: 's' }, o)],
  ];
}

async function withArtifact(t: ExecutionContext): Promise<string> {
  const artifact = await buildArtifact(50);
  t.teardown(() => artifact.cleanup());
  return artifact.path;
}

test.serial('an already-aborted signal fails every method at once, without a call', async (t) => {
  const server = await hangingServer(t);
  const client = new ShardsnapClient(server.address);
  t.teardown(() => client.close());
  const dir = await tempDirFor(t);
  const path = await withArtifact(t);
  const aborted = AbortSignal.abort();
  const timedOut = AbortSignal.timeout(1);
  await once(timedOut, 'abort');
  for (const [name, , run] of unaryCalls(client, path, dir)) {
    const plain = await t.throwsAsync(run({ signal: aborted }), undefined, name);
    t.is(codeOf(plain), ErrorCodes.cancelled, name);
    const timeout = await t.throwsAsync(run({ signal: timedOut }), undefined, name);
    t.is(codeOf(timeout), ErrorCodes.deadlineExceeded, name);
  }
  for (const [name, , run] of streamCalls(client)) {
    t.is(codeOf(await t.throwsAsync(drain(run({ signal: aborted })))), ErrorCodes.cancelled, name);
    t.is(
      codeOf(await t.throwsAsync(drain(run({ signal: timedOut })))),
      ErrorCodes.deadlineExceeded,
      name,
    );
  }
  for (const method of ['Write', 'Stats', 'GetSnapshot', 'PullSnapshot', 'MigrateSlots']) {
    t.is(server.seen(method).calls, 0, `${method} never reached the server`);
  }
});

test.serial(
  'deadlineMs ends every unary method with deadline_exceeded and reaches the node as a deadline',
  async (t) => {
    t.timeout(60_000);
    const server = await hangingServer(t);
    const client = new ShardsnapClient(server.address);
    t.teardown(() => client.close());
    const dir = await tempDirFor(t);
    const path = await withArtifact(t);
    await client.ready({ deadlineMs: 5_000 });
    for (const [name, method, run] of unaryCalls(client, path, dir)) {
      const before = server.total();
      const started = Date.now();
      const error = await t.throwsAsync(run({ deadlineMs: 400 }), undefined, name);
      const elapsed = Date.now() - started;
      t.is(codeOf(error), ErrorCodes.deadlineExceeded, `${name}: ${error?.message}`);
      t.true(elapsed >= 390 && elapsed < 3_000, `${name} ended at its deadline (${elapsed} ms)`);
      const seen = server.seen(method);
      t.true(server.total() > before, `${name} reached the server`);
      // A fetch's bulk download runs over its own HTTP/2 stream: it is cancelled, not timed.
      if (method !== 'FetchSnapshot') {
        t.true(Number.isFinite(seen.deadlines.at(-1)), `${name} carried a gRPC deadline`);
      }
    }
    t.true(
      await waitFor(
        () => server.seen('Write').cancelled >= 1 && server.seen('InstallSnapshot').cancelled >= 1,
      ),
      'the server saw the calls end',
    );
  },
);

test.serial('aborting a signal mid-call cancels every unary method on the server', async (t) => {
  t.timeout(60_000);
  const server = await hangingServer(t);
  const client = new ShardsnapClient(server.address);
  t.teardown(() => client.close());
  const dir = await tempDirFor(t);
  const path = await withArtifact(t);
  for (const [name, method, run] of unaryCalls(client, path, dir)) {
    const controller = new AbortController();
    const before = server.seen(method).cancelled;
    const calls = server.total();
    const pending = run({ signal: controller.signal });
    await waitFor(() => server.total() > calls);
    await new Promise((resolve) => setTimeout(resolve, 30));
    const aborted = Date.now();
    controller.abort();
    t.is(codeOf(await t.throwsAsync(pending)), ErrorCodes.cancelled, name);
    t.true(Date.now() - aborted < 1_000, `${name} ended at the abort`);
    // fetchToFile's first step (a GetSnapshot) takes no signal: the call ends at the abort,
    // that step ends later, on its own.
    if (name === 'fetchToFile') continue;
    t.true(
      await waitFor(() => server.seen(method).cancelled > before),
      `${name}: the server saw the cancellation`,
    );
  }
  // AbortSignal.timeout mid-call is a deadline, not a cancellation.
  const error = await t.throwsAsync(client.stats({}, { signal: AbortSignal.timeout(100) }));
  t.is(codeOf(error), ErrorCodes.deadlineExceeded);
});

test.serial(
  'streams: a deadline, a timeout signal, an abort and an early break each cancel the server side',
  async (t) => {
    t.timeout(60_000);
    const server = await hangingServer(t);
    const client = new ShardsnapClient(server.address);
    t.teardown(() => client.close());
    for (const [name, method, run] of streamCalls(client)) {
      const cancelledSoFar = (): number => server.seen(method).cancelled;
      // The first message arrives, then the stream hangs until the deadline.
      let received = 0;
      let before = cancelledSoFar();
      const started = Date.now();
      const deadline = await t.throwsAsync(
        (async () => {
          for await (const message of run({ deadlineMs: 500 })) if (message) received++;
        })(),
      );
      t.is(codeOf(deadline), ErrorCodes.deadlineExceeded, `${name}: ${deadline?.message}`);
      t.true(Date.now() - started < 3_000, `${name} ended at its deadline`);
      if (method !== 'FetchSnapshot') t.is(received, 1, `${name} yielded the first message`);
      t.true(
        await waitFor(() => cancelledSoFar() > before),
        `${name}: deadline cancelled the call`,
      );

      before = cancelledSoFar();
      const timeout = await t.throwsAsync(drain(run({ signal: AbortSignal.timeout(200) })));
      t.is(codeOf(timeout), ErrorCodes.deadlineExceeded, name);
      t.true(await waitFor(() => cancelledSoFar() > before), `${name}: timeout cancelled the call`);

      before = cancelledSoFar();
      const controller = new AbortController();
      const aborted = t.throwsAsync(drain(run({ signal: controller.signal })));
      await waitFor(() => server.seen(method).calls > 0);
      setTimeout(() => controller.abort(), 100);
      t.is(codeOf(await aborted), ErrorCodes.cancelled, name);
      t.true(await waitFor(() => cancelledSoFar() > before), `${name}: abort cancelled the call`);

      if (method === 'FetchSnapshot') continue;
      before = cancelledSoFar();
      for await (const message of run({})) if (message) break;
      t.true(await waitFor(() => cancelledSoFar() > before), `${name}: a break cancelled the call`);
    }
  },
);

async function readyArtifact(
  t: ExecutionContext,
): Promise<{ client: ShardsnapClient; id: string; sha256: string; size: number }> {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 2000, valueSize: 100, types: 'mixed', seed: 5 });
  const info = await node.client.waitReady(
    { snapshotId: (await node.client.createSnapshot()).id },
    { deadlineMs: 20_000 },
  );
  return { client: node.client, id: info.id, sha256: info.sha256, size: Number(info.sizeBytes) };
}

test('fetch() yields verified chunks in order whose concatenation is the artifact, and resumes', async (t) => {
  const { client, id, sha256: expected, size } = await readyArtifact(t);
  const chunks: FetchedChunk[] = await drain(
    client.fetch({ snapshotId: id, chunkSize: 16384 }, { deadlineMs: 20_000 }),
  );
  t.true(chunks.length > 3, 'several chunks');
  let at = 0;
  for (const chunk of chunks) {
    t.is(chunk.offset, at);
    t.is(chunk.snapshotId, id);
    t.is(chunk.totalBytes, size);
    at += chunk.data.length;
  }
  const whole = Buffer.concat(chunks.map((c) => c.data));
  t.is(whole.length, size);
  t.is(sha256(whole), expected);

  // Resume from the third chunk, handing the bytes before it: the same artifact, checked whole.
  const third = chunks[2]!;
  const rest = await drain(
    client.fetch({ snapshotId: id, offset: third.offset, prefix: whole.subarray(0, third.offset) }),
  );
  t.is(rest[0]!.offset, third.offset);
  t.is(
    sha256(Buffer.concat([whole.subarray(0, third.offset), ...rest.map((c) => c.data)])),
    expected,
  );
  // Also from an offset inside a chunk, with the prefix as a stream of pieces.
  const cut = third.offset + 1000;
  const pieces = async function* (): AsyncGenerator<Buffer> {
    yield whole.subarray(0, 10);
    await Promise.resolve();
    yield whole.subarray(10, cut);
  };
  const tail = await drain(client.fetch({ snapshotId: id, offset: cut, prefix: pieces() }));
  t.is(sha256(Buffer.concat([whole.subarray(0, cut), ...tail.map((c) => c.data)])), expected);

  // Without the prefix the whole cannot be checked: refused before anything is fetched.
  const noPrefix = await t.throwsAsync(drain(client.fetch({ snapshotId: id, offset: cut })));
  t.is(codeOf(noPrefix), ErrorCodes.invalidArgument);
  // A prefix of the wrong length, the same.
  const short = await t.throwsAsync(
    drain(client.fetch({ snapshotId: id, offset: cut, prefix: whole.subarray(0, 5) })),
  );
  t.is(codeOf(short), ErrorCodes.invalidArgument);
});

test('fetch() without an id creates a snapshot of the slots, and deletes it once complete', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 800, valueSize: 64, types: 'string', seed: 3 });
  const chunks = await drain(node.client.fetch({ slots: [{ start: 0, end: 8191 }] }));
  const id = chunks[0]!.snapshotId;
  t.truthy(id);
  t.true(chunks.reduce((n, c) => n + c.data.length, 0) > 0);
  t.true(
    await waitFor(async () => (await node.client.listSnapshots()).every((s) => s.id !== id)),
    'the snapshot made for the fetch is gone',
  );
});

test('fetch() ends with CHECKSUM_MISMATCH when the artifact does not match its SHA-256', async (t) => {
  const { client, id, sha256: expected } = await readyArtifact(t);

  // A SHA-256 handed by the caller that the artifact does not have.
  const chunks: FetchedChunk[] = [];
  const wrong = await t.throwsAsync(
    (async () => {
      for await (const chunk of client.fetch({ snapshotId: id, expectedSha256: 'ab'.repeat(32) }))
        chunks.push(chunk);
    })(),
  );
  t.true(isShardsnapError(wrong) && wrong.reason === ErrorReasons.checksumMismatch, wrong?.message);
  t.is(codeOf(wrong), ErrorCodes.dataLoss);
  t.is(sha256(Buffer.concat(chunks.map((c) => c.data))), expected, 'every chunk came first');

  // The node's SHA-256 altered on the way: one artifact-sized chunk carries it after its data.
  const node = client.address;
  const proxy = await TcpProxy.start(node, { corruptOnce: Buffer.from(expected) });
  t.teardown(() => proxy.close());
  const viaProxy = new ShardsnapClient(proxy.address);
  t.teardown(() => viaProxy.close());
  const altered = await t.throwsAsync(
    drain(viaProxy.fetch({ snapshotId: id, chunkSize: 16 << 20 })),
  );
  t.is(proxy.corrupted, 1);
  t.true(
    isShardsnapError(altered) && altered.reason === ErrorReasons.checksumMismatch,
    altered?.message,
  );

  // A chunk's bytes altered on the way, with no retry allowed: its CRC32C catches it.
  const whole = Buffer.concat(chunks.map((c) => c.data));
  const needle = whole.subarray(whole.length >> 1, (whole.length >> 1) + 12);
  const proxy2 = await TcpProxy.start(node, { corruptOnce: needle });
  t.teardown(() => proxy2.close());
  const viaProxy2 = new ShardsnapClient(proxy2.address);
  t.teardown(() => viaProxy2.close());
  const corrupt = await t.throwsAsync(
    drain(viaProxy2.fetch({ snapshotId: id, chunkSize: 16384, maxRetries: 0 })),
  );
  t.is(proxy2.corrupted, 1);
  t.true(
    isShardsnapError(corrupt) && corrupt.reason === ErrorReasons.checksumMismatch,
    corrupt?.message,
  );
});

test('a fetch of a snapshot being built: abort, deadline and timeout release the node stream', async (t) => {
  t.timeout(60_000);
  const node = await nodeFor(t, {
    strategies: strategiesWith(slowScan({ batch: 20, delayMs: 40 })),
  });
  // 6 MB: the artifact reaches the stream 1 MiB at a time while the build goes on.
  await loadSynthetic(node.client, { keys: 3000, valueSize: 2000, types: 'string', seed: 4 });
  const streams = async (): Promise<number> => Number((await node.client.stats()).activeStreams);
  // One slow build (about 6 s) serves every case: each fetch of it waits on the build.
  const id = (await node.client.createSnapshot({ strategy: 'slow-scan' })).id;

  // An abort after the first chunk, while the consumer holds it.
  const controller = new AbortController();
  const chunks = node.client.fetch(
    { snapshotId: id, chunkSize: 4096 },
    { signal: controller.signal },
  );
  const iterator = chunks[Symbol.asyncIterator]();
  const first = await iterator.next();
  t.false(first.done);
  t.is(await streams(), 1, 'the fetch holds a stream on the node');
  controller.abort();
  t.is(codeOf(await t.throwsAsync(iterator.next())), ErrorCodes.cancelled);
  t.true(await waitFor(async () => (await streams()) === 0, 5_000), 'released after the abort');

  // A deadline on the slow stream.
  const started = Date.now();
  const deadline = await t.throwsAsync(
    drain(node.client.fetch({ snapshotId: id, chunkSize: 4096 }, { deadlineMs: 400 })),
  );
  t.is(codeOf(deadline), ErrorCodes.deadlineExceeded);
  t.true(Date.now() - started < 3_000);
  t.true(await waitFor(async () => (await streams()) === 0, 5_000), 'released after the deadline');

  // AbortSignal.timeout on the slow stream; and waitReady's deadline on the slow build.
  const timeout = await t.throwsAsync(
    drain(
      node.client.fetch({ snapshotId: id, chunkSize: 4096 }, { signal: AbortSignal.timeout(400) }),
    ),
  );
  t.is(codeOf(timeout), ErrorCodes.deadlineExceeded);
  t.true(await waitFor(async () => (await streams()) === 0, 5_000), 'released after the timeout');
  const waiting = await t.throwsAsync(
    node.client.waitReady({ snapshotId: id }, { deadlineMs: 300 }),
  );
  t.is(codeOf(waiting), ErrorCodes.deadlineExceeded);
  t.is(
    (await node.client.getSnapshot({ snapshotId: id })).state,
    'BUILDING',
    'the cases ran during the build',
  );
});

test('pull: aborting mid-stream ends the transfer on both nodes', async (t) => {
  t.timeout(60_000);
  const source = await nodeFor(t, {
    strategies: strategiesWith(slowScan({ batch: 20, delayMs: 40 })).prefer('memory', [
      'slow-scan',
    ]),
  });
  await loadSynthetic(source.client, { keys: 3000, valueSize: 200, types: 'string', seed: 6 });
  const target = await nodeFor(t, { slots: [] });
  const controller = new AbortController();
  const progress = target.client.pull(
    { source: source.node.address, slots: [{ start: 0, end: 16383 }], force: true },
    { signal: controller.signal },
  );
  const pulling = drain(progress);
  t.true(
    await waitFor(() => target.node.transfers.count('recv') === 1, 5_000),
    'the target is pulling',
  );
  controller.abort();
  t.is(codeOf(await t.throwsAsync(pulling)), ErrorCodes.cancelled);
  t.true(await waitFor(() => target.node.transfers.count('recv') === 0, 5_000), 'target released');
  t.true(await waitFor(() => source.node.transfers.count('send') === 0, 5_000), 'source released');
});

test('ready() and connectTimeoutMs: UNAVAILABLE naming the address, or the node once it is up', async (t) => {
  t.timeout(30_000);
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const client = new ShardsnapClient(address);
  t.teardown(() => client.close());
  let started = Date.now();
  const notReady = await t.throwsAsync(client.ready({ deadlineMs: 300 }));
  t.true(Date.now() - started < 2_000, 'within its deadline');
  t.is(codeOf(notReady), ErrorCodes.unavailable);
  t.true(notReady.message.includes(address), notReady.message);
  t.is(isShardsnapError(notReady) ? notReady.metadata.address : undefined, address);

  // A call waits for the connection up to connectTimeoutMs, then names the address.
  const patient = new ShardsnapClient(address, { connectTimeoutMs: 300 });
  t.teardown(() => patient.close());
  started = Date.now();
  const unreachable = await t.throwsAsync(patient.stats());
  t.true(Date.now() - started < 2_000);
  t.is(codeOf(unreachable), ErrorCodes.unavailable);
  t.true(unreachable.message.includes(address), unreachable.message);
  // A call deadline shorter than the connect timeout is the call's deadline.
  t.is(codeOf(await t.throwsAsync(patient.stats({}, { deadlineMs: 100 }))), 'deadline_exceeded');

  // A node that comes up while the call waits is reached.
  const waiting = new ShardsnapClient(address, { connectTimeoutMs: 15_000 });
  t.teardown(() => waiting.close());
  const stats = waiting.stats();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const dataDir = await tempDirFor(t);
  const node = await ShardNode.start({
    listen: address,
    dataDir,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(async () => {
    await node.stop(500);
    await rm(dataDir, { recursive: true, force: true });
  });
  t.is(Number((await stats).keyCount), 0);
  await waiting.ready({ deadlineMs: 1_000 });
});

test('the RoutingClient bounds a whole call, retries included, by its deadline', async (t) => {
  const port = await freePort();
  const routing = new RoutingClient(`127.0.0.1:${port}`);
  t.teardown(() => routing.close());
  const aborted = await t.throwsAsync(
    routing.write(
      { mutations: [{ op: 'del', key: Buffer.from('x') }] },
      { signal: AbortSignal.abort() },
    ),
  );
  t.is(codeOf(aborted), ErrorCodes.cancelled);
  const unreachable = await t.throwsAsync(
    routing.read({ keys: [Buffer.from('x')] }, { deadlineMs: 2_000 }),
  );
  t.is(codeOf(unreachable), ErrorCodes.unavailable);
});
