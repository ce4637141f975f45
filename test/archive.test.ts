import { createServer } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import {
  S3Targets,
  type S3Settings,
  parseArchiveUri,
  resolveS3Settings,
  verifyArchive,
} from '../src/archive';
import { type ShardsnapClient, loadSynthetic } from '../src/client';
import { type ShardsnapError, isShardsnapError } from '../src/core';
import type { ArchiveInfo__Output } from '../src/generated/shardsnap/v1/ArchiveInfo';
import type { ArchiveProgress__Output } from '../src/generated/shardsnap/v1/ArchiveProgress';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import { TcpProxy, nodeFor } from './helpers/harness';
import { S3RVER_CREDENTIALS, type TestS3, s3For } from './helpers/s3';

async function archive(
  client: ShardsnapClient,
  request: { snapshotId: string; bucket: string; prefix?: string },
): Promise<{ info: ArchiveInfo__Output; messages: ArchiveProgress__Output[] }> {
  const messages: ArchiveProgress__Output[] = [];
  for await (const progress of client.archive(request)) messages.push(progress);
  const last = messages[messages.length - 1];
  if (!last?.done || !last.info) throw new Error('archive ended without its info');
  return { info: last.info, messages };
}

async function restore(client: ShardsnapClient, uri: string): Promise<PullProgress__Output> {
  let last: PullProgress__Output | undefined;
  for await (const progress of client.restore({ uri })) last = progress;
  if (!last?.done) throw new Error('restore ended without a result');
  return last;
}

async function failure(promise: Promise<unknown>): Promise<ShardsnapError> {
  try {
    await promise;
  } catch (error) {
    if (isShardsnapError(error)) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

function targetsFor(t: ExecutionContext, settings: S3Settings): S3Targets {
  const targets = new S3Targets(resolveS3Settings(settings));
  t.teardown(() => targets.close());
  return targets;
}

/** A memory node with data and a READY full snapshot. */
async function seededSource(t: ExecutionContext, s3: TestS3, keys = 3000, valueSize = 64) {
  const source = await nodeFor(t, { s3: s3.settings, nodeId: 'node-a' });
  await loadSynthetic(source.client, { keys, valueSize, types: 'mixed', seed: 5 });
  const created = await source.client.createSnapshot();
  const snapshot = await source.client.waitReady({ snapshotId: created.id });
  return { source, snapshot };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

test('a memory node archives a records snapshot; list, verify and restore into a fresh node', async (t) => {
  const s3 = await s3For(t);
  const { source, snapshot } = await seededSource(t, s3);

  const { info, messages } = await archive(source.client, {
    snapshotId: snapshot.id,
    bucket: s3.bucket,
    prefix: '/shards/',
  });
  t.regex(
    info.uri,
    new RegExp(
      `^s3://archives/shards/node-a/slots-0-16383/seq-0*${snapshot.seq}-${snapshot.id}/manifest\\.json$`,
    ),
  );
  t.is(info.key, parseArchiveUri(info.uri).manifestKey);
  t.is(info.artifactKey, info.key.replace(/manifest\.json$/, 'artifact.bin'));
  t.is(info.sha256, snapshot.sha256);
  t.is(Number(info.sizeBytes), Number(snapshot.sizeBytes));
  t.is(info.kind, 'records');
  t.is(Number(info.seq), Number(snapshot.seq));
  t.is(info.nodeId, 'node-a');
  t.true(Number(info.uploadedAtMs) >= Number(info.createdAtMs));
  t.is(Number(messages[messages.length - 1]?.bytesUploaded), Number(snapshot.sizeBytes));
  t.is(source.node.catalog.leaseCount, 0, 'the lease is released after the upload');

  const listed = await source.client.listArchives({ bucket: s3.bucket, prefix: 'shards' });
  t.deepEqual(
    listed.map((a) => a.uri),
    [info.uri],
  );
  t.deepEqual(await source.client.listArchives({ bucket: s3.bucket, prefix: 'other' }), []);

  const verified = await verifyArchive(targetsFor(t, s3.settings), info.uri);
  t.is(verified.manifest.sha256, snapshot.sha256);
  t.is(verified.bytes, Number(snapshot.sizeBytes));
  t.is(verified.chunks, Math.ceil(Number(snapshot.sizeBytes) / (1 << 20)));
  t.is(verified.manifest.chunk_crc32c.length, verified.chunks);
  t.is(verified.header.snapshot_id, snapshot.id);

  const target = await nodeFor(t, { s3: s3.settings });
  const done = await restore(target.client, info.uri);
  t.is(Number(done.result?.keysInstalled), 3000);
  t.is(done.result?.sha256, snapshot.sha256);
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);
  t.is(Number((await target.client.stats()).seq), Number(snapshot.seq));
  // The directory form of the URI names the same archive.
  const again = await restore(target.client, info.uri.replace(/manifest\.json$/, ''));
  t.is(again.result?.sha256, snapshot.sha256);
});

test('a RocksDB checkpoint (files artifact) archives and restores into a fresh RocksDB node', async (t) => {
  const s3 = await s3For(t);
  const source = await nodeFor(t, { backend: 'rocksdb', s3: s3.settings, nodeId: 'rocks-1' });
  await loadSynthetic(source.client, { keys: 3000, valueSize: 64, types: 'mixed', seed: 9 });
  const created = await source.client.createSnapshot();
  t.is(created.kind, 'files');
  const snapshot = await source.client.waitReady({ snapshotId: created.id });
  const { info } = await archive(source.client, { snapshotId: snapshot.id, bucket: s3.bucket });
  t.is(info.kind, 'files');
  t.is(info.strategy, 'rocksdb-checkpoint');
  t.true(info.uri.startsWith('s3://archives/rocks-1/slots-0-16383/'));

  const verified = await verifyArchive(targetsFor(t, s3.settings), info.uri);
  t.is(verified.header.kind, 'files');

  const target = await nodeFor(t, { backend: 'rocksdb', s3: s3.settings });
  const done = await restore(target.client, info.uri);
  t.is(Number(done.result?.seq), Number(snapshot.seq));
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);

  // A memory node cannot install a checkpoint: refused before anything is downloaded.
  const memory = await nodeFor(t, { s3: s3.settings });
  t.is((await failure(restore(memory.client, info.uri))).code, 'failed_precondition');
});

test('a flipped byte in the stored artifact fails restore and verify with DATA_LOSS; the target is unchanged', async (t) => {
  const s3 = await s3For(t);
  const { source, snapshot } = await seededSource(t, s3, 2000, 1000);
  const { info } = await archive(source.client, { snapshotId: snapshot.id, bucket: s3.bucket });

  const object = await s3.client.send(
    new GetObjectCommand({ Bucket: s3.bucket, Key: info.artifactKey }),
  );
  const bytes = Buffer.from(await object.Body!.transformToByteArray());
  const at = Math.floor(bytes.length * 0.6);
  bytes[at] = (bytes[at] as number) ^ 0x20;
  await s3.client.send(
    new PutObjectCommand({ Bucket: s3.bucket, Key: info.artifactKey, Body: bytes }),
  );

  const target = await nodeFor(t, { s3: s3.settings });
  await loadSynthetic(target.client, { keys: 200, valueSize: 16, types: 'string', seed: 1 });
  const before = await target.client.digest();
  const error = await failure(restore(target.client, info.uri));
  t.is(error.code, 'data_loss');
  t.regex(error.message, /CRC32C mismatch.*bucket=archives, key=.*artifact\.bin, offset=\d+/);
  t.deepEqual(await target.client.digest(), before);

  const verify = await failure(verifyArchive(targetsFor(t, s3.settings), info.uri));
  t.is(verify.code, 'data_loss');
});

test('a missing bucket or archive is NOT_FOUND, and the node keeps serving', async (t) => {
  const s3 = await s3For(t);
  const { source, snapshot } = await seededSource(t, s3, 100);
  const missingBucket = await failure(
    archive(source.client, { snapshotId: snapshot.id, bucket: 'no-such-bucket' }),
  );
  t.is(missingBucket.code, 'not_found');
  t.regex(missingBucket.message, /NoSuchBucket.*bucket=no-such-bucket/);
  t.is((await failure(source.client.listArchives({ bucket: 'no-such-bucket' }))).code, 'not_found');
  t.is(
    (await failure(restore(source.client, 's3://archives/nothing/here/manifest.json'))).code,
    'not_found',
  );
  t.is(
    (await failure(restore(source.client, 's3://no-such-bucket/x/manifest.json'))).code,
    'not_found',
  );
  t.is(
    (await failure(source.client.deleteArchive({ uri: 's3://archives/nothing/manifest.json' })))
      .code,
    'not_found',
  );
  t.is((await failure(restore(source.client, 's3://Bad_Bucket/x/'))).code, 'invalid_argument');
  t.is(
    (await failure(archive(source.client, { snapshotId: 'nope', bucket: s3.bucket }))).code,
    'not_found',
  );
  // Local snapshots are untouched by all of this.
  t.is(source.node.catalog.leaseCount, 0);
  t.is((await source.client.listSnapshots()).length, 1);
  t.is((await source.client.digest()).keyCount, 100);
});

test('refused credentials are PERMISSION_DENIED with a clear message', async (t) => {
  const s3 = await s3For(t);
  const settings = { ...s3.settings, credentials: { ...S3RVER_CREDENTIALS, accessKeyId: 'WRONG' } };
  const node = await nodeFor(t, { s3: settings });
  await loadSynthetic(node.client, { keys: 10, valueSize: 8, types: 'string', seed: 1 });
  const created = await node.client.createSnapshot();
  await node.client.waitReady({ snapshotId: created.id });
  const error = await failure(archive(node.client, { snapshotId: created.id, bucket: s3.bucket }));
  t.is(error.code, 'permission_denied');
  t.regex(error.message, /InvalidAccessKeyId.*AWS_ACCESS_KEY_ID/);
  t.is((await failure(node.client.listArchives({ bucket: s3.bucket }))).code, 'permission_denied');
  t.is(node.node.catalog.leaseCount, 0);
});

test('an unreachable store is UNAVAILABLE after bounded retries', async (t) => {
  const port = await closedPort();
  const settings: S3Settings = {
    endpoint: `http://127.0.0.1:${port}`,
    credentials: S3RVER_CREDENTIALS,
    maxAttempts: 2,
  };
  const node = await nodeFor(t, { s3: settings });
  await loadSynthetic(node.client, { keys: 10, valueSize: 8, types: 'string', seed: 1 });
  const created = await node.client.createSnapshot();
  await node.client.waitReady({ snapshotId: created.id });
  const started = Date.now();
  const error = await failure(archive(node.client, { snapshotId: created.id, bucket: 'archives' }));
  t.is(error.code, 'unavailable');
  t.regex(error.message, /ECONNREFUSED.*bucket=archives/);
  t.is((await failure(restore(node.client, 's3://archives/a/manifest.json'))).code, 'unavailable');
  t.true(Date.now() - started < 15_000);
  t.is((await node.client.digest()).keyCount, 10);
});

test('a restore resumes from the last verified chunk after a dropped connection', async (t) => {
  const s3 = await s3For(t);
  const { source, snapshot } = await seededSource(t, s3, 3000, 2000);
  t.true(Number(snapshot.sizeBytes) > 5 << 20);
  const { info } = await archive(source.client, { snapshotId: snapshot.id, bucket: s3.bucket });

  const proxy = await TcpProxy.start(`127.0.0.1:${s3.port}`, { dropAfterBytes: 2.5 * (1 << 20) });
  t.teardown(() => proxy.close());
  const target = await nodeFor(t, {
    s3: { ...s3.settings, endpoint: `http://${proxy.address}` },
  });
  const done = await restore(target.client, info.uri);
  t.is(proxy.dropped, 1);
  t.true(done.resumes >= 1);
  t.is(done.result?.sha256, snapshot.sha256);
  t.is((await target.client.digest()).digest, (await source.client.digest()).digest);
});
