import test, { type ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { loadSynthetic } from '../src/client';
import type { SnapshotChunk__Output } from '../src/generated/shardsnap/v1/SnapshotChunk';
import type { FetchSnapshotRequest } from '../src/generated/shardsnap/v1/FetchSnapshotRequest';
import {
  nodeFor,
  rawFetch,
  rawUnary,
  sleep,
  slowScan,
  smallWindowSnapshots,
  strategiesWith,
  tempDirFor,
  waitFor,
} from './helpers/harness';
import { startNode, type TestNode } from './helpers/nodes';

const snapshotDir = (node: TestNode, id: string): string => join(node.dataDir, 'snapshots', id);

/**
 * A fetch read by a client with small HTTP/2 windows: resolves with the stream once the
 * first chunk has arrived, then pauses it so the server waits for the client.
 */
async function openPausedFetch(t: ExecutionContext, node: TestNode, request: FetchSnapshotRequest) {
  const client = smallWindowSnapshots(node.node.address);
  t.teardown(() => client.close());
  const stream: ClientReadableStream<SnapshotChunk__Output> = client.FetchSnapshot(request, {
    deadline: Date.now() + 20_000,
  });
  const chunks: SnapshotChunk__Output[] = [];
  let ended: (value: { error?: ServiceError }) => void;
  const end = new Promise<{ error?: ServiceError }>((resolve) => (ended = resolve));
  stream.on('error', (error: ServiceError) => ended({ error }));
  stream.on('end', () => ended({}));
  const first = await new Promise<SnapshotChunk__Output>((resolve, reject) => {
    stream.once('data', (chunk: SnapshotChunk__Output) => {
      stream.pause();
      resolve(chunk);
    });
    void end.then(({ error }) => reject(error ?? new Error('stream ended before its first chunk')));
  });
  chunks.push(first);
  stream.on('data', (chunk: SnapshotChunk__Output) => chunks.push(chunk));
  t.teardown(() => stream.cancel());
  return { stream, first, chunks, end };
}

async function idle(node: TestNode, timeoutMs = 3_000) {
  return waitFor(async () => {
    const s = await node.client.stats();
    return s.activeStreams === 0 && s.activeSnapshots === 0 && s.activeBuilds === 0 ? s : undefined;
  }, timeoutMs);
}

test('a cancelled fetch of a READY snapshot releases its lease', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 3000, valueSize: 400, types: 'string', seed: 1 });
  const info = await node.client.waitReady({ snapshotId: (await node.client.createSnapshot()).id });
  t.true(Number(info.sizeBytes) > 1 << 20);

  const fetch = await openPausedFetch(t, node, { snapshotId: info.id, chunkSize: 4096 });
  t.is(fetch.first.offset, 0);
  await sleep(100);
  const during = await node.client.stats();
  t.is(during.activeStreams, 1, 'the paused fetch holds a lease');
  // A leased snapshot cannot be collected and is still listed.
  t.is(during.storedSnapshots, 1);

  fetch.stream.cancel();
  const { error } = await fetch.end;
  t.is(error?.code, status.CANCELLED);
  const after = await idle(node);
  t.truthy(after, 'activeStreams and activeSnapshots drop to 0 after the cancel');
  t.is(after?.activeStreams, 0);
  t.is(after?.activeSnapshots, 0);
  t.true(fetch.chunks.length < Number(info.sizeBytes) / 4096, 'the stream really was cut short');
  // The snapshot itself is still there and whole.
  const whole = await rawFetch(node.client.connection, { snapshotId: info.id, offset: 0 });
  t.is(whole.error, undefined);
  t.is(whole.chunks[whole.chunks.length - 1]!.sha256, info.sha256);
});

test('a cancelled fetch of a snapshot being built releases its lease and the build view', async (t) => {
  const node = await nodeFor(t, {
    strategies: strategiesWith(slowScan({ batch: 200, delayMs: 15 })),
  });
  await loadSynthetic(node.client, { keys: 3000, valueSize: 700, types: 'string', seed: 2 });
  const fetch = await openPausedFetch(t, node, {
    snapshotId: '',
    chunkSize: 4096,
    create: { slots: [], strategy: 'slow-scan', compression: 'COMPRESSION_NONE' },
  });
  const id = fetch.first.snapshotId;
  t.truthy(fetch.first.info);
  t.is(fetch.first.info!.state, 'BUILDING', 'streamed while building');
  const during = await node.client.stats();
  t.is(during.activeStreams, 1);
  t.is(during.activeSnapshots, 1, 'the build holds its point-in-time view');
  t.is(during.activeBuilds, 1);

  fetch.stream.cancel();
  const { error } = await fetch.end;
  t.is(error?.code, status.CANCELLED);
  const after = await idle(node, 5_000);
  t.truthy(after, 'no streams, views or builds left');
  // Cancelling a fetch does not cancel the snapshot: it completes.
  t.is((await node.client.getSnapshot({ snapshotId: id })).state, 'READY');
});

test('DeleteSnapshot removes the snapshot directory', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 500, valueSize: 100, types: 'mixed', seed: 3 });
  const info = await node.client.waitReady({ snapshotId: (await node.client.createSnapshot()).id });
  const dir = snapshotDir(node, info.id);
  t.true(existsSync(join(dir, 'artifact.bin')));
  t.true(existsSync(join(dir, 'manifest.json')));
  const stored = await node.client.stats();
  t.is(stored.storedSnapshots, 1);
  t.is(Number(stored.storedBytes), Number(info.sizeBytes));

  const deleted = await rawUnary<{ deleted: boolean }>((cb) =>
    node.client.connection.snapshots.DeleteSnapshot({ snapshotId: info.id }, cb),
  );
  t.true(deleted.ok && deleted.value.deleted);
  t.false(existsSync(dir), 'directory removed');
  t.deepEqual(await readdir(join(node.dataDir, 'snapshots')), []);
  const get = await rawUnary((cb) =>
    node.client.connection.snapshots.GetSnapshot({ snapshotId: info.id }, cb),
  );
  t.false(get.ok);
  if (!get.ok) t.is(get.error.code, status.NOT_FOUND);
  const stats = await node.client.stats();
  t.is(stats.storedSnapshots, 0);
  t.is(Number(stats.storedBytes), 0);
});

test('a snapshot being fetched is deleted only with force; the running fetch completes, then its directory goes', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 3000, valueSize: 400, types: 'string', seed: 4 });
  const info = await node.client.waitReady({ snapshotId: (await node.client.createSnapshot()).id });
  const dir = snapshotDir(node, info.id);
  const fetch = await openPausedFetch(t, node, { snapshotId: info.id, chunkSize: 4096 });

  // Without force: refused while a stream reads it.
  const refused = await rawUnary((cb) =>
    node.client.connection.snapshots.DeleteSnapshot({ snapshotId: info.id, force: false }, cb),
  );
  t.false(refused.ok);
  if (!refused.ok) t.is(refused.error.code, status.FAILED_PRECONDITION);
  t.is((await node.client.listSnapshots()).length, 1);

  await node.client.deleteSnapshot({ snapshotId: info.id, force: true });
  // Gone from the catalog at once; a new fetch of it is refused.
  const again = await rawFetch(node.client.connection, { snapshotId: info.id });
  t.is(again.error?.code, status.NOT_FOUND);
  t.is((await node.client.listSnapshots()).length, 0);

  fetch.stream.resume();
  const { error } = await fetch.end;
  t.is(error, undefined, 'the running fetch finishes');
  t.is(
    fetch.chunks.reduce((n, c) => n + c.data.length, 0),
    Number(info.sizeBytes),
    'with every byte',
  );
  t.true(await waitFor(() => !existsSync(dir), 3_000), 'directory removed after the fetch ended');
  t.truthy(await idle(node));
});

test('an unused READY snapshot is removed after its TTL, a leased one is kept', async (t) => {
  const node = await nodeFor(t, { snapshotTtlMs: 300 });
  await loadSynthetic(node.client, { keys: 3000, valueSize: 400, types: 'string', seed: 5 });
  // Leased from birth: a fetch that creates the snapshot takes its lease in the same step.
  const fetch = await openPausedFetch(t, node, {
    snapshotId: '',
    chunkSize: 4096,
    create: { slots: [], strategy: '', compression: 'COMPRESSION_NONE' },
  });
  const leased = await node.client.waitReady({ snapshotId: fetch.first.snapshotId });
  const unused = await node.client.waitReady({
    snapshotId: (await node.client.createSnapshot()).id,
  });

  // GC runs every max(1 s, ttl/4): within ~3 s the unused one is gone.
  const gone = await waitFor(async () => {
    const r = await rawUnary((cb) =>
      node.client.connection.snapshots.GetSnapshot({ snapshotId: unused.id }, cb),
    );
    return !r.ok && r.error.code === status.NOT_FOUND;
  }, 3_500);
  t.true(gone, 'GetSnapshot says NOT_FOUND');
  // The entry goes first (no new stream can start), its directory right after.
  t.true(
    await waitFor(() => !existsSync(snapshotDir(node, unused.id)), 2_000),
    'directory removed',
  );

  // The leased one survived the same GC passes.
  t.is((await node.client.getSnapshot({ snapshotId: leased.id })).state, 'READY');
  t.true(existsSync(snapshotDir(node, leased.id)));
  fetch.stream.cancel();
  await fetch.end;
  const collected = await waitFor(() => !existsSync(snapshotDir(node, leased.id)), 3_500);
  t.true(collected, 'collected once its lease ended and the TTL passed');
});

test('a failed build leaves no artifact behind and reports FAILED', async (t) => {
  const failing = slowScan({ name: 'failing-scan', batch: 300, delayMs: 5, failAfterBatches: 8 });
  const dataDir = await tempDirFor(t);
  const first = await startNode({ dataDir, strategies: strategiesWith(failing) });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await first.stop();
  });
  // 8 batches of 300 × ~700 bytes flush more than 1 MiB before the failure.
  await loadSynthetic(first.client, { keys: 3000, valueSize: 700, types: 'string', seed: 6 });

  // A fetch streaming the build while it fails gets an error, not a hang.
  const streaming = await rawFetch(
    first.client.connection,
    {
      snapshotId: '',
      chunkSize: 4096,
      create: { slots: [], strategy: 'failing-scan', compression: 'COMPRESSION_NONE' },
    },
    10_000,
  );
  t.true(streaming.chunks.length > 0, 'bytes were streamed before the failure');
  t.is(streaming.error?.code, status.FAILED_PRECONDITION, streaming.error?.details);
  const id = streaming.chunks[0]!.snapshotId;

  const info = await first.client.getSnapshot({ snapshotId: id });
  t.is(info.state, 'FAILED');
  t.regex(info.error, /injected failure/);
  t.false(existsSync(join(snapshotDir(first, id), 'artifact.bin')), 'no artifact left');
  const refetch = await rawFetch(first.client.connection, { snapshotId: id });
  t.is(refetch.error?.code, status.FAILED_PRECONDITION);
  t.truthy(await idle(first), 'the failed build released its view');
  const waited = await first.client.waitReady({ snapshotId: id }).then(
    () => 'ready',
    (error: Error) => error.message,
  );
  t.regex(waited, /failed/);

  // A restart drops what is not READY.
  await first.stop();
  stopped = true;
  const second = await startNode({ dataDir, strategies: strategiesWith(failing) });
  t.teardown(() => second.stop());
  t.false(existsSync(snapshotDir(second, id)));
  t.is((await second.client.listSnapshots()).length, 0);
});

test('a build deleted while running is stopped and leaves nothing behind', async (t) => {
  const node = await nodeFor(t, {
    strategies: strategiesWith(slowScan({ batch: 100, delayMs: 20 })),
  });
  await loadSynthetic(node.client, { keys: 3000, valueSize: 700, types: 'string', seed: 7 });
  const created = await node.client.createSnapshot({ strategy: 'slow-scan' });
  t.is(created.state, 'BUILDING');
  const dir = snapshotDir(node, created.id);
  // Wait until part of the artifact is on disk.
  t.truthy(
    await waitFor(
      async () =>
        Number((await node.client.getSnapshot({ snapshotId: created.id })).bytesWritten) > 0,
      5_000,
    ),
  );
  t.true(existsSync(join(dir, 'artifact.bin')));
  await node.client.deleteSnapshot({ snapshotId: created.id });
  t.false(existsSync(dir), 'directory removed at once (no stream was reading it)');
  const after = await idle(node);
  t.truthy(after, 'the stopped build released its view');
  await sleep(100);
  t.false(existsSync(dir), 'and the stopped build did not recreate anything');
  t.deepEqual(await readdir(join(node.dataDir, 'snapshots')), []);
});

// ShardNode.stop() aborts running builds and waits for them to clean up.
test('after stop() returns, a build it aborted no longer changes the data dir', async (t) => {
  const dataDir = await tempDirFor(t);
  // Big batches (a flush comes soon) with long pauses (the abort is seen only after one).
  const node = await startNode({
    dataDir,
    strategies: strategiesWith(slowScan({ batch: 800, delayMs: 250 })),
  });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await node.stop();
  });
  await loadSynthetic(node.client, { keys: 3000, valueSize: 700, types: 'string', seed: 8 });
  const created = await node.client.createSnapshot({ strategy: 'slow-scan' });
  await waitFor(
    async () =>
      Number((await node.client.getSnapshot({ snapshotId: created.id })).bytesWritten) > 0,
    5_000,
  );
  const dir = join(dataDir, 'snapshots', created.id);
  await node.stop();
  stopped = true;
  const atStop = (await readdir(dir).catch(() => [])).sort();
  await sleep(600);
  const later = (await readdir(dir).catch(() => [])).sort();
  t.deepEqual(later, atStop, 'nothing changes in the data dir after stop() returned');
});
