import test from 'ava';
import { ShardsnapClient, type Topology, getMigration, migrateSlots } from '../src/client';
import { ErrorCodes, ErrorReasons, MAX_SLOT, type SlotRange, isShardsnapError } from '../src/core';
import { Ownership } from '../src/ownership';
import { standaloneTopology } from '../src/server/topology-answer';
import { Connection } from '../src/wire';
import { nodeFor, slowScan, strategiesWith, tempDirFor, waitFor } from './helpers/harness';
import { mixedData, tagsIn } from './helpers/split';
import { TOKENS, writeTokenFile } from './helpers/tls';

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: MAX_SLOT };

test('a node outside a cluster answers Topology from its own slots, version 0', async (t) => {
  const { node, client } = await nodeFor(t);
  const answer = await client.topology();
  t.deepEqual(answer, {
    version: 0,
    cluster: '',
    nodeId: node.config.nodeId,
    slots: [{ start: 0, end: MAX_SLOT, nodeId: node.config.nodeId, address: node.address }],
    owned: [{ start: 0, end: MAX_SLOT }],
    importing: [],
  } satisfies Topology);

  const empty = await nodeFor(t, { slots: [] });
  t.deepEqual(await empty.client.topology(), {
    version: 0,
    cluster: '',
    nodeId: empty.node.config.nodeId,
    slots: [],
    owned: [],
    importing: [],
  });
});

test('the standalone map merges neighbouring slots of one owner and leaves unknown slots out', async (t) => {
  const ownership = await Ownership.load(await tempDirFor(t), [
    { start: 100, end: 199 },
    { start: 300, end: 300 },
  ]);
  await ownership.setOwner([{ start: 0, end: 49 }], 'a:1');
  await ownership.setOwner([{ start: 50, end: 99 }], 'a:1');
  await ownership.setOwner([{ start: 200, end: 250 }], 'b:2');
  await ownership.setOwner([{ start: 251, end: 299 }], 'a:1');
  await ownership.setOwner([{ start: 16000, end: MAX_SLOT }], 'b:2');
  await ownership.beginImport({ id: 'i1', slots: [{ start: 400, end: 420 }], source: 'c:3' });
  await ownership.beginImport({ id: 'i2', slots: [{ start: 421, end: 430 }], source: 'c:3' });
  const self = { nodeId: 'n1', address: 'self:9' };
  const answer = standaloneTopology({ ...self, ownership });
  t.deepEqual(answer, {
    version: 0,
    cluster: '',
    nodeId: 'n1',
    slots: [
      { start: 0, end: 99, nodeId: '', address: 'a:1' },
      { start: 100, end: 199, ...self },
      { start: 200, end: 250, nodeId: '', address: 'b:2' },
      { start: 251, end: 299, nodeId: '', address: 'a:1' },
      { start: 300, end: 300, ...self },
      { start: 400, end: 430, nodeId: '', address: 'c:3' },
      { start: 16000, end: MAX_SLOT, nodeId: '', address: 'b:2' },
    ],
    owned: [
      { start: 100, end: 199 },
      { start: 300, end: 300 },
    ],
    importing: [{ start: 400, end: 430 }],
  });
});

test('after a split the source points the moved slots at the target; importing shows the import in progress', async (t) => {
  t.timeout(60_000);
  // A slow snapshot keeps the migration in its snapshot phase long enough to look at it.
  const source = await nodeFor(t, {
    strategies: strategiesWith(slowScan({ batch: 20, delayMs: 40 })).prefer('memory', [
      'slow-scan',
    ]),
  });
  const target = await nodeFor(t, { slots: [] });
  for (const batch of mixedData(tagsIn(MOVING, 20), 20)) {
    await source.client.write({ mutations: batch });
  }
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const migration = migrateSlots(conn, { source: source.node.address, slots: [MOVING] });

  const during = await waitFor(async () => {
    const answer = await target.client.topology();
    return answer.importing.length > 0 ? answer : undefined;
  }, 10_000);
  t.truthy(during, 'the target reports its import');
  t.deepEqual(during?.importing, [MOVING]);
  t.deepEqual(during?.owned, []);
  // Until the handoff, the target sends clients of the range to the source.
  t.deepEqual(during?.slots, [{ ...MOVING, nodeId: '', address: source.node.address }]);

  const done = await migration;
  t.is(done.phase, 'DONE');

  const sourceView = await source.client.topology();
  t.is(sourceView.version, 0);
  t.is(sourceView.nodeId, source.node.config.nodeId);
  t.deepEqual(sourceView.slots, [
    { ...MOVING, nodeId: '', address: target.node.address },
    { ...STAYING, nodeId: source.node.config.nodeId, address: source.node.address },
  ]);
  t.deepEqual(sourceView.owned, [STAYING]);
  t.deepEqual(sourceView.importing, []);

  const targetView = await target.client.topology();
  t.deepEqual(targetView.slots, [
    { ...MOVING, nodeId: target.node.config.nodeId, address: target.node.address },
  ]);
  t.deepEqual(targetView.owned, [MOVING]);
  t.deepEqual(targetView.importing, []);
});

test('Topology needs only the read role', async (t) => {
  const dir = await tempDirFor(t);
  const { node } = await nodeFor(t, { authTokensFile: await writeTokenFile(dir) });
  const reader = new ShardsnapClient(node.address, { security: { token: TOKENS.read } });
  t.teardown(() => reader.close());
  t.is((await reader.topology()).nodeId, node.config.nodeId);
  const anonymous = new ShardsnapClient(node.address);
  t.teardown(() => anonymous.close());
  const refused = await t.throwsAsync(anonymous.topology());
  t.true(isShardsnapError(refused, ErrorCodes.unauthenticated), String(refused));
});

test('MigrateSlots takes the caller id, refuses it a second time and refuses malformed ids', async (t) => {
  t.timeout(60_000);
  const source = await nodeFor(t);
  const target = await nodeFor(t, { slots: [] });
  await source.client.write({ mutations: mixedData(tagsIn(MOVING, 3), 10).flat() });
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());

  const id = 'ctl-7.move_0-8191';
  const events: string[] = [];
  const done = await migrateSlots(
    conn,
    { source: source.node.address, slots: [MOVING], migrationId: id },
    { onEvent: (event) => events.push(event.migrationId) },
  );
  t.is(done.migrationId, id);
  t.true(events.length > 0 && events.every((e) => e === id), events.join(','));
  t.is((await getMigration(conn, { migrationId: id })).phase, 'DONE');

  // The same id again (a controller retrying): the node ran it already.
  const again = await t.throwsAsync(
    migrateSlots(conn, { source: source.node.address, slots: [MOVING], migrationId: id }),
  );
  t.true(isShardsnapError(again, ErrorCodes.alreadyExists), String(again));
  if (isShardsnapError(again)) {
    t.is(again.reason, ErrorReasons.migrationExists);
    t.is(again.metadata.migration_id, id);
  }

  // An import recorded under the id (left by an earlier run) counts as known too.
  const leftOver = { start: 9000, end: 9000 };
  const other = await nodeFor(t, { slots: [] });
  await other.node.ownership.beginImport({
    id: 'left-over',
    slots: [leftOver],
    source: source.node.address,
  });
  const otherConn = new Connection(other.node.address);
  t.teardown(() => otherConn.close());
  const recorded = await t.throwsAsync(
    migrateSlots(otherConn, {
      source: source.node.address,
      slots: [{ start: 9500, end: 9600 }],
      migrationId: 'left-over',
    }),
  );
  t.true(isShardsnapError(recorded, ErrorCodes.alreadyExists), String(recorded));
  await other.node.ownership.abandonImport('left-over');

  for (const bad of ['has space', 'a/b', 'x'.repeat(65), 'ünïcode']) {
    const refused = await t.throwsAsync(
      migrateSlots(conn, { source: source.node.address, slots: [STAYING], migrationId: bad }),
    );
    t.true(isShardsnapError(refused, ErrorCodes.invalidArgument), `${bad}: ${String(refused)}`);
  }
  t.deepEqual(target.node.ownership.imports(), []);
  t.is(target.node.migrations.runningCount, 0);
});
