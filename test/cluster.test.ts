import test, { type ExecutionContext } from 'ava';
import {
  type Topology,
  Controller,
  ClusterKeys,
  awaitRequest,
  connectEtcd,
  currentLeader,
  initCluster,
  readClusterState,
  readTopology,
  runStandingController,
  slotCounts,
  submitRequest,
} from '../src/cluster';
import { RoutingClient } from '../src/client';
import { ErrorReasons, MAX_SLOT, type SlotRange, hasReason, isShardsnapError } from '../src/core';
import { cliJson } from './helpers/cli';
import { type TestEtcd, startEtcd } from './helpers/etcd';
import { nodeFor, waitFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';
import { SplitWriter, mixedData, modelDigest, modelOf, tagsIn } from './helpers/split';

const ALL: SlotRange = { start: 0, end: MAX_SLOT };

interface InProcessCluster {
  etcd: TestEtcd;
  name: string;
  nodes: Map<string, TestNode>;
}

/** etcd plus `count` nodes n1..nN in this process, registered; n1 holds every slot. */
async function cluster(t: ExecutionContext, count: number): Promise<InProcessCluster> {
  const etcd = await startEtcd(t);
  const name = `c${Math.random().toString(36).slice(2, 8)}`;
  const nodes = new Map<string, TestNode>();
  for (let i = 1; i <= count; i++) {
    const id = `n${i}`;
    nodes.set(
      id,
      await nodeFor(t, {
        nodeId: id,
        cluster: { etcd: etcd.endpoints, name, leaseTtlSeconds: 3 },
        migrationTuning: { progressEveryMs: 50 },
      }),
    );
  }
  const conn = connectEtcd(etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(name);
  await waitFor(async () => (await readClusterState(conn, keys)).nodes.size === count, 10_000);
  await initCluster(conn, keys, 'n1');
  const n1 = nodes.get('n1') as TestNode;
  t.truthy(await waitFor(() => n1.node.ownership.owned().length === 1, 5_000));
  return { etcd, name, nodes };
}

function lead(
  c: InProcessCluster,
  purpose: string,
  extra: Partial<Parameters<typeof Controller.lead>[0]> = {},
) {
  return Controller.lead({
    endpoints: c.etcd.endpoints,
    cluster: c.name,
    purpose,
    settleTimeoutMs: 20_000,
    ...extra,
  });
}

async function topologyOf(c: InProcessCluster): Promise<Topology> {
  const conn = connectEtcd(c.etcd.endpoints);
  try {
    return (await readTopology(conn, new ClusterKeys(c.name))).topology;
  } finally {
    conn.close();
  }
}

/** Every node serves exactly what the topology assigns it (after each one read it). */
async function assertAgrees(t: ExecutionContext, c: InProcessCluster): Promise<Topology> {
  const topology = await topologyOf(c);
  let covered = 0;
  for (const [id, node] of c.nodes) {
    const assigned = topology.slots
      .filter((a) => a.node === id)
      .map(({ start, end }) => ({ start, end }));
    covered += assigned.reduce((n, r) => n + r.end - r.start + 1, 0);
    t.deepEqual(
      node.node.ownership.owned(),
      assigned,
      `node ${id} serves what the topology assigns it`,
    );
  }
  t.is(covered, MAX_SLOT + 1, 'every slot has exactly one owner');
  return topology;
}

test('1 -> 4 rebalance under a routing writer: acknowledged writes at their owners, one version per move, digests add up', async (t) => {
  const c = await cluster(t, 4);
  const n1 = c.nodes.get('n1') as TestNode;
  const tags = tagsIn(ALL, 120);
  const initial = mixedData(tags, 40);
  for (const batch of initial) await n1.client.write({ mutations: batch });
  const model = await modelOf(initial);
  const writer = new SplitWriter(n1.node.address, tags, model, { lanes: 3 }).start();
  t.teardown(() => writer.close());

  const controller = await lead(c, 'rebalance');
  const summary = await controller.rebalance().finally(() => controller.close());
  const ackedAtEnd = writer.acked;
  await waitFor(() => writer.acked > ackedAtEnd + 30, 5_000);
  await writer.stop();

  t.deepEqual(writer.failures, []);
  t.is(summary.committed.length, 3);
  t.is(summary.version, 1 + summary.committed.length, 'the version grew once per committed move');
  t.deepEqual(
    summary.committed.map((r) => r.committedVersion).sort(),
    [2, 3, 4],
    'each move committed its own version',
  );
  const topology = await assertAgrees(t, c);
  const counts = [...c.nodes.keys()].map((id) =>
    topology.slots.filter((a) => a.node === id).reduce((n, a) => n + a.end - a.start + 1, 0),
  );
  t.deepEqual(counts, [4096, 4096, 4096, 4096]);
  // The writer went through more than one node, and every acknowledged write is at its owner.
  t.true(writer.addresses.size > 1);
  let keys = 0;
  for (const [id, node] of c.nodes) {
    const slots = topology.slots
      .filter((a) => a.node === id)
      .map(({ start, end }) => ({ start, end }));
    const expected = await modelDigest(model, slots);
    const actual = await node.client.digest({ slots });
    t.is(actual.digest, expected.digest, `node ${id} holds exactly the model's keys of its slots`);
    keys += actual.keyCount;
  }
  t.is(keys, (await modelDigest(model, [ALL])).keyCount, 'the key counts add up');
});

test('a routing client learns the map from the topology: no redirects after a rebalance', async (t) => {
  const c = await cluster(t, 2);
  const controller = await lead(c, 'rebalance');
  await controller.rebalance().finally(() => controller.close());
  const n2 = c.nodes.get('n2') as TestNode;
  await waitFor(() => n2.node.topology().version === 2, 5_000);
  const routing = new RoutingClient((c.nodes.get('n1') as TestNode).node.address);
  t.teardown(() => routing.close());
  for (const tag of tagsIn(ALL, 20)) {
    await routing.write({
      mutations: [
        { op: 'set', key: Buffer.from(`{${tag}}k`), value: Buffer.from('v'), expireAtMs: 0 },
      ],
    });
  }
  t.is(routing.counters.redirects, 0);
  t.is(routing.topologyVersion, 2);
  const answer = await n2.client.topology();
  t.is(answer.version, 2);
  t.is(answer.cluster, c.name);
  t.deepEqual(
    answer.slots.map((s) => [s.start, s.end, s.nodeId, s.address]),
    [
      [0, 8191, 'n1', (c.nodes.get('n1') as TestNode).node.address],
      [8192, 16383, 'n2', n2.node.address],
    ],
  );
});

test('a move planned on an older topology is refused by the version check; a second controller is refused while one acts', async (t) => {
  const c = await cluster(t, 3);
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(c.name);
  const plannedOn = await readTopology(conn, keys);

  const first = await lead(c, 'rebalance');
  const busy = await lead(c, 'move').catch((error: unknown) => error);
  t.true(hasReason(busy, ErrorReasons.controllerBusy), 'only one controller acts');
  await first.rebalance().finally(() => first.close());

  // The operator's move was planned before the rebalance committed: refused, nothing moved.
  const second = await lead(c, 'move');
  const refused = await second
    .move([{ start: 0, end: 100 }], 'n3', {
      revision: plannedOn.revision,
      version: plannedOn.topology.version,
    })
    .catch((error: unknown) => error)
    .finally(() => second.close());
  t.true(hasReason(refused, ErrorReasons.topologyChanged), String(refused));
  const state = await readClusterState(conn, keys);
  t.is(state.topology.topology.version, 3);
  t.false(
    state.migrations.some((r) => r.purpose === 'move'),
    'the refused move recorded nothing',
  );
  await assertAgrees(t, c);
});

test('remove-node drains a node, deregisters it, and it does not come back', async (t) => {
  const c = await cluster(t, 3);
  const first = await lead(c, 'rebalance');
  await first.rebalance().finally(() => first.close());
  const controller = await lead(c, 'remove-node');
  const summary = await controller.removeNode('n2').finally(() => controller.close());
  t.true(summary.committed.length >= 1);
  const n2 = c.nodes.get('n2') as TestNode;
  t.deepEqual(n2.node.ownership.owned(), []);
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(c.name);
  const state = await readClusterState(conn, keys);
  t.false(state.nodes.has('n2'));
  t.true(state.removed.has('n2'));
  t.false(state.topology.topology.slots.some((a) => a.node === 'n2'));
  // Its lease was revoked: the node tried to register again and found itself removed.
  await waitFor(() => n2.node.cluster?.removed === true, 10_000);
  t.false((await readClusterState(conn, keys)).nodes.has('n2'));
  c.nodes.delete('n2');
  await assertAgrees(t, c);
});

test('a node restarted after a rebalance reads the topology and agrees', async (t) => {
  const c = await cluster(t, 2);
  const controller = await lead(c, 'rebalance');
  await controller.rebalance().finally(() => controller.close());
  const n2 = c.nodes.get('n2') as TestNode;
  const dataDir = n2.dataDir;
  await n2.node.stop();
  const again = await nodeFor(t, {
    dataDir,
    cluster: { etcd: c.etcd.endpoints, name: c.name, leaseTtlSeconds: 3 },
  });
  t.is(again.node.config.nodeId, 'n2', 'the data dir keeps its node id');
  c.nodes.set('n2', again);
  t.truthy(await waitFor(() => again.node.topology().version === 2, 5_000));
  await assertAgrees(t, c);
  // A client sent to it for one of n1's slots is redirected to n1.
  const [tag] = tagsIn({ start: 0, end: 8191 }, 1);
  const err = await again.client
    .write({
      mutations: [
        { op: 'set', key: Buffer.from(`{${tag}}x`), value: Buffer.from('v'), expireAtMs: 0 },
      ],
    })
    .catch((error: unknown) => error);
  t.true(hasReason(err, ErrorReasons.moved));
  t.is(
    (err as { metadata: Record<string, string> }).metadata.address,
    (c.nodes.get('n1') as TestNode).node.address,
  );
});

test('shardsnap controller: a standby takes over, queued operations run on the leader, and it rebalances when a node joins', async (t) => {
  const c = await cluster(t, 2);
  const stops = [new AbortController(), new AbortController()];
  const leaders: string[] = [];
  const runs = stops.map((stop, i) =>
    runStandingController({
      endpoints: c.etcd.endpoints,
      cluster: c.name,
      id: `ctl-${i}`,
      autoRebalance: true,
      checkEveryMs: 500,
      leaseTtlSeconds: 2,
      settleTimeoutMs: 20_000,
      signal: stop.signal,
      onEvent: (event) => {
        if (event.kind === 'leader') leaders.push(event.id);
      },
    }),
  );
  t.teardown(async () => {
    for (const stop of stops) stop.abort();
    await Promise.all(runs);
  });
  // The leader spreads the two nodes' slots by itself.
  t.truthy(await waitFor(async () => (await topologyOf(c)).version === 2, 20_000));
  t.is(leaders.length, 1, 'one controller acts, the other stands by');
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(c.name);

  // A queued move runs on the leader; a command would wait for it the same way.
  const plannedOn = await readTopology(conn, keys);
  const request = await submitRequest(conn, keys, {
    op: 'move',
    slots: [{ start: 0, end: 99 }],
    to: 'n2',
    plannedRevision: plannedOn.revision,
    plannedVersion: plannedOn.topology.version,
  });
  const result = await awaitRequest(conn, keys, request.id, { timeoutMs: 20_000 });
  t.is(result.version, 3);
  // A move planned on a topology that has moved on since fails with the version check.
  const stale = await submitRequest(conn, keys, {
    op: 'move',
    slots: [{ start: 100, end: 199 }],
    to: 'n2',
    plannedRevision: plannedOn.revision,
    plannedVersion: plannedOn.topology.version,
  });
  const refused = await awaitRequest(conn, keys, stale.id, { timeoutMs: 20_000 }).catch(
    (error: unknown) => error,
  );
  t.true(hasReason(refused, ErrorReasons.topologyChanged), String(refused));

  // The leader goes away; the standby takes over within the lease TTL and acts on its own.
  const first = leaders[0] === 'ctl-0' ? 0 : 1;
  stops[first]?.abort();
  await runs[first];
  t.truthy(await waitFor(() => leaders.length === 2, 15_000));
  t.not(leaders[1], leaders[0]);
  // It keeps the spread even when a node joins: the auto-rebalance gives n3 its share.
  const n3 = await nodeFor(t, {
    nodeId: 'n3',
    cluster: { etcd: c.etcd.endpoints, name: c.name, leaseTtlSeconds: 3 },
  });
  c.nodes.set('n3', n3);
  t.truthy(
    await waitFor(async () => {
      const counts = slotCounts(await topologyOf(c));
      return [...counts.values()].every((n) => n >= 5461) && counts.size === 3;
    }, 30_000),
  );
  await assertAgrees(t, c);
});

test('cluster move while a shardsnap controller holds the lead: queued there, the command prints its result', async (t) => {
  const c = await cluster(t, 2);
  const stop = new AbortController();
  const run = runStandingController({
    endpoints: c.etcd.endpoints,
    cluster: c.name,
    autoRebalance: false,
    checkEveryMs: 500,
    leaseTtlSeconds: 2,
    signal: stop.signal,
  });
  t.teardown(async () => {
    stop.abort();
    await run;
  });
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  await waitFor(
    async () => (await currentLeader(conn, new ClusterKeys(c.name)))?.purpose === 'controller',
    10_000,
  );
  const flags = ['cluster', '--etcd', c.etcd.endpoints, '--cluster', c.name];
  const { code, json } = await cliJson<{
    ok: boolean;
    request: string;
    version: number;
    migrations: unknown[];
  }>([...flags, 'move', '--slots', '0-999', '--to', 'n2']);
  t.is(code, 0);
  t.true(json.ok);
  t.regex(json.request, /^r/);
  t.is(json.version, 2);
  t.is(json.migrations.length, 1);
  const status = await cliJson<{ leader: { purpose: string } | null }>([...flags, 'status']);
  t.is(status.json.leader?.purpose, 'controller');
  await assertAgrees(t, c);
});

test('rebalance by bytes evens out what the nodes hold, not their slot counts', async (t) => {
  const c = await cluster(t, 3);
  const n1 = c.nodes.get('n1') as TestNode;
  // Big values in a few slots, small ones everywhere else.
  const heavy = tagsIn({ start: 0, end: 2047 }, 60);
  const light = tagsIn({ start: 2048, end: MAX_SLOT }, 300);
  const set = (tag: string, i: number, size: number) => ({
    op: 'set' as const,
    key: Buffer.from(`{${tag}}k${i}`),
    value: Buffer.alloc(size, 7),
    expireAtMs: 0,
  });
  for (const tag of heavy)
    await n1.client.write({ mutations: [0, 1, 2, 3].map((i) => set(tag, i, 8_000)) });
  for (const tag of light) await n1.client.write({ mutations: [set(tag, 0, 100)] });
  const controller = await lead(c, 'rebalance');
  const summary = await controller.rebalance({ by: 'bytes' }).finally(() => controller.close());
  t.true(summary.committed.length >= 2);
  const bytes = await Promise.all(
    [...c.nodes.values()].map(async (n) => (await n.client.stats()).dataBytes),
  );
  const mean = bytes.reduce((x, y) => x + y, 0) / bytes.length;
  t.true(
    bytes.every((b) => Math.abs(b - mean) / mean < 0.15),
    `bytes per node ${bytes.join(', ')}`,
  );
  const counts = [...slotCounts(await topologyOf(c)).values()];
  t.true(Math.max(...counts) - Math.min(...counts) > 1000, `slot counts ${counts.join(', ')}`);
  await assertAgrees(t, c);
});

test('finished migration records beyond keepFinished are forgotten by the next controller, oldest first', async (t) => {
  const c = await cluster(t, 3);
  const first = await lead(c, 'rebalance');
  await first.rebalance().finally(() => first.close());
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(c.name);
  const before = (await readClusterState(conn, keys)).migrations;
  t.is(before.length, 2);
  const second = await lead(c, 'rebalance', { keepFinished: 1 });
  await second.recover().finally(() => second.close());
  const after = (await readClusterState(conn, keys)).migrations;
  const newest = [...before].sort((a, b) => b.updatedAtMs - a.updatedAtMs)[0];
  t.deepEqual(
    after.map((r) => r.id),
    [newest?.id],
  );
});

test('a node with slots of its own joins only a cluster without a topology, and init must name it; a forced install cannot seed a cluster node', async (t) => {
  const c = await cluster(t, 1);
  const n1 = c.nodes.get('n1') as TestNode;
  // A lone node that owns every slot.
  const lone = await nodeFor(t, {});
  await lone.client.write({
    mutations: [{ op: 'set', key: Buffer.from('k'), value: Buffer.from('v'), expireAtMs: 0 }],
  });
  const dataDir = lone.dataDir;
  await lone.node.stop();
  const refused = await nodeFor(t, {
    dataDir,
    nodeId: 'old',
    cluster: { etcd: c.etcd.endpoints, name: c.name, leaseTtlSeconds: 3 },
  }).catch((error: unknown) => error);
  t.true(isShardsnapError(refused, 'failed_precondition'), String(refused));
  t.regex(String((refused as Error).message), /already has a topology/);

  // Into a fresh cluster it may go; init naming another node is refused while it owns slots.
  const other = `${c.name}b`;
  const joined = await nodeFor(t, {
    dataDir,
    nodeId: 'old',
    cluster: { etcd: c.etcd.endpoints, name: other, leaseTtlSeconds: 3 },
  });
  const blank = await nodeFor(t, {
    nodeId: 'fresh',
    cluster: { etcd: c.etcd.endpoints, name: other, leaseTtlSeconds: 3 },
  });
  const conn = connectEtcd(c.etcd.endpoints);
  t.teardown(() => conn.close());
  const keys = new ClusterKeys(other);
  await waitFor(async () => (await readClusterState(conn, keys)).nodes.size === 2, 10_000);
  const wrongInit = await initCluster(conn, keys, 'fresh').catch((error: unknown) => error);
  t.regex(String((wrongInit as Error).message), /node old owns slots 0-16383/);
  await initCluster(conn, keys, 'old');
  t.truthy(await waitFor(() => blank.node.topology().version === 1, 5_000));
  t.deepEqual(blank.node.ownership.owned(), [], 'the blank node took nothing');
  t.deepEqual(joined.node.ownership.owned(), [ALL]);

  // An install with force, which seeds a lone empty node, is refused in a cluster.
  const file = `${n1.dataDir}/seed.snap`;
  await joined.client.fetchToFile({ out: file });
  const forced = await blank.client
    .installFile({ path: file, force: true })
    .catch((error: unknown) => error);
  t.true(isShardsnapError(forced, 'failed_precondition'), String(forced));
  t.deepEqual(blank.node.ownership.owned(), []);
});
