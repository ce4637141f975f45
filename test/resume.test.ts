import test from 'ava';
import { crc32c } from '@node-rs/crc32';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ShardsnapClient, loadSynthetic } from '../src/client';
import { isShardsnapError } from '../src/core';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import { verifyArtifactFile } from '../src/snapshot';
import { startNode } from './helpers/nodes';
import { TcpProxy, concatChunks, nodeFor, rawFetch, sha256, tempDirFor } from './helpers/harness';

const CHUNK = 4096;

async function readySnapshot(t: Parameters<typeof nodeFor>[0], keys = 1500, valueSize = 120) {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys, valueSize, types: 'mixed', seed: 3 });
  const created = await node.client.createSnapshot();
  const info = await node.client.waitReady({ snapshotId: created.id });
  return { node, info, size: Number(info.sizeBytes) };
}

test('FetchSnapshot resumes from any offset with correct chunk offsets, CRCs and SHA-256', async (t) => {
  const { node, info, size } = await readySnapshot(t);
  const conn = node.client.connection;
  t.true(size > 20 * CHUNK, `artifact of ${size} bytes spans many chunks`);

  const whole = await rawFetch(conn, { snapshotId: info.id, offset: 0, chunkSize: CHUNK });
  t.is(whole.error, undefined);
  const full = concatChunks(whole.chunks);
  t.is(full.length, size);
  t.is(sha256(full), info.sha256);

  const offsets = [0, 1, CHUNK - 1, CHUNK, 5 * CHUNK + 1234, size - 1, size];
  for (const offset of offsets) {
    const { chunks, error } = await rawFetch(conn, {
      snapshotId: info.id,
      offset,
      chunkSize: CHUNK,
    });
    t.is(error, undefined, `offset ${offset}`);
    t.true(chunks.length >= 1);
    t.truthy(chunks[0]!.info, 'the first chunk carries the info');
    t.is(chunks[0]!.info!.id, info.id);
    t.true(
      chunks.slice(1).every((c) => c.info === null),
      'only the first chunk carries the info',
    );
    let expected = offset;
    for (const [i, chunk] of chunks.entries()) {
      t.is(chunk.offset, expected, `chunk ${i} offset (resumed at ${offset})`);
      t.is(chunk.snapshotId, info.id);
      t.is(chunk.compression, 'COMPRESSION_NONE');
      t.is(chunk.rawLength, chunk.data.length);
      t.is(chunk.crc32c, crc32c(chunk.data), `chunk ${i} crc32c`);
      t.true(chunk.data.length <= CHUNK);
      if (i < chunks.length - 1) {
        t.is(chunk.data.length, Math.min(CHUNK, size - expected), 'full-size chunks until the end');
        t.false(chunk.last);
        t.is(chunk.sha256, '');
      }
      expected += chunk.data.length;
    }
    const last = chunks[chunks.length - 1]!;
    t.true(last.last, 'stream ends with the last chunk');
    t.is(last.sha256, info.sha256);
    t.is(expected, size);
    const resumed = Buffer.concat([full.subarray(0, offset), concatChunks(chunks)]);
    t.is(sha256(resumed), last.sha256, `prefix + resumed bytes from ${offset}`);
  }

  const past = await rawFetch(conn, { snapshotId: info.id, offset: size + 1, chunkSize: CHUNK });
  t.is(past.error?.code, status.INVALID_ARGUMENT);
  t.is(past.chunks.length, 0);
});

test('an aborted fetchToFile leaves a part file and the next run resumes it', async (t) => {
  const { node, info, size } = await readySnapshot(t);
  const dir = await tempDirFor(t);
  const out = join(dir, 'snap.bin');
  const controller = new AbortController();
  let progressCalls = 0;
  const first = await node.client
    .fetchToFile(
      {
        out,
        snapshotId: info.id,
        chunkSize: CHUNK,
        onProgress: () => {
          if (++progressCalls === 5) controller.abort();
        },
      },
      { signal: controller.signal },
    )
    .then(
      () => undefined,
      (error: unknown) => error,
    );
  t.true(isShardsnapError(first), 'the aborted fetch rejects');
  t.true(existsSync(`${out}.part`));
  t.true(existsSync(`${out}.part.json`));
  t.false(existsSync(out), 'no final file before the whole artifact is verified');
  const partSize = (await stat(`${out}.part`)).size;
  t.true(partSize >= 5 * CHUNK && partSize < size, `part file holds ${partSize} of ${size} bytes`);
  const state = JSON.parse(await readFile(`${out}.part.json`, 'utf8')) as { snapshotId: string };
  t.is(state.snapshotId, info.id);

  // The second run names no snapshot: the part state says which one to resume.
  const second = await node.client.fetchToFile({ out, chunkSize: CHUNK });
  t.is(second.resumedFrom, partSize);
  t.true(second.resumedFrom > 0);
  t.is(second.sha256, info.sha256);
  t.is(second.bytes, size);
  t.is(second.info.id, info.id);
  const verified = await verifyArtifactFile(out, info.sha256);
  t.is(verified.bytes, size);
  t.false(existsSync(`${out}.part`));
  t.false(existsSync(`${out}.part.json`));
  t.true(existsSync(`${out}.json`), 'the info sidecar is written');
  t.is(
    (JSON.parse(await readFile(`${out}.json`, 'utf8')) as { sha256: string }).sha256,
    info.sha256,
  );
  // No new snapshot was created by the resuming run.
  t.is((await node.client.listSnapshots()).length, 1);
});

test('a READY snapshot survives a node restart and can be fetched from the middle', async (t) => {
  const dataDir = await tempDirFor(t);
  const first = await startNode({ dataDir });
  let stopped = false;
  t.teardown(async () => {
    if (!stopped) await first.stop();
  });
  await loadSynthetic(first.client, { keys: 1200, valueSize: 100, types: 'mixed', seed: 11 });
  const info = await first.client.waitReady({
    snapshotId: (await first.client.createSnapshot({ slots: [{ start: 0, end: 12000 }] })).id,
  });
  const head = await rawFetch(first.client.connection, {
    snapshotId: info.id,
    offset: 0,
    chunkSize: CHUNK,
  });
  t.is(head.error, undefined);
  const prefix = concatChunks(head.chunks).subarray(0, 3 * CHUNK + 17);
  await first.stop();
  stopped = true;

  const second = await startNode({ dataDir });
  t.teardown(() => second.stop());
  const again = await second.client.getSnapshot({ snapshotId: info.id });
  t.is(again.state, 'READY');
  t.is(again.sha256, info.sha256);
  t.is(Number(again.sizeBytes), Number(info.sizeBytes));
  t.is(Number(again.seq), Number(info.seq));
  t.deepEqual(again.slots, [{ start: 0, end: 12000 }]);
  t.is((await second.client.listSnapshots()).length, 1);

  const rest = await rawFetch(second.client.connection, {
    snapshotId: info.id,
    offset: prefix.length,
    chunkSize: CHUNK,
  });
  t.is(rest.error, undefined);
  const last = rest.chunks[rest.chunks.length - 1]!;
  t.is(last.sha256, info.sha256);
  t.is(sha256(Buffer.concat([prefix, concatChunks(rest.chunks)])), info.sha256);

  // And the whole file fetched from the restarted node installs into a fresh node.
  const dir = await tempDirFor(t);
  const fetched = await second.client.fetchToFile({
    out: join(dir, 'after-restart.snap'),
    snapshotId: info.id,
  });
  t.is(fetched.sha256, info.sha256);
});

test('PullSnapshot resumes after the connection to the source drops', async (t) => {
  // Small chunks on the source, so the drop lands in the middle of the stream.
  const source = await nodeFor(t, { chunkSize: 16 << 10 });
  const target = await nodeFor(t);
  await loadSynthetic(source.client, { keys: 3000, valueSize: 200, types: 'mixed', seed: 5 });
  const info = await source.client.waitReady({
    snapshotId: (await source.client.createSnapshot()).id,
  });
  const size = Number(info.sizeBytes);
  t.true(size > 400_000);

  const proxy = await TcpProxy.start(source.node.address, { dropAfterBytes: Math.floor(size / 2) });
  t.teardown(() => proxy.close());
  const messages: PullProgress__Output[] = [];
  const started = Date.now();
  for await (const progress of target.client.pull({ source: proxy.address, snapshotId: info.id }))
    messages.push(progress);
  const last = messages[messages.length - 1]!;
  t.true(last.done);
  t.is(proxy.dropped, 1, 'the proxy dropped one connection');
  t.true(proxy.connections >= 2, 'the target reconnected');
  t.true(last.resumes >= 1, `resumes = ${last.resumes}`);
  t.is(Number(last.result!.bytes), size);
  t.is(last.result!.sha256, info.sha256);
  t.true(Date.now() - started < 15_000);
  // Progress kept growing across the resume: never restarted from 0 after the drop.
  const received = messages.map((m) => Number(m.bytesReceived));
  t.true(received.every((n, i) => i === 0 || n >= received[i - 1]!));
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);
});

test('a fetch through a dropping proxy resumes and fetchToFile gets the right bytes', async (t) => {
  const { node, info, size } = await readySnapshot(t, 2500, 150);
  const proxy = await TcpProxy.start(node.node.address, { dropAfterBytes: Math.floor(size / 3) });
  t.teardown(() => proxy.close());
  const client = new ShardsnapClient(proxy.address);
  t.teardown(() => client.close());
  const dir = await tempDirFor(t);
  const result = await client.fetchToFile({
    out: join(dir, 'via-proxy.snap'),
    snapshotId: info.id,
    chunkSize: 8192,
  });
  t.is(proxy.dropped, 1);
  t.true(result.resumes >= 1);
  t.is(result.sha256, info.sha256);
  t.is(result.bytes, size);
  await verifyArtifactFile(result.path, info.sha256);
});
