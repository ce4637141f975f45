import test, { type ExecutionContext } from 'ava';
import { crc32c } from '@node-rs/crc32';
import { existsSync } from 'node:fs';
import { open, readFile, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { ShardsnapClient, loadSynthetic } from '../src/client';
import { isShardsnapError } from '../src/core';
import { fetchRanges, liveWriterThreads, planRanges } from '../src/transfer';
import { Connection, H2Connection } from '../src/wire';
import { ArtifactWriter, verifyArtifactFile } from '../src/snapshot';
import {
  TcpProxy,
  concatChunks,
  nodeFor,
  rawFetch,
  sha256,
  tempDirFor,
  waitFor,
} from './helpers/harness';

const CHUNK = 4096;

async function readySnapshot(t: Parameters<typeof nodeFor>[0], keys = 2000, valueSize = 150) {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys, valueSize, types: 'mixed', seed: 11 });
  const created = await node.client.createSnapshot();
  const info = await node.client.waitReady({ snapshotId: created.id });
  const whole = await rawFetch(node.client.connection, { snapshotId: info.id, chunkSize: CHUNK });
  if (whole.error) throw whole.error;
  return { node, info, size: Number(info.sizeBytes), artifact: concatChunks(whole.chunks) };
}

/** A fetch stopped (its signal aborted) once `stopAt` bytes have arrived; returns the error. */
async function fetchUntilStopped(
  t: ExecutionContext,
  client: ShardsnapClient,
  options: { out: string; snapshotId: string; parallel: number; stopAt: number },
): Promise<unknown> {
  const stop = new AbortController();
  return t.throwsAsync(
    client.fetchToFile(
      {
        out: options.out,
        snapshotId: options.snapshotId,
        chunkSize: CHUNK,
        parallel: options.parallel,
        onProgress: (received) => {
          if (received > options.stopAt) stop.abort();
        },
      },
      { signal: stop.signal },
    ),
  );
}

test('ranged FetchSnapshot returns exactly the bytes asked for, cut anywhere, overlapping or not', async (t) => {
  const { node, info, size, artifact } = await readySnapshot(t);
  t.true(size > 40 * CHUNK);
  const conn = node.client.connection;
  const ranges: Array<[number, number]> = [
    [0, CHUNK],
    [0, 1],
    [1, CHUNK - 1],
    [CHUNK - 7, 3 * CHUNK + 5],
    // Overlaps the previous one.
    [2 * CHUNK, 4 * CHUNK],
    [size - 10, 10],
    [size - CHUNK * 2 - 3, CHUNK * 2 + 3],
    [12_345, 6789],
  ];
  for (const [offset, length] of ranges) {
    const { chunks, error } = await rawFetch(conn, {
      snapshotId: info.id,
      offset,
      length,
      chunkSize: CHUNK,
    });
    t.is(error, undefined, `range ${offset}+${length}`);
    t.deepEqual(
      concatChunks(chunks),
      artifact.subarray(offset, offset + length),
      `bytes of ${offset}+${length}`,
    );
    let expected = offset;
    for (const [i, chunk] of chunks.entries()) {
      t.is(chunk.offset, expected);
      t.is(chunk.crc32c, crc32c(chunk.data));
      t.is(chunk.last, i === chunks.length - 1, 'only the chunk that ends the range is last');
      expected += chunk.data.length;
    }
    const last = chunks.at(-1)!;
    t.is(
      last.sha256,
      offset + length === size ? info.sha256 : '',
      'the SHA-256 comes only with a range that ends the artifact',
    );
    t.truthy(chunks[0]!.info, 'the first chunk of every stream carries the info');
  }
});

test('a range past the end or an empty range is INVALID_ARGUMENT', async (t) => {
  const { node, info, size } = await readySnapshot(t, 300, 50);
  const conn = node.client.connection;
  const past = await rawFetch(conn, { snapshotId: info.id, offset: size - 10, length: 11 });
  t.is(past.error?.code, status.INVALID_ARGUMENT);
  t.regex(past.error?.details ?? '', /past the end/);
  t.is(past.chunks.length, 0);
  const beyond = await rawFetch(conn, { snapshotId: info.id, offset: size + 1, length: 5 });
  t.is(beyond.error?.code, status.INVALID_ARGUMENT);
  const atEnd = await rawFetch(conn, { snapshotId: info.id, offset: size, length: 1 });
  t.is(atEnd.error?.code, status.INVALID_ARGUMENT);
  const huge = await rawFetch(conn, {
    snapshotId: info.id,
    offset: 0,
    length: '18446744073709551615',
  });
  t.is(huge.error?.code, status.INVALID_ARGUMENT);
  // The node still serves the snapshot afterwards.
  const fine = await rawFetch(conn, { snapshotId: info.id, offset: 0, length: 100 });
  t.is(fine.error, undefined);
  t.is(concatChunks(fine.chunks).length, 100);
});

test('a range of a snapshot still being built waits for its bytes and ends at its bound', async (t) => {
  const node = await nodeFor(t);
  await loadSynthetic(node.client, { keys: 3000, valueSize: 200, types: 'string', seed: 5 });
  const created = await node.client.createSnapshot();
  // Asked for at once, before the build is done (or just after): the same bytes either way.
  const range = await rawFetch(node.client.connection, {
    snapshotId: created.id,
    offset: 1000,
    length: 50_000,
    chunkSize: CHUNK,
  });
  t.is(range.error, undefined);
  const info = await node.client.waitReady({ snapshotId: created.id });
  const whole = await rawFetch(node.client.connection, { snapshotId: info.id });
  t.deepEqual(concatChunks(range.chunks), concatChunks(whole.chunks).subarray(1000, 51_000));
});

test('planRanges covers the artifact on chunk boundaries', (t) => {
  for (const [total, streams] of [
    [10, 4],
    [1 << 20, 4],
    [(5 << 20) + 17, 4],
    [100 << 20, 3],
    [(64 << 20) - 1, 16],
  ] as const) {
    const ranges = planRanges(total, streams);
    t.true(ranges.length >= 1 && ranges.length <= streams);
    t.is(ranges[0]!.start, 0);
    t.is(ranges.at(-1)!.end, total);
    for (const [i, r] of ranges.entries()) {
      t.true(r.end > r.start, `range ${i} of ${total} is not empty`);
      t.is(r.next, r.start);
      if (i > 0) t.is(r.start, ranges[i - 1]!.end);
      if (i < ranges.length - 1) t.is(r.end % (1 << 20), 0);
    }
  }
});

test('fetchToFile with parallel ranges writes the verified artifact', async (t) => {
  const { node, info, artifact } = await readySnapshot(t);
  const dir = await tempDirFor(t);
  for (const parallel of [1, 2, 4, 7]) {
    const out = join(dir, `p${parallel}.snap`);
    const result = await node.client.fetchToFile({
      out,
      snapshotId: info.id,
      chunkSize: CHUNK,
      parallel,
    });
    t.is(result.sha256, info.sha256);
    t.is(result.streams, parallel);
    t.deepEqual(await readFile(out), artifact);
    t.false(existsSync(`${out}.part`));
    t.false(existsSync(`${out}.part.json`));
  }
});

test('parallel ranges resume on their own after a dropped connection', async (t) => {
  const { node, info, size, artifact } = await readySnapshot(t, 3000, 150);
  const proxy = await TcpProxy.start(node.node.address, { dropAfterBytes: Math.floor(size / 3) });
  t.teardown(() => proxy.close());
  const client = new ShardsnapClient(proxy.address);
  t.teardown(() => client.close());
  const dir = await tempDirFor(t);
  const out = join(dir, 'dropped.snap');
  const result = await client.fetchToFile({
    out,
    snapshotId: info.id,
    chunkSize: CHUNK,
    parallel: 3,
  });
  t.is(proxy.dropped, 1);
  t.true(result.resumes >= 1, 'at least one range started again');
  t.is(result.sha256, info.sha256);
  t.deepEqual(await readFile(out), artifact);
});

test('an interrupted parallel fetch resumes every range from its part state', async (t) => {
  const { node, info, size, artifact } = await readySnapshot(t, 3000, 150);
  const dir = await tempDirFor(t);
  const out = join(dir, 'interrupted.snap');
  const error = await fetchUntilStopped(t, node.client, {
    out,
    snapshotId: info.id,
    parallel: 4,
    stopAt: size / 2,
  });
  t.true(isShardsnapError(error, 'cancelled'), String(error));
  // Every range's stream was cancelled on the node too: its leases are released.
  t.true(
    await waitFor(async () => Number((await node.client.stats()).activeStreams) === 0, 5_000),
    'no stream left open on the node',
  );
  t.true(existsSync(`${out}.part`));
  const state = JSON.parse(await readFile(`${out}.part.json`, 'utf8')) as {
    ranges: Array<{ start: number; end: number; next: number }>;
  };
  t.is(state.ranges.length, 4);
  const saved = state.ranges.reduce((sum, r) => sum + (r.next - r.start), 0);
  t.true(saved > 0, 'progress was saved');
  // The saved progress only counts bytes that are in the part file.
  const part = await readFile(`${out}.part`);
  for (const r of state.ranges) {
    t.deepEqual(part.subarray(r.start, r.next), artifact.subarray(r.start, r.next));
  }
  // Resumed without naming the snapshot: the part state does.
  const result = await node.client.fetchToFile({ out, chunkSize: CHUNK });
  t.is(result.resumedFrom, saved);
  t.is(result.streams, 4);
  t.is(result.sha256, info.sha256);
  t.deepEqual(await readFile(out), artifact);
  await verifyArtifactFile(out, info.sha256);
});

test('a part file damaged between runs is caught by the SHA-256 and fetched again from scratch', async (t) => {
  const { node, info, size, artifact } = await readySnapshot(t, 1500, 150);
  const dir = await tempDirFor(t);
  const out = join(dir, 'damaged.snap');
  await fetchUntilStopped(t, node.client, {
    out,
    snapshotId: info.id,
    parallel: 2,
    stopAt: size / 2,
  });
  const part = await readFile(`${out}.part`);
  part[100] = (part[100] as number) ^ 0xff;
  await writeFile(`${out}.part`, part);
  const error = await t.throwsAsync(node.client.fetchToFile({ out, chunkSize: CHUNK }));
  t.true(isShardsnapError(error, 'data_loss'), String(error));
  t.false(existsSync(`${out}.part`), 'the untrusted part file is gone');
  const again = await node.client.fetchToFile({ out, snapshotId: info.id, parallel: 2 });
  t.is(again.resumedFrom, 0);
  t.deepEqual(await readFile(out), artifact);
  t.is(sha256(await readFile(out)), info.sha256);
});

test('fetchToFile refuses a parallelism outside 1..16', async (t) => {
  const { node, info } = await readySnapshot(t, 100, 20);
  const dir = await tempDirFor(t);
  for (const parallel of [0, 17, 1.5]) {
    const error = await t.throwsAsync(
      node.client.fetchToFile({ out: join(dir, 'x.snap'), snapshotId: info.id, parallel }),
    );
    t.true(isShardsnapError(error, 'invalid_argument'), String(error));
  }
});

test('the build stores one CRC32C per chunk, and full-size fetches send those', async (t) => {
  const dir = await tempDirFor(t);
  const path = join(dir, 'artifact.bin');
  const bytes = Buffer.from(Array.from({ length: 300_001 }, (_, i) => (i * 7919) % 256));
  const writer = await ArtifactWriter.create(path, () => undefined, {
    bufferBytes: 10_000,
    crcChunkSize: 65_536,
  });
  for (let at = 0; at < bytes.length; at += 777) await writer.append(bytes.subarray(at, at + 777));
  await writer.finish();
  const expected: number[] = [];
  for (let at = 0; at < bytes.length; at += 65_536) {
    expected.push(crc32c(bytes.subarray(at, at + 65_536)));
  }
  t.deepEqual(writer.chunkCrcs, expected);

  const { node, info, artifact } = await readySnapshot(t, 12_000, 300);
  t.true(artifact.length > 3 << 20);
  const fetched = await rawFetch(node.client.connection, { snapshotId: info.id });
  t.is(fetched.error, undefined);
  t.true(fetched.chunks.length >= 4);
  for (const chunk of fetched.chunks) t.is(chunk.crc32c, crc32c(chunk.data));
  t.deepEqual(concatChunks(fetched.chunks), artifact);
});

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', () => resolve()));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

test('a fetch cancelled while its connection is still being set up fails with CANCELLED, and nothing throws later', async (t) => {
  const h2 = new H2Connection(`127.0.0.1:${await closedPort()}`);
  const stop = new AbortController();
  const call = h2.serverStream('/shardsnap.v1.Snapshots/FetchSnapshot', Buffer.alloc(0), {
    signal: stop.signal,
    maxMessageBytes: 1 << 20,
  });
  const first = call.next();
  stop.abort();
  const error = await t.throwsAsync(first);
  t.true(isShardsnapError(error, 'cancelled'), String(error));
  h2.close();
  // The refused connect lands after the cancel: an unhandled error here fails the run.
  await new Promise((resolve) => setTimeout(resolve, 300));
});

test('ranges that cannot reach their node keep the progress they had', async (t) => {
  const dir = await tempDirFor(t);
  const file = await open(join(dir, 'x.part'), 'w+');
  t.teardown(() => file.close());
  const conn = new Connection(`127.0.0.1:${await closedPort()}`);
  t.teardown(() => conn.close());
  const ranges = planRanges(8 << 20, 4);
  for (const r of ranges) r.next = r.start + (r.end - r.start) / 2;
  const before = JSON.stringify(ranges);
  const error = await t.throwsAsync(
    fetchRanges(conn, { snapshotId: 'absent', ranges, file, maxRetries: 0 }),
  );
  t.true(isShardsnapError(error, 'unavailable'), String(error));
  t.is(JSON.stringify(ranges), before);

  // A signal aborted before the ranges start: nothing is fetched, nothing changes.
  const stop = new AbortController();
  stop.abort();
  const cancelledError = await t.throwsAsync(
    fetchRanges(conn, { snapshotId: 'absent', ranges, file, signal: stop.signal }),
  );
  t.true(isShardsnapError(cancelledError, 'cancelled'), String(cancelledError));
  t.is(JSON.stringify(ranges), before);
});

test('a one-stream fetch ends its writer thread whether it completes or is cancelled, and a re-run resumes', async (t) => {
  const { node, info, size, artifact } = await readySnapshot(t, 4000, 200);
  const dir = await tempDirFor(t);
  const out = join(dir, 'one-stream.snap');
  const error = await fetchUntilStopped(t, node.client, {
    out,
    snapshotId: info.id,
    parallel: 1,
    stopAt: size / 3,
  });
  t.true(isShardsnapError(error, 'cancelled'), String(error));
  t.true(await waitFor(() => liveWriterThreads() === 0, 5_000), 'the writer thread ended');
  const part = await readFile(`${out}.part`);
  t.true(part.length > 0 && part.length < size);
  t.deepEqual(part, artifact.subarray(0, part.length), 'the part file is a verified prefix');

  const result = await node.client.fetchToFile({ out, chunkSize: CHUNK });
  t.is(result.resumedFrom, part.length);
  t.is(result.sha256, info.sha256);
  t.deepEqual(await readFile(out), artifact);
  t.true(await waitFor(() => liveWriterThreads() === 0, 5_000), 'the writer thread ended');
});
