/**
 * Transfer limits of a node: concurrent sends and receives (RESOURCE_EXHAUSTED with a
 * retry hint), the shared send and receive rates, the snapshot spool limit, snapshots a
 * transfer made for itself, the advertised address, and the graceful shutdown (in
 * process and through `shardsnap serve` on SIGTERM). All on loopback.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { ShardsnapClient, migrateSlots } from '../src/client';
import {
  ErrorCodes,
  type ShardsnapError,
  type SlotRange,
  isShardsnapError,
  slotOf,
} from '../src/core';
import type { ArchiveTarget, ArchiveTargets } from '../src/archive';
import type { SnapshotInfo__Output } from '../src/generated/shardsnap/v1/SnapshotInfo';
import { Connection, RETRY_PUSHBACK_HEADER, fromServiceError } from '../src/wire';
import {
  b,
  keyInSlotOf,
  nodeFor,
  rawFetch,
  sha256,
  sleep,
  stringSets,
  tempDirFor,
  waitFor,
} from './helpers/harness';
import { startNode } from './helpers/nodes';
import {
  KiB,
  MiB,
  freePort,
  healthCheckerFor,
  loadBytes,
  logLines,
  serveJson,
} from './helpers/limits';
import { tagsIn } from './helpers/split';

// --- helpers -----------------------------------------------------------------------------

async function readySnapshot(
  client: ShardsnapClient,
  slots: SlotRange[] = [],
): Promise<SnapshotInfo__Output> {
  const created = await client.createSnapshot({ slots });
  return client.waitReady({ snapshotId: created.id });
}

/** Runs a pull (or an archive) to its end and returns its last progress message. */
async function pullAll<T>(progress: AsyncGenerator<T>): Promise<T | undefined> {
  let last: T | undefined;
  for await (const message of progress) last = message;
  return last;
}

/** Reads a raw server stream to its end and returns its final status (with trailing metadata). */
function streamStatus(stream: grpc.ClientReadableStream<unknown>): Promise<grpc.StatusObject> {
  return new Promise((resolve) => {
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('status', (status: grpc.StatusObject) => resolve(status));
  });
}

/** The error `promise` rejects with, as a ShardsnapError (fails the test otherwise). */
async function refusal(t: ExecutionContext, promise: Promise<unknown>): Promise<ShardsnapError> {
  const error = await t.throwsAsync(promise);
  t.true(isShardsnapError(error), `a ShardsnapError, got ${String(error)}`);
  return error as ShardsnapError;
}

/** Settles with `promise`, or with 'timeout' after `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function between(
  t: ExecutionContext,
  seconds: number,
  expected: number,
  low: number,
  high: number,
  what: string,
): void {
  t.true(
    seconds >= expected * low && seconds <= expected * high,
    `${what}: ${seconds.toFixed(2)} s, expected ${low}..${high} × ${expected.toFixed(2)} s`,
  );
}

/**
 * Archive targets that must never be used: the tests only ask for archives the node has
 * to refuse before it opens an upload. Any use fails the call instead of reaching out.
 */
const noArchives: ArchiveTargets = {
  open: () =>
    new Proxy({} as ArchiveTarget, {
      get: () => {
        throw new Error('archive target used in a test that expects a refusal');
      },
    }),
  close: () => undefined,
};

const BUSY = /retry in 1 s/;

// --- concurrency limits ------------------------------------------------------------------

/** A node allowing one send at a time, with a rate-limited fetch of ~4 MiB streaming from it. */
async function busySender(t: ExecutionContext, options: Parameters<typeof nodeFor>[1] = {}) {
  const source = await nodeFor(t, { maxConcurrentSends: 1, maxSendRate: 2 * MiB, ...options });
  await loadBytes(source.client, 4 * MiB);
  const info = await readySnapshot(source.client);
  const dir = await tempDirFor(t);
  const first = source.client.fetchToFile({
    snapshotId: info.id,
    out: join(dir, 'first.snap'),
    maxRetries: 0,
  });
  // Awaited by the test; handled here too so that a failing assertion leaves no stray rejection.
  first.catch(() => undefined);
  t.true(
    await waitFor(() => source.node.transfers.count('send') === 1),
    'the first fetch is streaming',
  );
  return { source, info, dir, first };
}

test('maxConcurrentSends: a second send is refused with RESOURCE_EXHAUSTED and a 1 s retry hint, then admitted again', async (t) => {
  const { source, info, dir, first } = await busySender(t, { archiveTargets: noArchives });
  const conn = source.client.connection;

  // The raw gRPC call: RESOURCE_EXHAUSTED, the hint in the message and in the trailers.
  const raw = await rawFetch(conn, { snapshotId: info.id });
  t.is(raw.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(raw.error?.details ?? '', BUSY);
  t.deepEqual(raw.error?.metadata?.get(RETRY_PUSHBACK_HEADER), ['1000']);
  t.is(raw.chunks.length, 0);
  // The same error read by a grpc-js client becomes a ShardsnapError with the hint.
  const restored = fromServiceError(raw.error, 'FetchSnapshot');
  t.is(restored.code, ErrorCodes.resourceExhausted);
  t.is(restored.retryAfterMs, 1000);

  // A fetch that would build its own snapshot is refused before it builds one.
  const creating = await rawFetch(conn, { create: { slots: [] } });
  t.is(creating.error?.code, grpc.status.RESOURCE_EXHAUSTED);
  t.deepEqual(
    (await source.client.listSnapshots()).map((s) => s.id),
    [info.id],
    'no snapshot was built for the refused fetch',
  );

  // ArchiveSnapshot is a send too.
  const archive = await refusal(
    t,
    pullAll(source.client.archive({ snapshotId: info.id, bucket: 'limits-test' })),
  );
  t.is(archive.code, ErrorCodes.resourceExhausted);
  t.is(archive.retryAfterMs, 1000, 'ArchiveSnapshot refusal carries the retry hint');

  // fetchToFile is refused the same way (its retry hint: see the next test).
  const second = await refusal(
    t,
    source.client.fetchToFile({
      snapshotId: info.id,
      out: join(dir, 'second.snap'),
      maxRetries: 0,
    }),
  );
  t.is(second.code, ErrorCodes.resourceExhausted);
  t.regex(second.message, BUSY);

  t.is(source.node.transfers.count('send'), 1, 'refusals did not count as transfers');
  const done = await first;
  t.is(done.bytes, Number(info.sizeBytes));
  t.is(done.sha256, info.sha256);
  t.is(source.node.transfers.count('send'), 0);

  // Once the first is over, a new fetch is admitted.
  const again = await rawFetch(conn, { snapshotId: info.id, length: 64 * KiB });
  t.is(again.error, undefined);
  t.is(
    again.chunks.reduce((n, c) => n + c.data.length, 0),
    64 * KiB,
  );
});

test("a busy node's retry hint reaches the client: fetchToFile, and a pull from the busy node", async (t) => {
  const { source, info, dir, first } = await busySender(t);
  const target = await nodeFor(t);

  const fetched = await refusal(
    t,
    source.client.fetchToFile({
      snapshotId: info.id,
      out: join(dir, 'second.snap'),
      maxRetries: 0,
    }),
  );
  const pulled = await refusal(t, pullAll(target.client.pull({ source: source.node.address })));
  await first;
  t.is(fetched.code, ErrorCodes.resourceExhausted);
  t.is(pulled.code, ErrorCodes.resourceExhausted);
  t.deepEqual(
    { fetchToFile: fetched.retryAfterMs, pullFromBusySource: pulled.retryAfterMs },
    { fetchToFile: 1000, pullFromBusySource: 1000 },
    'retryAfterMs restored from grpc-retry-pushback-ms',
  );
});

test('maxConcurrentRecvs: a second pull, install or split into a busy node is refused with RESOURCE_EXHAUSTED, then admitted again', async (t) => {
  const source = await nodeFor(t, { maxSendRate: 2 * MiB });
  const target = await nodeFor(t, { maxConcurrentRecvs: 1 });
  await loadBytes(source.client, 4 * MiB);
  const from = source.node.address;
  // A small artifact to install while the target is busy.
  const dir = await tempDirFor(t);
  const artifact = join(dir, 'small.snap');
  await source.client.fetchToFile({ out: artifact, slots: [{ start: 0, end: 99 }] });

  const first = pullAll(target.client.pull({ source: from }));
  first.catch(() => undefined);
  t.true(
    await waitFor(
      () => target.node.transfers.count('recv') === 1 && source.node.transfers.count('send') === 1,
      5_000,
    ),
    'the first pull is streaming',
  );

  const raw = await streamStatus(target.client.connection.snapshots.PullSnapshot({ source: from }));
  t.is(raw.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(raw.details, BUSY);
  t.deepEqual(raw.metadata.get(RETRY_PUSHBACK_HEADER), ['1000']);

  const second = await refusal(t, pullAll(target.client.pull({ source: from })));
  t.is(second.code, ErrorCodes.resourceExhausted);
  t.regex(second.message, BUSY);
  t.is(second.retryAfterMs, 1000);

  const install = await refusal(t, target.client.installFile({ path: artifact }));
  t.is(install.code, ErrorCodes.resourceExhausted);
  t.is(install.retryAfterMs, 1000);

  const split = await refusal(
    t,
    migrateSlots(target.client.connection, { source: from, slots: [{ start: 0, end: 99 }] }),
  );
  t.is(split.code, ErrorCodes.resourceExhausted);
  t.is(split.retryAfterMs, 1000);
  t.is(target.node.transfers.count('recv'), 1);

  const done = await first;
  t.true(done?.done);
  t.true(Number(done?.keysInstalled) > 0);
  t.is(target.node.transfers.count('recv'), 0);

  const again = await pullAll(target.client.pull({ source: from, slots: [{ start: 0, end: 99 }] }));
  t.true(again?.done, 'a pull after the first ended is admitted');
});

// --- rates -------------------------------------------------------------------------------

test.serial(
  'maxSendRate: a fetch of N bytes takes about N/R, and concurrent fetches share the rate',
  async (t) => {
    const rate = 4 * MiB;
    const source = await nodeFor(t, { maxSendRate: rate });
    await loadBytes(source.client, 7 * MiB);
    const info = await readySnapshot(source.client);
    const size = Number(info.sizeBytes);
    const expected = size / rate;
    t.log(
      `artifact ${(size / MiB).toFixed(2)} MiB at ${rate / MiB} MiB/s: N/R = ${expected.toFixed(2)} s`,
    );
    const dir = await tempDirFor(t);
    // The bucket holds up to its burst (1 MiB at this rate) before the first take, so the
    // time is nearer (N - 1 MiB)/R; the bounds are loose on purpose.

    let started = performance.now();
    const fetched = await source.client.fetchToFile({
      snapshotId: info.id,
      out: join(dir, 'one.snap'),
      maxRetries: 0,
    });
    const one = (performance.now() - started) / 1000;
    t.is(fetched.bytes, size);
    t.log(`one stream: ${one.toFixed(2)} s`);
    between(t, one, expected, 0.7, 1.6, 'one fetch');

    // Two halves at once pay into the same bucket: together about N/R again, not N/2R.
    await sleep(500); // the bucket refills its burst, as before the first fetch
    const half = Math.floor(size / 2);
    started = performance.now();
    const [a, bHalf] = await Promise.all([
      rawFetch(source.client.connection, { snapshotId: info.id, offset: 0, length: half }),
      rawFetch(source.client.connection, {
        snapshotId: info.id,
        offset: half,
        length: size - half,
      }),
    ]);
    const two = (performance.now() - started) / 1000;
    t.is(a.error, undefined);
    t.is(bHalf.error, undefined);
    const bytes = [...a.chunks, ...bHalf.chunks].reduce((n, c) => n + c.data.length, 0);
    t.is(bytes, size);
    t.log(`two streams of N/2: ${two.toFixed(2)} s`);
    between(t, two, expected, 0.7, 1.6, 'two concurrent half fetches');
  },
);

test.serial('maxRecvRate: a pull of N bytes takes about N/R', async (t) => {
  const rate = 4 * MiB;
  const source = await nodeFor(t);
  const target = await nodeFor(t, { maxRecvRate: rate });
  await loadBytes(source.client, 7 * MiB);
  const info = await readySnapshot(source.client);
  const size = Number(info.sizeBytes);
  const expected = size / rate;

  const started = performance.now();
  const done = await pullAll(
    target.client.pull({ source: source.node.address, snapshotId: info.id }),
  );
  const seconds = (performance.now() - started) / 1000;
  t.true(done?.done);
  t.is(Number(done?.bytesReceived), size);
  t.log(`pull of ${(size / MiB).toFixed(2)} MiB at ${rate / MiB} MiB/s: ${seconds.toFixed(2)} s`);
  between(t, seconds, expected, 0.7, 1.6, 'pull');
});

// --- spool -------------------------------------------------------------------------------

test('spoolMaxBytes below the data size: CreateSnapshot and self-made fetches and pulls are refused, nothing is left', async (t) => {
  const node = await nodeFor(t, { spoolMaxBytes: MiB });
  const target = await nodeFor(t);
  await loadBytes(node.client, 2 * MiB);
  t.true(Number((await node.client.stats()).dataBytes) > MiB, 'the data exceeds the spool');

  const create = await refusal(t, node.client.createSnapshot());
  t.is(create.code, ErrorCodes.resourceExhausted);
  t.regex(create.message, /spool/);

  const raw = await rawFetch(node.client.connection, { create: { slots: [] } });
  t.is(raw.error?.code, grpc.status.RESOURCE_EXHAUSTED);

  const dir = await tempDirFor(t);
  const fetched = await refusal(
    t,
    node.client.fetchToFile({ out: join(dir, 'refused.snap'), maxRetries: 0 }),
  );
  t.is(fetched.code, ErrorCodes.resourceExhausted);

  const pulled = await refusal(t, pullAll(target.client.pull({ source: node.node.address })));
  t.is(pulled.code, ErrorCodes.resourceExhausted);

  t.deepEqual(await node.client.listSnapshots(), []);
  t.is(node.node.catalog.list().length, 0);
  t.is(node.node.catalog.storedBytes, 0);
  t.is(node.node.transfers.count('send'), 0);
});

test('spoolMaxBytes above the data size: a snapshot is built; the stored bytes count against the next', async (t) => {
  const data = 2 * MiB;
  const node = await nodeFor(t, { spoolMaxBytes: 3 * MiB });
  await loadBytes(node.client, data);
  const first = await readySnapshot(node.client);
  t.is(first.state, 'READY');
  t.true(Number(first.sizeBytes) > data);

  // Stored (~2 MiB) plus expected (~2 MiB) exceeds 3 MiB.
  const second = await refusal(t, node.client.createSnapshot());
  t.is(second.code, ErrorCodes.resourceExhausted);
  t.deepEqual(
    (await node.client.listSnapshots()).map((s) => s.id),
    [first.id],
  );

  await node.client.deleteSnapshot({ snapshotId: first.id });
  const third = await readySnapshot(node.client);
  t.is(third.state, 'READY', 'after a delete the spool has room again');
});

/** A node with `spoolMaxBytes: 1 MiB` holding `keys` values of 4 KiB, all in one slot. */
async function oneSlotNode(t: ExecutionContext, keys: number) {
  const tag = 'spool';
  const slot = slotOf(b(`{${tag}}`));
  const node = await nodeFor(t, { spoolMaxBytes: MiB });
  const values = stringSets(`{${tag}}k`, keys, 4 * KiB);
  for (let i = 0; i < values.length; i += 128)
    await node.client.write({ mutations: values.slice(i, i + 128) });
  return { node, slot, other: slot === 0 ? 1 : 0 };
}

// A snapshot of that one slot is estimated at 1/16384 of the data: admitted, then it grows.
test('a build that outgrows the spool is aborted (FAILED) and leaves no artifact', async (t) => {
  const { node, slot } = await oneSlotNode(t, 1024);
  const created = await node.client.createSnapshot({ slots: [{ start: slot, end: slot }] });
  await t.throwsAsync(node.client.waitReady({ snapshotId: created.id }), {
    message: /outgrew the snapshot spool/,
  });
  const info = await node.client.getSnapshot({ snapshotId: created.id });
  t.is(info.state, 'FAILED');
  t.regex(info.error, /outgrew/);
  t.is(existsSync(node.node.catalog.get(created.id).artifactPath), false);
  // A fetch of it says why, with the limit's status rather than the request's fault.
  const fetched = await t.throwsAsync(
    node.client.fetchToFile({
      out: join(await tempDirFor(t), 'outgrown.snap'),
      snapshotId: created.id,
    }),
  );
  t.true(isShardsnapError(fetched, ErrorCodes.resourceExhausted), String(fetched));
});

test('a build that passes the spool limit with its last bytes is not READY', async (t) => {
  // ~1.5 MiB: the first flush (1 MiB) is at the limit, the last one beyond it.
  const { node, slot } = await oneSlotNode(t, 384);
  const created = await node.client.createSnapshot({ slots: [{ start: slot, end: slot }] });
  const outcome = await node.client.waitReady({ snapshotId: created.id }).then(
    (info) => `READY with ${info.sizeBytes} bytes`,
    (error: unknown) => String(error),
  );
  t.log(outcome);
  t.regex(outcome, /outgrew the snapshot spool/, 'a snapshot larger than spoolMaxBytes is FAILED');
});

test('the bytes of a build aborted for the spool no longer count against it', async (t) => {
  const { node, slot, other } = await oneSlotNode(t, 1024);
  const created = await node.client.createSnapshot({ slots: [{ start: slot, end: slot }] });
  await t.throwsAsync(node.client.waitReady({ snapshotId: created.id }), { message: /outgrew/ });
  // Its artifact is gone: a snapshot of an empty slot (a few bytes) fits.
  const small = await node.client
    .createSnapshot({ slots: [{ start: other, end: other }] })
    .then((s) => node.client.waitReady({ snapshotId: s.id }))
    .then(
      (info) => `READY with ${info.sizeBytes} bytes`,
      (error: unknown) => String(error),
    );
  t.log(`stored bytes counted by the catalog: ${node.node.catalog.storedBytes}`);
  t.regex(small, /^READY/, 'a small snapshot is admitted after the failed build');
});

// --- snapshots made for a transfer -------------------------------------------------------

test('snapshots a transfer made for itself are deleted when it ends; named ones are kept', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  await loadBytes(source.client, MiB);
  const dir = await tempDirFor(t);
  const list = async (): Promise<string[]> =>
    (await source.client.listSnapshots()).map((s) => s.id);

  const file = await source.client.fetchToFile({ out: join(dir, 'own.snap') });
  t.true(file.bytes > 0);
  t.deepEqual(await list(), [], 'fetchToFile without snapshotId');

  const raw = await rawFetch(source.client.connection, { create: { slots: [] } });
  t.is(raw.error, undefined);
  t.true(raw.chunks.at(-1)?.last);
  t.true(
    await waitFor(async () => (await list()).length === 0, 3_000),
    'raw FetchSnapshot without snapshot_id',
  );

  const pulled = await pullAll(target.client.pull({ source: source.node.address }));
  t.true(pulled?.done);
  t.deepEqual(await list(), [], 'PullSnapshot without snapshot_id');

  const named = await readySnapshot(source.client);
  const viaFile = await source.client.fetchToFile({
    snapshotId: named.id,
    out: join(dir, 'named.snap'),
  });
  t.is(viaFile.sha256, named.sha256);
  const viaRaw = await rawFetch(source.client.connection, { snapshotId: named.id });
  t.is(viaRaw.error, undefined);
  t.is(sha256(Buffer.concat(viaRaw.chunks.map((c) => c.data))), named.sha256);
  const viaPull = await pullAll(
    target.client.pull({ source: source.node.address, snapshotId: named.id }),
  );
  t.true(viaPull?.done);
  await sleep(200);
  t.deepEqual(await list(), [named.id], 'a snapshot fetched by id stays');
  const sidecar = JSON.parse(await readFile(join(dir, 'named.snap.json'), 'utf8')) as {
    id: string;
  };
  t.is(sidecar.id, named.id);
});

// --- advertise ---------------------------------------------------------------------------

test('advertise: MOVED after a split names the advertised address of the target', async (t) => {
  const port = await freePort();
  const advertised = `localhost:${port}`;
  const source = await nodeFor(t);
  const target = await nodeFor(t, {
    listen: `127.0.0.1:${port}`,
    advertise: advertised,
    slots: [],
  });
  t.is(target.node.address, advertised);
  t.regex(source.node.address, /^127\.0\.0\.1:\d+$/, 'the default is the bound address');

  const moving: SlotRange = { start: 0, end: 8191 };
  const [tag] = tagsIn(moving, 1) as [string];
  await source.client.write({
    mutations: Array.from({ length: 20 }, (_, i) => ({
      op: 'set' as const,
      key: keyInSlotOf(tag, `k${i}`),
      value: b(`v${i}`),
      expireAtMs: 0,
    })),
  });
  const conn = new Connection(`127.0.0.1:${port}`);
  t.teardown(() => conn.close());
  const done = await migrateSlots(conn, { source: source.node.address, slots: [moving] });
  t.is(done.phase, 'DONE');
  t.is(done.target, advertised);

  const moved = await refusal(
    t,
    source.client.write({
      mutations: [{ op: 'set', key: keyInSlotOf(tag, 'after'), value: b('x'), expireAtMs: 0 }],
    }),
  );
  const slot = slotOf(keyInSlotOf(tag, 'after'));
  t.regex(moved.message, new RegExp(`MOVED ${slot} localhost:${port}(\\s|$)`));
  t.is(moved.code, ErrorCodes.moved);
  t.like(moved, {
    reason: 'MOVED',
    metadata: { slot: String(slot), address: `localhost:${port}` },
  });
});

test('advertise: port 0 or a wildcard host is refused at start with INVALID_ARGUMENT', async (t) => {
  for (const advertise of ['localhost:0', '0.0.0.0:7420', '[::]:7420', 'no-port']) {
    const error = await refusal(t, startNode({ advertise }));
    t.is(error.code, ErrorCodes.invalidArgument, advertise);
  }
});

// --- graceful shutdown -------------------------------------------------------------------

test.serial(
  'stop(grace): NOT_SERVING at once, new builds refused, transfers cancelled after the grace',
  async (t) => {
    const served = await nodeFor(t, { maxSendRate: MiB });
    const { node, client } = served;
    await loadBytes(client, 3 * MiB);
    const info = await readySnapshot(client);
    const dir = await tempDirFor(t);
    const check = healthCheckerFor(t, node.address);
    t.is(await check(), 'SERVING');

    const viaFile = client
      .fetchToFile({ snapshotId: info.id, out: join(dir, 'cut.snap'), maxRetries: 0 })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    const viaRaw = rawFetch(client.connection, { snapshotId: info.id });
    t.true(await waitFor(() => node.transfers.count('send') === 2), 'both fetches are streaming');

    const started = performance.now();
    const stopping = node.stop(300);
    const [health, snapshotsHealth, create, fetch] = await Promise.all([
      check(),
      check('shardsnap.v1.Snapshots'),
      client.createSnapshot().then(
        () => undefined,
        (error: unknown) => error,
      ),
      rawFetch(client.connection, { snapshotId: info.id, length: KiB }),
    ]);
    t.is(health, 'NOT_SERVING');
    t.is(snapshotsHealth, 'NOT_SERVING');
    t.true(isShardsnapError(create, ErrorCodes.unavailable), `CreateSnapshot: ${String(create)}`);
    t.is(fetch.error?.code, grpc.status.UNAVAILABLE, 'a new FetchSnapshot while draining');

    const fileError = await within(viaFile, 10_000);
    t.true(isShardsnapError(fileError, ErrorCodes.cancelled), `fetchToFile: ${String(fileError)}`);
    const raw = await within(viaRaw, 10_000);
    t.not(raw, 'timeout');
    if (raw !== 'timeout') {
      t.is(raw.error?.code, grpc.status.CANCELLED);
      const got = raw.chunks.reduce((n, c) => n + c.data.length, 0);
      t.true(
        got > 0 && got < Number(info.sizeBytes),
        `the raw fetch got ${got} bytes before it ended`,
      );
    }
    t.not(await within(stopping, 10_000), 'timeout');
    const seconds = (performance.now() - started) / 1000;
    t.log(`stop(300) returned after ${seconds.toFixed(2)} s`);
    t.true(seconds >= 0.3, 'transfers had their grace');
    t.true(seconds < 3, `stop took ${seconds.toFixed(2)} s`);
  },
);

test.serial('stop(grace): a fetch that finishes within the grace completes', async (t) => {
  const served = await nodeFor(t, { maxSendRate: 2 * MiB });
  const { node, client } = served;
  await loadBytes(client, 2 * MiB);
  const info = await readySnapshot(client);
  const dir = await tempDirFor(t);

  const fetching = client.fetchToFile({
    snapshotId: info.id,
    out: join(dir, 'whole.snap'),
    maxRetries: 0,
  });
  t.true(await waitFor(() => node.transfers.count('send') === 1), 'the fetch is streaming');
  const started = performance.now();
  const stopping = node.stop(5_000);
  const result = await fetching;
  t.is(result.bytes, Number(info.sizeBytes));
  t.is(result.sha256, info.sha256);
  t.not(await within(stopping, 10_000), 'timeout');
  const seconds = (performance.now() - started) / 1000;
  t.log(`stop(5000) returned after ${seconds.toFixed(2)} s`);
  t.true(seconds < 4, 'the stop did not wait out the whole grace once the fetch was done');
});

// --- the CLI -----------------------------------------------------------------------------

test.serial(
  'serve --shutdown-grace: SIGTERM during a slow fetch exits 0 and the fetch fails instead of hanging',
  async (t) => {
    const served = await serveJson(t, [
      '--shutdown-grace',
      '1s',
      '--max-send-rate',
      '1MiB',
      '--log-level',
      'info',
    ]);
    t.regex(served.address, /^127\.0\.0\.1:\d+$/);
    const client = new ShardsnapClient(served.address);
    t.teardown(() => client.close());
    await loadBytes(client, 4 * MiB);
    const info = await readySnapshot(client);
    const dir = await tempDirFor(t);

    let received = 0;
    const fetching = client
      .fetchToFile({
        snapshotId: info.id,
        out: join(dir, 'slow.snap'),
        maxRetries: 0,
        onProgress: (bytes) => (received = bytes),
      })
      .then(
        () => undefined,
        (error: unknown) => error,
      );
    t.true(await waitFor(() => received > 0, 10_000), 'the fetch is streaming');

    const started = performance.now();
    process.kill(served.child.pid!, 'SIGTERM');
    const exit = await within(served.exited, 8_000);
    const seconds = (performance.now() - started) / 1000;
    t.log(`exited after ${seconds.toFixed(2)} s: ${JSON.stringify(exit)}`);
    t.deepEqual(exit, { code: 0, signal: null });
    t.true(seconds < 5, `exit took ${seconds.toFixed(2)} s`);

    const error = await within(fetching, 5_000);
    t.true(
      isShardsnapError(error, ErrorCodes.cancelled) ||
        isShardsnapError(error, ErrorCodes.unavailable),
      `the fetch failed with cancelled or unavailable: ${String(error)}`,
    );
    t.true(received < Number(info.sizeBytes), 'the fetch was cut short');

    const logs = logLines(served.stderr());
    const drained = logs.find((line) => line.msg === 'transfers in flight at shutdown');
    t.like(drained, { cancelled: 1, graceMs: 1000 });
    t.truthy(logs.find((line) => line.msg === 'stopped'));
  },
);
