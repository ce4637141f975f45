import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import test from 'ava';
import { encodeRecord, isShardsnapError, ErrorCodes } from '../src/core';
import { compress } from 'zstd-napi';
import {
  MAX_CHUNK_SIZE,
  MAX_RECORD_FRAME_BYTES,
  RecordsDecoder,
  decodeChunk,
  encodeHeader,
} from '../src/snapshot';
import { installMessage, rawInstall, stringSets } from './helpers/harness';
import { startNode } from './helpers/nodes';

const HEADER = encodeHeader({
  format_version: 1,
  kind: 'records',
  snapshot_id: 'hostile',
  node_id: 'elsewhere',
  backend: 'memory',
  strategy: 'memory-scan',
  seq: 1,
  slots: [{ start: 0, end: 16383 }],
  full: true,
  created_at_ms: 0,
});

function frameOf(record: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32LE(record.length);
  return Buffer.concat([length, record]);
}

/** Feeds `bytes` in `pieceBytes` pieces; returns the records and the time it took. */
function decodeInPieces(bytes: Buffer, pieceBytes: number): { records: number; ms: number } {
  const decoder = new RecordsDecoder();
  const started = performance.now();
  let records = 0;
  for (let offset = 0; offset < bytes.length; offset += pieceBytes) {
    records += decoder.push(bytes.subarray(offset, offset + pieceBytes)).length;
  }
  return { records, ms: performance.now() - started };
}

test('a frame that claims more than the record limit is refused before its bytes are buffered', (t) => {
  const claim = Buffer.alloc(4);
  claim.writeUInt32LE(0xfffffff0);
  const decoder = new RecordsDecoder();
  // Header and claim in one piece, and the claim split from the header: both refused at once.
  const error = t.throws(() => decoder.push(Buffer.concat([HEADER, claim, Buffer.alloc(64)])));
  t.true(isShardsnapError(error, ErrorCodes.dataLoss), String(error));
  t.regex(error?.message ?? '', /claims \d+ bytes, over the limit/);
  const split = new RecordsDecoder();
  split.push(HEADER);
  split.push(claim.subarray(0, 2));
  t.throws(() => split.push(claim.subarray(2)), { message: /over the limit/ });
  t.true(MAX_RECORD_FRAME_BYTES < 0xfffffff0);
});

test('a large record split across many pieces decodes in time linear in its size', (t) => {
  t.timeout(60_000);
  const frame = (mib: number): Buffer =>
    Buffer.concat([
      HEADER,
      frameOf(
        encodeRecord(Buffer.from('big'), {
          value: { type: 'string', value: Buffer.alloc(mib << 20, 7) },
          expireAtMs: 0,
        }),
      ),
    ]);
  // 16 MiB in 4 KiB pieces: joining the pieces received so far at each push would copy
  // ~32 GiB; joining them once copies 16 MiB.
  const result = decodeInPieces(frame(16), 4 << 10);
  t.is(result.records, 1);
  t.log(`16 MiB frame in 4 KiB pieces: ${result.ms.toFixed(0)} ms`);
  t.true(result.ms < 3_000, `${result.ms} ms`);
});

test('InstallSnapshot refuses an oversized frame at once and leaves the store as it was', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  await node.client.write({ mutations: stringSets('kept', 200) });
  const before = await node.client.digest();
  const claim = Buffer.alloc(4);
  claim.writeUInt32LE(0xfffffff0);
  const raw = Buffer.concat([HEADER, claim, Buffer.alloc(1 << 20)]);
  const started = performance.now();
  // The client keeps the stream open: the node answers on the frame's claim alone.
  const { error } = await rawInstall(node.client.connection, [installMessage(0, raw)], {
    end: false,
  });
  const code = error?.code;
  t.is(code, grpc.status.DATA_LOSS);
  t.true(performance.now() - started < 5_000);
  t.deepEqual(await node.client.digest(), before);
});

test('a zstd chunk is decompressed only up to its raw_length, itself bounded by the chunk limit', (t) => {
  const bomb = compress(Buffer.alloc(64 << 20));
  t.true(bomb.length < 64 << 10, `${bomb.length} bytes of zstd`);
  const chunk = (rawLength: number) => ({
    offset: 0,
    data: bomb,
    crc32c: 0,
    compression: 'zstd' as const,
    rawLength,
  });
  // Claims 1 MiB: expanding past it is refused, not allocated.
  const past = t.throws(() => decodeChunk(chunk(1 << 20), 'test'));
  t.true(isShardsnapError(past, ErrorCodes.dataLoss), String(past));
  // Claims more than a chunk may hold: refused before anything is decompressed.
  const huge = t.throws(() => decodeChunk(chunk(MAX_CHUNK_SIZE + 1), 'test'));
  t.true(isShardsnapError(huge, ErrorCodes.invalidArgument), String(huge));
  const negative = t.throws(() => decodeChunk(chunk(-1), 'test'));
  t.true(isShardsnapError(negative, ErrorCodes.invalidArgument), String(negative));
});

test('an install chunk with a compression this node does not know is INVALID_ARGUMENT', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const { error } = await rawInstall(node.client.connection, [
    installMessage(0, HEADER, { compression: 7 as unknown as 'COMPRESSION_NONE' }),
  ]);
  const code = error?.code;
  t.is(code, grpc.status.INVALID_ARGUMENT);
});

test('--max-snapshots caps the snapshots a node stores; deleting one makes room', async (t) => {
  const node = await startNode({ maxSnapshots: 3 });
  t.teardown(() => node.stop());
  await node.client.write({ mutations: stringSets('cap', 50) });
  const made = [];
  for (let i = 0; i < 3; i++) made.push(await node.client.createSnapshot());
  const refused = await t.throwsAsync(node.client.createSnapshot());
  t.true(isShardsnapError(refused, ErrorCodes.resourceExhausted), String(refused));
  t.regex(refused?.message ?? '', /--max-snapshots/);
  t.is((await node.client.listSnapshots()).length, 3);
  const first = made[0];
  if (!first) throw new Error('no snapshot made');
  await node.client.waitReady({ snapshotId: first.id });
  await node.client.deleteSnapshot({ snapshotId: first.id });
  await node.client.createSnapshot();
  t.is((await node.client.listSnapshots()).length, 3);
});

test('data after the last chunk of an install is INVALID_ARGUMENT and nothing is installed', async (t) => {
  const source = await startNode();
  const target = await startNode();
  t.teardown(() => Promise.all([source.stop(), target.stop()]).then(() => undefined));
  await source.client.write({ mutations: stringSets('src', 100) });
  await target.client.write({ mutations: stringSets('dst', 10) });
  const before = await target.client.digest();
  const { mkdtemp, readFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const out = `${await mkdtemp(`${tmpdir()}/shardsnap-hostile-`)}/a.snap`;
  const fetched = await source.client.fetchToFile({ out });
  const artifact = await readFile(out);
  const { error } = await rawInstall(target.client.connection, [
    installMessage(0, artifact, { last: true, sha256: fetched.sha256 }),
    installMessage(artifact.length, Buffer.from('more')),
  ]);
  const code = error?.code;
  t.is(code, grpc.status.INVALID_ARGUMENT);
  t.deepEqual(await target.client.digest(), before);
  // The same artifact without the extra message installs.
  await target.client.installFile({ path: out });
  t.deepEqual((await target.client.digest()).digest, (await source.client.digest()).digest);
});

test('a fetch whose own snapshot is gone from the node starts over instead of failing on every re-run', async (t) => {
  const node = await startNode({ maxSendRate: 1 << 20 });
  t.teardown(() => node.stop());
  for (let i = 0; i < 6; i++)
    await node.client.write({ mutations: stringSets(`gone${i}-`, 500, 1024) });
  const { mkdtemp, readFile } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const out = `${await mkdtemp(`${tmpdir()}/shardsnap-hostile-`)}/gone.snap`;
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 400);
  await t.throwsAsync(node.client.fetchToFile({ out }, { signal: controller.signal }));
  const state = JSON.parse(await readFile(`${out}.part.json`, 'utf8')) as { snapshotId: string };
  // What a restart of the node mid-build would leave: no such snapshot any more.
  await node.client.deleteSnapshot({ snapshotId: state.snapshotId, force: true });
  const again = await node.client.fetchToFile({ out });
  t.not(again.info.id, state.snapshotId);
  t.true(again.bytes > 3 << 20);
  t.deepEqual(await node.client.listSnapshots(), []);
});

test('install and fetch streams that make no progress are closed after --stream-idle-timeout', async (t) => {
  const node = await startNode({ streamIdleTimeoutMs: 300 });
  t.teardown(() => node.stop());
  for (let i = 0; i < 4; i++)
    await node.client.write({ mutations: stringSets(`idle${i}-`, 500, 2048) });
  // An install stream that sends nothing.
  const started = performance.now();
  const { error: idle } = await rawInstall(node.client.connection, [], { end: false });
  const installCode = idle?.code;
  t.is(installCode, grpc.status.UNAVAILABLE);
  t.true(performance.now() - started < 5_000);
  // A fetch whose client stops reading (small windows, so the node has to wait for it).
  const { smallWindowSnapshots } = await import('./helpers/harness');
  const client = smallWindowSnapshots(node.node.address);
  t.teardown(() => client.close());
  const fetch = client.FetchSnapshot({ snapshotId: '', chunkSize: 4096 });
  const fetchCode = new Promise<number>((resolve) => {
    fetch.on('error', (error: grpc.ServiceError) => resolve(error.code));
    fetch.on('end', () => resolve(0));
  });
  await new Promise<void>((resolve) =>
    fetch.once('data', () => {
      fetch.pause();
      resolve();
    }),
  );
  // The node gives up on the reader and lets go of the stream while nothing is read.
  const { waitFor } = await import('./helpers/harness');
  t.truthy(
    await waitFor(async () => (await node.client.stats()).activeStreams === 0 || undefined, 5_000),
  );
  fetch.resume();
  t.is(await fetchCode, grpc.status.UNAVAILABLE);
});

test('a full disk is RESOURCE_EXHAUSTED with the path and the bytes free, never INTERNAL', async (t) => {
  const { toServiceError } = await import('../src/wire');
  const { tmpdir } = await import('node:os');
  const path = `${tmpdir()}/some-artifact.bin`;
  const fileError = Object.assign(new Error('ENOSPC: no space left on device, write'), {
    code: 'ENOSPC',
    path,
  });
  const status = toServiceError(fileError);
  t.is(status.code, grpc.status.RESOURCE_EXHAUSTED);
  t.regex(status.details ?? '', new RegExp(`${path}, \\d+ bytes free`));
  const rocksError = Object.assign(new Error('IO error: No space left on device'), {
    code: 'NoSpace',
  });
  t.is(toServiceError(rocksError).code, grpc.status.RESOURCE_EXHAUSTED);
  t.is(toServiceError(new Error('something else')).code, grpc.status.INTERNAL);
});

test('a Write with an expiry beyond 2^53 ms says what is wrong with it', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const error = await t.throwsAsync(
    node.client.write({
      mutations: [
        { op: 'set', key: Buffer.from('k'), value: Buffer.from('v'), expireAtMs: 2 ** 62 },
      ],
    }),
  );
  t.true(isShardsnapError(error, ErrorCodes.invalidArgument), String(error));
  t.regex(error?.message ?? '', /expire_at_ms \d+ is not a time in ms between 0 and 2\^53-1/);
});

test('a build that fills its disk fails with RESOURCE_EXHAUSTED and the node goes on serving', async (t) => {
  t.timeout(60_000);
  const { execFileSync } = await import('node:child_process');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const dir = await mkdtemp(`${tmpdir()}/shardsnap-full-`);
  try {
    // A 4 MiB file system: needs root and the right to mount, as on the CI machines.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    await rm(dir, { recursive: true, force: true });
    t.log('cannot mount a small file system here: not checked');
    t.pass();
    return;
  }
  // No write-ahead log: the disk is for the build to fill.
  const node = await startNode({ dataDir: dir, walFsync: 'off' });
  t.teardown(async () => {
    await node.stop();
    execFileSync('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });
  for (let i = 0; i < 8; i++)
    await node.client.write({ mutations: stringSets(`full${i}-`, 1000, 1024) });
  const created = await node.client.createSnapshot();
  await t.throwsAsync(node.client.waitReady({ snapshotId: created.id }));
  const fetched = await t.throwsAsync(
    node.client.fetchToFile({
      out: `${tmpdir()}/never-${created.id}.snap`,
      snapshotId: created.id,
    }),
  );
  t.true(isShardsnapError(fetched, ErrorCodes.resourceExhausted), String(fetched));
  t.regex(fetched?.message ?? '', /ENOSPC|no space/i);
  t.is((await node.client.stats()).keyCount, 8000);
});
