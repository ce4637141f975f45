import { type AddressInfo, type Server, type Socket, createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { RoutingClient, migrateSlots } from '../src/client';
import { ErrorCodes, MAX_SLOT, type SlotRange, isShardsnapError } from '../src/core';
import { Connection } from '../src/wire';
import { b, nodeFor, waitFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';
import { tagsIn } from './helpers/split';

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: MAX_SLOT };

/** Two nodes, and the split that moves MOVING from `source` to `target`. */
async function nodePair(
  t: ExecutionContext,
): Promise<{ source: TestNode; target: TestNode; split: () => Promise<void> }> {
  const source = await nodeFor(t);
  const target = await nodeFor(t, { slots: [] });
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const split = async (): Promise<void> => {
    await migrateSlots(conn, { source: source.node.address, slots: [MOVING] });
  };
  return { source, target, split };
}

/** Two nodes after a split. */
async function splitNodes(t: ExecutionContext): Promise<{ source: TestNode; target: TestNode }> {
  const { source, target, split } = await nodePair(t);
  await split();
  return { source, target };
}

function routingFor(t: ExecutionContext, ...args: ConstructorParameters<typeof RoutingClient>) {
  const routing = new RoutingClient(...args);
  t.teardown(() => routing.close());
  return routing;
}

const setOf = (key: Buffer) => ({
  mutations: [{ op: 'set' as const, key, value: b('v'), expireAtMs: 0 }],
});

/** Keys of distinct slots in `range`. */
const keysIn = (range: SlotRange, count: number): Buffer[] =>
  tagsIn(range, count).map((tag) => b(`{${tag}}k`));

test('a new client routes by the slot map of its seed: no redirect after a split', async (t) => {
  t.timeout(60_000);
  const { source, target } = await splitNodes(t);
  const routing = routingFor(t, source.node.address);
  t.is(routing.topologyVersion, -1);
  // Concurrent first calls share one Topology call.
  const moving = keysIn(MOVING, 8);
  const staying = keysIn(STAYING, 4);
  const acks = await Promise.all([...moving, ...staying].map((key) => routing.write(setOf(key))));
  t.deepEqual(
    acks.map((ack) => ack.address),
    [...moving.map(() => target.node.address), ...staying.map(() => source.node.address)],
  );
  t.is(routing.counters.redirects, 0);
  t.is(routing.counters.topologyRefreshes, 1);
  t.is(routing.topologyVersion, 0);
  t.is(routing.ownerOf(moving[0] as Buffer), target.node.address);
  t.is(routing.ownerOf(staying[0] as Buffer), source.node.address);
});

test('an old client follows one MOVED, then its refreshed map sends the whole range right', async (t) => {
  t.timeout(60_000);
  const moving = keysIn(MOVING, 6);
  const { source, target, split } = await nodePair(t);
  const old = routingFor(t, source.node.address);
  // Before the split: the map says the source owns everything.
  t.is((await old.write(setOf(moving[0] as Buffer))).address, source.node.address);
  await split();
  t.is(old.counters.topologyRefreshes, 1);
  t.is((await old.write(setOf(moving[1] as Buffer))).address, target.node.address);
  t.is(old.counters.redirects, 1);
  t.true(
    await waitFor(() => old.counters.topologyRefreshes >= 2, 5_000),
    'a refresh followed the MOVED',
  );
  for (const key of moving.slice(2)) {
    t.is((await old.write(setOf(key))).address, target.node.address);
  }
  t.is(old.counters.redirects, 1, 'other slots of the range needed no MOVED');
  t.is(await old.refreshTopology(), 0);
});

test('with topology off the client routes by the seed and MOVED answers only', async (t) => {
  t.timeout(60_000);
  const { source, target } = await splitNodes(t);
  const routing = routingFor(t, source.node.address, { topology: false });
  const moving = keysIn(MOVING, 3);
  for (const key of moving) {
    t.is((await routing.write(setOf(key))).address, target.node.address);
  }
  t.is(routing.counters.redirects, 3, 'one MOVED per slot');
  t.is(routing.counters.topologyRefreshes, 0);
  t.is(routing.topologyVersion, -1);
});

/** A gRPC server that serves nothing: every call is UNIMPLEMENTED. */
async function bareServer(t: ExecutionContext): Promise<string> {
  const server = new grpc.Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  t.teardown(() => server.forceShutdown());
  return `127.0.0.1:${port}`;
}

/** A TCP server that accepts connections and never answers: calls to it hang. */
async function silentServer(t: ExecutionContext): Promise<string> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return `127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('seeds are asked in turn: an unreachable one and one without Topology are passed over', async (t) => {
  t.timeout(60_000);
  const { source, target } = await splitNodes(t);
  const closed = await new Promise<number>((resolve) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const routing = routingFor(t, [`127.0.0.1:${closed}`, await bareServer(t), source.node.address]);
  const [moving, staying] = [keysIn(MOVING, 1)[0] as Buffer, keysIn(STAYING, 1)[0] as Buffer];
  t.is((await routing.write(setOf(moving))).address, target.node.address);
  t.is((await routing.write(setOf(staying))).address, source.node.address);
  t.is(routing.counters.redirects, 0);
  t.is(routing.topologyVersion, 0);

  // Only a seed that does not answer Topology: calls go to it, as without a map.
  const bare = await bareServer(t);
  const lone = routingFor(t, bare);
  const refused = await t.throwsAsync(lone.write(setOf(moving)));
  t.true(isShardsnapError(refused, ErrorCodes.unimplemented), String(refused));
  t.is(lone.topologyVersion, -1);
  t.is(lone.ownerOf(moving), bare);
});

test('close() ends a refresh in flight at once', async (t) => {
  const routing = new RoutingClient(await silentServer(t));
  const started = Date.now();
  const pending = routing.refreshTopology();
  await new Promise((resolve) => setTimeout(resolve, 100));
  routing.close();
  const error = await t.throwsAsync(pending);
  t.true(isShardsnapError(error, ErrorCodes.cancelled), String(error));
  t.true(Date.now() - started < 1_500, `${Date.now() - started} ms`);
});
