import { type AddressInfo, createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { getMigration, migrateSlots } from '../src/client';
import { Connection } from '../src/wire';
import type { ShardsnapError, SlotRange } from '../src/core';
import type { MigrationStatus } from '../src/migration';
import { cli, cliJson, serve } from './helpers/cli';
import { nodeFor, rawUnary, slowScan, strategiesWith, unaryCode, waitFor } from './helpers/harness';
import { SplitWriter, mixedData, modelDigest, modelOf, tagsIn } from './helpers/split';

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: 16383 };

type Backend = 'memory' | 'rocksdb';

async function splitUnderWrites(t: ExecutionContext, from: Backend, to: Backend): Promise<void> {
  const source = await nodeFor(t, { backend: from });
  const target = await nodeFor(t, { backend: to, slots: [] });
  const moving = tagsIn(MOVING, 40);
  const staying = tagsIn(STAYING, 10);
  const initial = mixedData([...moving, ...staying], 100);
  for (const batch of initial) await source.client.write({ mutations: batch });
  const model = await modelOf(initial);

  const writer = new SplitWriter(source.node.address, moving, model, { lanes: 3 }).start();
  t.teardown(() => writer.close());
  const events: MigrationStatus[] = [];
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const done = await migrateSlots(
    conn,
    { source: source.node.address, slots: [MOVING] },
    { onEvent: (event) => events.push(event) },
  );
  // Some writes after the handoff, which now go to the target by MOVED.
  const ackedAtDone = writer.acked;
  await waitFor(() => writer.acked > ackedAtDone + 20, 5_000);
  await writer.stop();

  t.deepEqual(writer.failures, [], 'every write was acknowledged eventually');
  t.true(writer.acked > 20, `writer made progress (${writer.acked} acks)`);
  t.true(writer.addresses.has(target.node.address), 'writes were redirected to the target');
  t.is(done.phase, 'DONE');
  const phases = [...new Set(events.map((e) => e.phase))];
  t.deepEqual(phases, ['SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'DONE']);
  t.true(done.keys > 0 && done.bytes > 0);
  t.true(done.writePauseMs <= 1_000, `write pause ${done.writePauseMs} ms`);

  // Ownership moved, on both sides.
  t.deepEqual((await target.client.stats()).ownedSlots, [MOVING]);
  t.deepEqual((await source.client.stats()).ownedSlots, [STAYING]);

  // Every acknowledged write is on the target: its digest of the range equals the model's.
  const expected = await modelDigest(model, [MOVING]);
  const actual = await target.client.digest({ slots: [MOVING] });
  t.is(Number(actual.keyCount), expected.keyCount);
  t.is(actual.digest, expected.digest);
  // The source keeps the other slots untouched and drops the moved keys in the background.
  const stayingExpected = await modelDigest(model, [STAYING]);
  t.is((await source.client.digest({ slots: [STAYING] })).digest, stayingExpected.digest);
  const emptied = await waitFor(
    async () => Number((await source.client.digest({ slots: [MOVING] })).keyCount) === 0,
    10_000,
  );
  t.true(emptied, 'the source no longer holds the moved keys');

  // Everything the migration opened is released on both nodes: change streams, fetch
  // leases, snapshot views and builds, the migration snapshot itself, pauses.
  const released = await waitFor(async () => {
    const [s, tg] = await Promise.all([source.client.stats(), target.client.stats()]);
    return (
      source.node.changeLog.subscribers === 0 &&
      source.node.catalog.leaseCount === 0 &&
      source.node.catalog.buildingCount === 0 &&
      source.node.catalog.list().length === 0 &&
      source.node.handoffs.activeCount === 0 &&
      s.activeSnapshots === 0 &&
      tg.activeSnapshots === 0 &&
      target.node.migrations.runningCount === 0 &&
      target.node.ownership.imports().length === 0
    );
  }, 5_000);
  t.true(released, 'every resource of the migration is released');
}

for (const [from, to] of [
  ['memory', 'memory'],
  ['rocksdb', 'rocksdb'],
  ['memory', 'rocksdb'],
  ['rocksdb', 'memory'],
] as const) {
  test(`split ${from} → ${to} under live writes loses no acknowledged write`, async (t) => {
    t.timeout(60_000);
    await splitUnderWrites(t, from, to);
  });
}

test('a change log too small for the snapshot falls back to a fresh snapshot and still succeeds', async (t) => {
  t.timeout(60_000);
  const source = await nodeFor(t, {
    changeLogBytes: 16 * 1024,
    strategies: strategiesWith(slowScan({ batch: 50, delayMs: 50 })).prefer('memory', [
      'slow-scan',
    ]),
  });
  // The target buffers little while it installs, so the changes wait in the source's log.
  const target = await nodeFor(t, { slots: [], migrationTuning: { feedBufferBytes: 4096 } });
  const moving = tagsIn(MOVING, 20);
  const initial = mixedData(moving, 50);
  for (const batch of initial) await source.client.write({ mutations: batch });
  const model = await modelOf(initial);
  // Large values: the changes made during the snapshot outgrow every buffer on the way.
  const writer = new SplitWriter(source.node.address, moving, model, {
    lanes: 2,
    valueBytes: 32 * 1024,
  }).start();
  t.teardown(() => writer.close());
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const details: string[] = [];
  const done = await migrateSlots(
    conn,
    { source: source.node.address, slots: [MOVING] },
    {
      onEvent: (event) => {
        if (event.detail) details.push(event.detail);
        // Once the log has overflowed, the writer stops so that the next snapshot fits.
        if (event.snapshotAttempts > 1) void writer.stop();
      },
    },
  );
  await writer.stop();
  t.is(done.phase, 'DONE');
  t.true(done.snapshotAttempts >= 2, `${done.snapshotAttempts} snapshot attempts`);
  t.true(
    details.some((d) => /fresh snapshot/.test(d)),
    details.join(' | '),
  );
  t.deepEqual(writer.failures, []);
  const expected = await modelDigest(model, [MOVING]);
  t.is((await target.client.digest({ slots: [MOVING] })).digest, expected.digest);
});

test('MigrateSlots and the handoff calls answer bad input with precise statuses', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t, { slots: [] });
  const owner = await nodeFor(t, { slots: [{ start: 0, end: 99 }] });
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const migrate = (
    request: { source?: string; slots?: SlotRange[]; maxPauseMs?: number },
    via = conn,
  ): Promise<string> =>
    migrateSlots(via, {
      source: request.source ?? source.node.address,
      slots: request.slots ?? [MOVING],
      maxPauseMs: request.maxPauseMs,
    }).then(
      () => 'ok',
      (error: unknown) => `${(error as ShardsnapError).code}: ${(error as Error).message}`,
    );
  t.regex(await migrate({ slots: [] }), /^invalid_argument: .*slots are required/);
  t.regex(await migrate({ source: 'no-port' }), /^invalid_argument: .*HOST:PORT/);
  t.regex(await migrate({ source: target.node.address }), /^invalid_argument: .*is this node/);
  t.regex(await migrate({ maxPauseMs: 120_000 }), /^invalid_argument: .*max pause/);
  t.regex(await migrate({ slots: [{ start: 5, end: 20_000 }] }), /^invalid_argument: .*outside/);
  const ownerConn = new Connection(owner.node.address);
  t.teardown(() => ownerConn.close());
  t.regex(await migrate({}, ownerConn), /^failed_precondition: .*already owns/);
  // The source must own the slots; the migration then fails and leaves nothing behind.
  t.regex(
    await migrate({ source: owner.node.address, slots: [{ start: 200, end: 300 }] }),
    /^failed_precondition: .*does not own/,
  );
  t.deepEqual(target.node.ownership.imports(), []);
  const closed = await freePort();
  t.regex(await migrate({ source: `127.0.0.1:${closed}` }), /^unavailable: /);

  const get = await rawUnary((cb) => conn.migration.GetMigration({ migrationId: 'nope' }, cb));
  t.is(get.ok ? 0 : get.error.code, grpc.status.NOT_FOUND);
  const getEmpty = await rawUnary((cb) => conn.migration.GetMigration({ migrationId: '' }, cb));
  t.is(getEmpty.ok ? 0 : getEmpty.error.code, grpc.status.INVALID_ARGUMENT);
  const cancel = await rawUnary((cb) =>
    conn.migration.CancelMigration({ migrationId: 'nope' }, cb),
  );
  t.is(cancel.ok ? 0 : cancel.error.code, grpc.status.NOT_FOUND);

  const src = new Connection(source.node.address);
  t.teardown(() => src.close());
  const prepare = (request: Record<string, unknown>): Promise<number> =>
    unaryCode((cb) =>
      src.migration.PrepareHandoff(
        { migrationId: 'm1', slots: [MOVING], target: '127.0.0.1:1', maxPauseMs: 100, ...request },
        cb,
      ),
    );
  t.is(await prepare({ slots: [] }), grpc.status.INVALID_ARGUMENT);
  t.is(await prepare({ target: '' }), grpc.status.INVALID_ARGUMENT);
  t.is(await prepare({ target: 'x' }), grpc.status.INVALID_ARGUMENT);
  t.is(await prepare({ migrationId: '' }), grpc.status.INVALID_ARGUMENT);
  t.is(await prepare({ maxPauseMs: 600_000 }), grpc.status.INVALID_ARGUMENT);
  const notOwned = await unaryCode((cb) =>
    new Connection(target.node.address).migration.PrepareHandoff(
      { migrationId: 'm2', slots: [MOVING], target: source.node.address, maxPauseMs: 100 },
      cb,
    ),
  );
  t.is(notOwned, grpc.status.FAILED_PRECONDITION);
  t.is(
    await unaryCode((cb) => src.migration.CommitHandoff({ migrationId: 'never' }, cb)),
    grpc.status.FAILED_PRECONDITION,
  );
  t.is(
    await unaryCode((cb) => src.migration.CommitHandoff({ migrationId: '' }, cb)),
    grpc.status.INVALID_ARGUMENT,
  );
  // Nothing was paused by the failed calls.
  t.is(source.node.handoffs.activeCount, 0);
  await source.client.write({
    mutations: [{ op: 'set', key: Buffer.from('{t0}x'), value: Buffer.from('1'), expireAtMs: 0 }],
  });
});

test('a finished migration stays visible to GetMigration; a second one for the same slots is refused', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t, { slots: [] });
  await source.client.write({ mutations: mixedData(tagsIn(MOVING, 3), 10).flat() });
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const done = await migrateSlots(conn, { source: source.node.address, slots: [MOVING] });
  const status = await getMigration(conn, { migrationId: done.migrationId });
  t.is(status.phase, 'DONE');
  t.is(status.keys, done.keys);
  await t.throwsAsync(migrateSlots(conn, { source: source.node.address, slots: [MOVING] }), {
    message: /already owns/,
  });
});

test('slots moved back at once wait for the old owner to finish removing their keys', async (t) => {
  const a = await nodeFor(t);
  const b = await nodeFor(t, { slots: [] });
  const keys = tagsIn(MOVING, 4000);
  await a.client.write({ mutations: mixedData(keys, 1).flat() });
  const toB = new Connection(b.node.address);
  const toA = new Connection(a.node.address);
  t.teardown(() => {
    toB.close();
    toA.close();
  });
  const there = await migrateSlots(toB, { source: a.node.address, slots: [MOVING] });
  // A removes the keys it gave away in steps; the move back starts right away.
  const back = await migrateSlots(toA, { source: b.node.address, slots: [MOVING] });
  t.is(back.keys, there.keys, 'every key came back');
  await waitFor(async () => Number((await b.client.stats()).keyCount) === 0, 10_000);
  t.is(Number((await a.client.stats()).keyCount), Number(there.keys));
});

test('shardsnap split moves slots and prints keys, bytes, time, MiB/s and the write pause', async (t) => {
  t.timeout(60_000);
  const source = await serve(t);
  const target = await serve(t, ['--slots', 'none']);
  const load = await cli(['load', '--to', source.address, '--keys', '2000', '--value-size', '100']);
  t.is(load.code, 0, load.stderr);
  const human = await cli([
    'split',
    '--source',
    source.address,
    '--target',
    target.address,
    '--slots',
    '0-4095',
  ]);
  t.is(human.code, 0, human.stderr);
  t.regex(
    human.stdout,
    /moved slots 0-4095 from \S+ to \S+: \d+ keys, [\d.]+ \w+ in [\d.]+ s \([\d.]+ MiB\/s\), write pause \d+ ms/,
  );
  const json = await cliJson<Record<string, unknown>>([
    'split',
    '--source',
    source.address,
    '--target',
    target.address,
    '--slots',
    '4096-8191',
  ]);
  t.is(json.code, 0);
  t.is(json.json.phase, 'done');
  t.true(Number.isInteger(json.json.writePauseMs));
  t.true((json.json.keys as number) > 0);
  const stats = await cliJson<{ ownedSlots: SlotRange[] }>(['stats', '--at', target.address]);
  t.deepEqual(stats.json.ownedSlots, [MOVING]);
  // The same slots again: the target owns them now (exit 5), and bad ranges are usage errors.
  const again = await cli([
    'split',
    '--source',
    source.address,
    '--target',
    target.address,
    '--slots',
    '0-10',
  ]);
  t.is(again.code, 5, again.stderr);
  t.regex(again.stderr, /already owns/);
  const bad = await cli([
    'split',
    '--source',
    source.address,
    '--target',
    target.address,
    '--slots',
    '9-3',
  ]);
  t.is(bad.code, 2);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
