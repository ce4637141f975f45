import test from 'ava';
import { HeadObjectCommand } from '@aws-sdk/client-s3';
import { archiveDir, archiveLocation } from '../src/archive';
import { isShardsnapError } from '../src/core';
import { nodeFor, rawFetch, sleep, stringSets, waitFor } from './helpers/harness';
import { s3For } from './helpers/s3';

test('an upload cut short by the store going away leaves no archive, and the node keeps serving', async (t) => {
  const s3 = await s3For(t, { partSizeBytes: 5 << 20, queueSize: 1 });
  const source = await nodeFor(t, { s3: s3.settings, nodeId: 'node-x' });
  // 16 MiB of incompressible values: four parts of 5 MiB.
  for (let i = 0; i < 4; i++) {
    await source.client.write({
      mutations: Array.from({ length: 4 }, (_, j) => ({
        op: 'set' as const,
        key: Buffer.from(`big:${i}:${j}`),
        value: Buffer.alloc(1 << 20, (i * 4 + j) % 251),
        expireAtMs: 0,
      })),
    });
  }
  const created = await source.client.createSnapshot();
  const snapshot = await source.client.waitReady({ snapshotId: created.id });
  const parts: number[] = [];
  s3.onPart = async (part) => {
    parts.push(part);
    // The store dies while the second part arrives.
    if (part === 2) await s3.stop();
  };
  let error: unknown;
  try {
    for await (const progress of source.client.archive({
      snapshotId: snapshot.id,
      bucket: s3.bucket,
      prefix: 'p',
    }))
      t.false(progress.done);
  } catch (e) {
    error = e;
  }
  t.true(isShardsnapError(error, 'unavailable'), String(error));
  t.deepEqual(parts.slice(0, 2), [1, 2]);
  t.is(source.node.catalog.leaseCount, 0, 'the lease is released');

  // The node serves as before, its snapshot included.
  t.is((await source.client.digest()).keyCount, 16);
  const fetched = await rawFetch(source.client.connection, { snapshotId: snapshot.id, offset: 0 });
  t.is(fetched.error, undefined);
  t.is(fetched.chunks.at(-1)?.sha256, snapshot.sha256);

  // Back up: nothing looks like an archive, and no artifact object was completed.
  s3.onPart = undefined;
  await s3.start();
  t.deepEqual(await source.client.listArchives({ bucket: s3.bucket, prefix: 'p' }), []);
  const location = archiveLocation(
    s3.bucket,
    archiveDir('p', {
      nodeId: 'node-x',
      slots: snapshot.slots,
      seq: snapshot.seq,
      id: snapshot.id,
    }),
  );
  for (const key of [location.manifestKey, location.artifactKey]) {
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key })).then(
      () => 'exists',
      (e: { name?: string }) => e.name,
    );
    t.is(head, 'NotFound', key);
  }
  // And the same snapshot archives fine now.
  let uri = '';
  for await (const progress of source.client.archive({
    snapshotId: snapshot.id,
    bucket: s3.bucket,
    prefix: 'p',
  }))
    if (progress.done) uri = progress.info?.uri ?? '';
  t.is(uri, `s3://${s3.bucket}/${location.manifestKey}`);
  t.is((await source.client.listArchives({ bucket: s3.bucket, prefix: 'p' })).length, 1);
});

test('a cancelled archive call stops the upload, releases the lease and leaves no archive', async (t) => {
  const s3 = await s3For(t, { partSizeBytes: 5 << 20, queueSize: 1 });
  const source = await nodeFor(t, { s3: s3.settings });
  for (let i = 0; i < 4; i++) {
    await source.client.write({
      mutations: Array.from({ length: 4 }, (_, j) => ({
        op: 'set' as const,
        key: Buffer.from(`big:${i}:${j}`),
        value: Buffer.alloc(1 << 20, i * 4 + j),
        expireAtMs: 0,
      })),
    });
  }
  const created = await source.client.createSnapshot();
  const snapshot = await source.client.waitReady({ snapshotId: created.id });
  const parts: number[] = [];
  s3.onPart = async (part) => {
    parts.push(part);
    await sleep(200);
  };
  const controller = new AbortController();
  let error: unknown;
  try {
    for await (const progress of source.client.archive(
      { snapshotId: snapshot.id, bucket: s3.bucket },
      { signal: controller.signal },
    )) {
      if (Number(progress.bytesUploaded) > 0) controller.abort();
    }
  } catch (e) {
    error = e;
  }
  t.true(isShardsnapError(error, 'cancelled'), String(error));
  t.true(await waitFor(() => source.node.catalog.leaseCount === 0, 3_000), 'lease released');
  const sent = parts.length;
  await sleep(600);
  t.is(parts.length, sent, 'no part is sent after the cancel');
  t.true(sent < 4);
  t.deepEqual(await source.client.listArchives({ bucket: s3.bucket }), []);
  t.is((await source.client.digest()).keyCount, 16);
});

test('serve --archive-every archives on a schedule, keeps the newest N and stops with the node', async (t) => {
  const s3 = await s3For(t);
  const node = await nodeFor(t, {
    s3: s3.settings,
    nodeId: 'sched-node',
    archive: { everyMs: 300, bucket: s3.bucket, prefix: 'sched', keep: 2 },
  });
  const scheduler = node.node.archiveScheduler;
  if (!scheduler) throw new Error('no scheduler');
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing; i++) {
      await node.client.write({ mutations: stringSets(`k${i}:`, 20) });
      await sleep(100);
    }
  })();
  await waitFor(() => scheduler.counts.archived >= 4, 20_000, 50);
  writing = false;
  await writer;
  t.true(scheduler.counts.archived >= 4, JSON.stringify(scheduler.counts));
  t.true(scheduler.counts.pruned >= 2);
  const last = scheduler.lastOutcome;

  const archives = await node.client.listArchives({ bucket: s3.bucket, prefix: 'sched' });
  t.is(archives.length, 2);
  t.true(archives.every((a) => a.nodeId === 'sched-node' && a.kind === 'records'));
  if (last?.kind === 'archived') {
    t.true(archives.some((a) => a.snapshotId === last.record.manifest.snapshot.id));
  }
  // Snapshots made for the archives are removed once archived.
  await waitFor(() => node.node.catalog.list().length === 0, 3_000);
  t.deepEqual(
    node.node.catalog.list().map((e) => e.meta.id),
    [],
  );

  // Nothing new to archive: runs are skipped, the archives stay.
  await waitFor(() => scheduler.counts.skipped >= 1, 3_000, 50);
  await node.node.stop(500);
  const counts = { ...scheduler.counts };
  await sleep(700);
  t.deepEqual(scheduler.counts, counts, 'no run after the node stopped');
  t.is(
    (await node.client.listArchives({ bucket: s3.bucket }).catch(() => undefined))?.length,
    undefined,
    'the node is gone',
  );
});
