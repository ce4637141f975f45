import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { ErrorCodes, type Mutation, type SlotRange, isShardsnapError, slotOf } from '../src/core';
import type { ReadResponse__Output } from '../src/generated/shardsnap/v1/ReadResponse';
import type { WriteResponse__Output } from '../src/generated/shardsnap/v1/WriteResponse';
import { OWNERSHIP_FILE, Ownership } from '../src/ownership';
import {
  MemoryStore,
  RocksDbStore,
  type Store,
  dropSlots,
  registerStoreBackend,
} from '../src/store';
import { mutationsToWire } from '../src/wire/convert';
import { cli, cliJson, serve } from './helpers/cli';
import { type RawResult, nodeFor, rawUnary, sleep, tempDirFor, waitFor } from './helpers/harness';
import { type TestNode, startNode } from './helpers/nodes';

const ALL: SlotRange[] = [{ start: 0, end: 16383 }];

/** Hash tags by slot, found once: `{tag}name` lies in the tag's slot. */
const tagBySlot = new Map<number, string>();
let nextTag = 0;
function tagOf(slot: number): string {
  while (!tagBySlot.has(slot)) {
    const tag = `t${nextTag++}`;
    const s = slotOf(Buffer.from(tag));
    if (!tagBySlot.has(s)) tagBySlot.set(s, tag);
  }
  return tagBySlot.get(slot) as string;
}

/** A key of `slot`. */
const keyIn = (slot: number, name = 'k'): Buffer => Buffer.from(`{${tagOf(slot)}}${name}`);

const set = (key: Buffer, value = 'v'): Mutation => ({
  op: 'set',
  key,
  value: Buffer.from(value),
  expireAtMs: 0,
});

function rawWrite(
  node: TestNode,
  mutations: Mutation[],
): Promise<RawResult<WriteResponse__Output>> {
  return rawUnary<WriteResponse__Output>((cb) =>
    node.client.connection.shard.Write({ mutations: mutationsToWire(mutations) }, cb),
  );
}

function rawRead(node: TestNode, keys: Buffer[]): Promise<RawResult<ReadResponse__Output>> {
  return rawUnary<ReadResponse__Output>((cb) => node.client.connection.shard.Read({ keys }, cb));
}

/** Asserts that a raw call failed with exactly this status and message. */
function failsWith(
  t: ExecutionContext,
  result: RawResult<unknown>,
  code: grpc.status,
  details: string,
): void {
  if (result.ok) {
    t.fail(`expected ${grpc.status[code]} "${details}", the call succeeded`);
    return;
  }
  t.is(result.error.code, code, result.error.details);
  t.is(result.error.details, details);
}

/** A node on a data dir that outlives it (removed when the test ends). */
async function restartable(t: ExecutionContext) {
  const dataDir = await tempDirFor(t, 'shardsnap-ownership-');
  const running = new Set<TestNode>();
  t.teardown(async () => {
    for (const node of running) await node.stop();
  });
  return {
    dataDir,
    async start(options: Parameters<typeof startNode>[0] = {}): Promise<TestNode> {
      const node = await startNode({ ...options, dataDir });
      running.add(node);
      const stop = node.stop.bind(node);
      node.stop = async () => {
        running.delete(node);
        await stop();
      };
      return node;
    },
  };
}

/** A memory store whose writes of chosen keys wait until released. */
class HeldStore extends MemoryStore {
  private readonly gates = new Map<string, Promise<void>>();

  hold(key: Buffer): () => void {
    let release!: () => void;
    this.gates.set(key.toString(), new Promise<void>((resolve) => (release = resolve)));
    return () => release();
  }

  override async write(mutations: readonly Mutation[]): Promise<{ seq: number }> {
    const first = mutations[0];
    const gate = first && this.gates.get(first.key.toString());
    if (gate) await gate;
    return super.write(mutations);
  }
}

let heldStore: HeldStore | undefined;
registerStoreBackend('held-memory', () => {
  heldStore = new HeldStore();
  return Promise.resolve(heldStore);
});

test('a node owns every slot by default and records it', async (t) => {
  const node = await nodeFor(t);
  t.deepEqual((await node.client.stats()).ownedSlots, ALL);
  t.deepEqual(node.node.ownership.owned(), ALL);
  await node.client.write({ mutations: [set(keyIn(0)), set(keyIn(16383))] });
  const values = await node.client.read({ keys: [keyIn(0), keyIn(16383)] });
  t.true(values.every((v) => v.found));
  const recorded = JSON.parse(await readFile(join(node.dataDir, OWNERSHIP_FILE), 'utf8')) as {
    version: number;
    owned: SlotRange[];
  };
  t.is(recorded.version, 1);
  t.deepEqual(recorded.owned, ALL);
});

test('a node without slots refuses writes and reads with FAILED_PRECONDITION', async (t) => {
  const node = await nodeFor(t, { slots: [] });
  t.deepEqual((await node.client.stats()).ownedSlots, []);
  const key = keyIn(4242);
  failsWith(
    t,
    await rawWrite(node, [set(key)]),
    grpc.status.FAILED_PRECONDITION,
    'slot 4242 is not served by this node',
  );
  failsWith(
    t,
    await rawRead(node, [key]),
    grpc.status.FAILED_PRECONDITION,
    'slot 4242 is not served by this node',
  );
  // Operators and migrations read any slots: digests are not ownership-checked.
  t.is(Number((await node.client.digest()).keyCount), 0);
});

test('keys of a slot with a known owner are MOVED there', async (t) => {
  const node = await nodeFor(t, { slots: [{ start: 0, end: 8191 }] });
  t.deepEqual((await node.client.stats()).ownedSlots, [{ start: 0, end: 8191 }]);
  await node.node.ownership.setOwner([{ start: 8192, end: 16383 }], '10.1.2.3:7421');
  t.is(node.node.ownership.ownerOf(9000), '10.1.2.3:7421');
  t.is(node.node.ownership.ownerOf(100), undefined);
  failsWith(
    t,
    await rawWrite(node, [set(keyIn(100)), set(keyIn(9000))]),
    grpc.status.FAILED_PRECONDITION,
    'MOVED 9000 10.1.2.3:7421',
  );
  failsWith(
    t,
    await rawRead(node, [keyIn(9000)]),
    grpc.status.FAILED_PRECONDITION,
    'MOVED 9000 10.1.2.3:7421',
  );
  // The batch was refused as a whole.
  t.false((await node.client.read({ keys: [keyIn(100)] }))[0]?.found);
  await node.client.write({ mutations: [set(keyIn(100))] });
  t.true((await node.client.read({ keys: [keyIn(100)] }))[0]?.found);

  await node.node.ownership.setOwner([{ start: 9000, end: 9000 }], undefined);
  failsWith(
    t,
    await rawWrite(node, [set(keyIn(9000))]),
    grpc.status.FAILED_PRECONDITION,
    'slot 9000 is not served by this node',
  );
  // The client library keeps the meaning of the status.
  const error = await t.throwsAsync(node.client.write({ mutations: [set(keyIn(9001))] }));
  t.true(isShardsnapError(error, ErrorCodes.moved));
  t.like(error, { reason: 'MOVED', metadata: { slot: '9001', address: '10.1.2.3:7421' } });
  t.regex(error?.message ?? '', /MOVED 9001 10\.1\.2\.3:7421$/);
});

test('paused slots answer TRYAGAIN until every pause is released', async (t) => {
  const node = await nodeFor(t);
  const { ownership } = node.node;
  const paused = keyIn(150);
  const other = keyIn(300);
  await node.client.write({ mutations: [set(paused)] });
  const release = ownership.pause([{ start: 100, end: 200 }]);
  failsWith(t, await rawWrite(node, [set(paused)]), grpc.status.UNAVAILABLE, 'TRYAGAIN');
  failsWith(t, await rawRead(node, [paused]), grpc.status.UNAVAILABLE, 'TRYAGAIN');
  failsWith(
    t,
    await rawWrite(node, [set(other), set(paused)]),
    grpc.status.UNAVAILABLE,
    'TRYAGAIN',
  );
  await node.client.write({ mutations: [set(other)] });
  t.true((await node.client.read({ keys: [other] }))[0]?.found);

  const inner = ownership.pause([{ start: 150, end: 160 }]);
  release();
  release(); // idempotent: does not end the other pause
  failsWith(t, await rawWrite(node, [set(paused)]), grpc.status.UNAVAILABLE, 'TRYAGAIN');
  await node.client.write({ mutations: [set(keyIn(120))] });
  inner();
  await node.client.write({ mutations: [set(paused, 'again')] });
  t.is((await node.client.read({ keys: [paused] }))[0]?.string?.toString(), 'again');

  // Paused and not owned: TRYAGAIN comes first (the owner is about to change).
  const none = await nodeFor(t, { slots: [] });
  none.node.ownership.pause([{ start: 150, end: 150 }]);
  failsWith(t, await rawWrite(none, [set(paused)]), grpc.status.UNAVAILABLE, 'TRYAGAIN');
});

test('drain waits for the writes admitted before it, not for later ones', async (t) => {
  const node = await nodeFor(t, { backend: 'held-memory' });
  const store = heldStore as HeldStore;
  const { ownership } = node.node;
  const first = keyIn(1, 'first');
  const second = keyIn(2, 'second');
  const releaseFirst = store.hold(first);
  const releaseSecond = store.hold(second);

  const firstWrite = node.client.write({ mutations: [set(first)] });
  t.true(await waitFor(() => ownership.inFlightCount === 1));
  let drained = false;
  const drain = ownership.drain().then(() => (drained = true));
  const secondWrite = node.client.write({ mutations: [set(second)] });
  t.true(await waitFor(() => ownership.inFlightCount === 2));
  await sleep(100);
  t.false(drained);

  releaseFirst();
  await firstWrite;
  await drain;
  t.true(drained);
  t.is(ownership.inFlightCount, 1);

  let drainedLater = false;
  const later = ownership.drain().then(() => (drainedLater = true));
  await sleep(50);
  t.false(drainedLater);
  releaseSecond();
  await secondWrite;
  await later;
  t.is(ownership.inFlightCount, 0);
  // Refused calls are never counted.
  ownership.pause([{ start: 1, end: 1 }]);
  await t.throwsAsync(node.client.write({ mutations: [set(first)] }));
  t.is(ownership.inFlightCount, 0);
});

for (const backend of ['memory', 'rocksdb']) {
  test(`transfers and imports survive a restart (${backend})`, async (t) => {
    const dir = await restartable(t);
    const a = await dir.start({ backend, slots: [{ start: 0, end: 8191 }] });
    const { ownership } = a.node;
    await ownership.transfer('t1', [{ start: 0, end: 99 }], '10.0.0.1:7000');
    await ownership.transfer('t1', [{ start: 0, end: 99 }], '10.0.0.1:7000'); // idempotent
    await ownership.beginImport({
      id: 'i1',
      slots: [{ start: 8192, end: 9000 }],
      source: '10.0.0.2:7000',
    });
    t.is(ownership.ownerOf(8500), '10.0.0.2:7000');
    failsWith(
      t,
      await rawWrite(a, [set(keyIn(8500))]),
      grpc.status.FAILED_PRECONDITION,
      'MOVED 8500 10.0.0.2:7000',
    );
    await ownership.markCommitting('i1');
    await ownership.completeImport('i1');
    await ownership.beginImport({
      id: 'i2',
      slots: [{ start: 10000, end: 10010 }],
      source: '10.0.0.3:7000',
    });
    await ownership.markCommitting('i2');
    t.deepEqual(ownership.owned(), [{ start: 100, end: 9000 }]);
    await a.stop();

    const b = await dir.start({ backend });
    const after = b.node.ownership;
    const owned = [{ start: 100, end: 9000 }];
    t.deepEqual(after.owned(), owned);
    t.deepEqual((await b.client.stats()).ownedSlots, owned);
    t.deepEqual(after.transferred('t1'), { slots: [{ start: 0, end: 99 }], to: '10.0.0.1:7000' });
    t.is(after.ownerOf(50), '10.0.0.1:7000');
    t.is(after.ownerOf(8500), undefined);
    t.deepEqual(after.imports(), [
      {
        id: 'i2',
        slots: [{ start: 10000, end: 10010 }],
        source: '10.0.0.3:7000',
        phase: 'committing',
      },
    ]);
    // The start removes the keys of slots given away and forgets them.
    t.deepEqual(await waitFor(() => after.pendingCleanup().length === 0), true);

    failsWith(
      t,
      await rawWrite(b, [set(keyIn(50))]),
      grpc.status.FAILED_PRECONDITION,
      'MOVED 50 10.0.0.1:7000',
    );
    await b.client.write({ mutations: [set(keyIn(8500))] });
    // A handoff found committing stays paused until the migration settles it.
    failsWith(t, await rawWrite(b, [set(keyIn(10005))]), grpc.status.UNAVAILABLE, 'TRYAGAIN');
    await after.abandonImport('i2');
    failsWith(
      t,
      await rawWrite(b, [set(keyIn(10005))]),
      grpc.status.FAILED_PRECONDITION,
      'MOVED 10005 10.0.0.3:7000',
    );
    await b.stop();

    const c = await dir.start({ backend, slots: owned });
    t.deepEqual(c.node.ownership.imports(), []);
    t.deepEqual(c.node.ownership.pendingCleanup(), []);
  });
}

test('ownership mutations check what they are given', async (t) => {
  const node = await nodeFor(t, { slots: [{ start: 0, end: 99 }] });
  const { ownership } = node.node;
  const code = async (promise: Promise<unknown>) => {
    const error = await t.throwsAsync(promise);
    return isShardsnapError(error) ? error.code : undefined;
  };
  t.is(
    await code(ownership.transfer('x', [{ start: 50, end: 150 }], 'h:1')),
    ErrorCodes.failedPrecondition,
  );
  t.is(await code(ownership.transfer('x', [], 'h:1')), ErrorCodes.invalidArgument);
  t.is(
    await code(ownership.beginImport({ id: 'i', slots: [{ start: 90, end: 110 }], source: 'h:1' })),
    ErrorCodes.failedPrecondition,
  );
  await ownership.beginImport({ id: 'i', slots: [{ start: 100, end: 110 }], source: 'h:1' });
  t.is(
    await code(
      ownership.beginImport({ id: 'j', slots: [{ start: 105, end: 120 }], source: 'h:1' }),
    ),
    ErrorCodes.failedPrecondition,
  );
  t.is(await code(ownership.completeImport('nope')), ErrorCodes.notFound);
  await ownership.abandonImport('nope'); // idempotent
  // Slots given away and not cleaned yet cannot come back before they are.
  await ownership.transfer('t', [{ start: 0, end: 9 }], 'h:2');
  t.deepEqual(ownership.pendingCleanup(), [{ start: 0, end: 9 }]);
  t.is(
    await code(ownership.beginImport({ id: 'k', slots: [{ start: 0, end: 9 }], source: 'h:2' })),
    ErrorCodes.unavailable,
  );
  await ownership.cleaned([{ start: 0, end: 9 }]);
  await ownership.beginImport({ id: 'k', slots: [{ start: 0, end: 9 }], source: 'h:2' });
  t.true(ownership.ownsAny([{ start: 9, end: 10 }]));
  t.false(ownership.ownsAll([{ start: 9, end: 10 }]));
  t.false(ownership.ownsAny([{ start: 0, end: 9 }]));
  t.true(ownership.ownsAll([]));
});

test('concurrent mutations are applied in order and the file never goes backwards', async (t) => {
  const dataDir = await tempDirFor(t, 'shardsnap-ownership-');
  const ownership = await Ownership.load(dataDir);
  await Promise.all(
    Array.from({ length: 32 }, (_, i) =>
      ownership.transfer(`t${i}`, [{ start: i * 10, end: i * 10 + 9 }], `h:${i}`),
    ),
  );
  const reloaded = await Ownership.load(dataDir);
  t.deepEqual(reloaded.owned(), [{ start: 320, end: 16383 }]);
  t.deepEqual(reloaded.pendingCleanup(), [{ start: 0, end: 319 }]);
  t.is(reloaded.ownerOf(315), 'h:31');
});

test('slots other than the recorded ones fail the start', async (t) => {
  const dir = await restartable(t);
  const first = await dir.start({ slots: [{ start: 0, end: 8191 }] });
  await first.stop();
  const error = await t.throwsAsync(dir.start({ slots: [{ start: 0, end: 16383 }] }));
  t.true(isShardsnapError(error, ErrorCodes.failedPrecondition));
  t.regex(error?.message ?? '', /\(0-16383\).*\(0-8191\)/);
  const none = await t.throwsAsync(dir.start({ slots: [] }));
  t.regex(none?.message ?? '', /\(none\).*\(0-8191\)/);
  // The same slots, or none given, start it.
  const again = await dir.start({
    slots: [
      { start: 0, end: 4095 },
      { start: 4096, end: 8191 },
    ],
  });
  t.deepEqual(again.node.ownership.owned(), [{ start: 0, end: 8191 }]);
});

test('a corrupt ownership file fails the start and is left as it is', async (t) => {
  const dir = await restartable(t);
  const file = join(dir.dataDir, OWNERSHIP_FILE);
  for (const content of [
    '{"version": 1, "owned": [',
    '{"version": 7}',
    '{"version":1,"owned":[{"start":5,"end":2}],"owners":[],"imports":[],"transfers":[],"pendingCleanup":[]}',
  ]) {
    await writeFile(file, content);
    const error = await t.throwsAsync(dir.start());
    t.true(isShardsnapError(error, ErrorCodes.failedPrecondition), error?.message);
    t.regex(error?.message ?? '', /ownership file .* is corrupt/);
    t.is(await readFile(file, 'utf8'), content);
  }
  await rm(file);
  t.deepEqual((await dir.start()).node.ownership.owned(), ALL);
});

test('the start removes what an interrupted import and a transfer left (rocksdb)', async (t) => {
  const dir = await restartable(t);
  const a = await dir.start({ backend: 'rocksdb', slots: [{ start: 0, end: 8191 }] });
  const given = keyIn(100, 'given');
  const kept = keyIn(200, 'kept');
  const imported = keyIn(9000, 'imported');
  await a.client.write({ mutations: [set(given), set(kept)] });
  await a.node.ownership.transfer('t1', [{ start: 100, end: 100 }], '10.0.0.1:7000');
  await a.node.ownership.beginImport({
    id: 'i1',
    slots: [{ start: 9000, end: 9000 }],
    source: '10.0.0.2:7000',
  });
  // What an install of the import would have put there before the crash.
  await a.node.store.write([set(imported)]);
  t.is((await a.node.store.stats()).keyCount, 3);
  await a.stop();

  const b = await dir.start({ backend: 'rocksdb' });
  const { ownership, store } = b.node;
  t.true(
    await waitFor(
      () => ownership.imports().length === 0 && ownership.pendingCleanup().length === 0,
      10_000,
    ),
  );
  const [g, k, i] = await store.read([given, kept, imported]);
  t.is(g, undefined);
  t.truthy(k);
  t.is(i, undefined);
  t.is((await store.stats()).keyCount, 1);
  t.is(ownership.ownerOf(9000), '10.0.0.2:7000');
  t.is(ownership.ownerOf(100), '10.0.0.1:7000');
  await b.stop();

  // Nothing is left to do at the next start, and the keys stay gone.
  const c = await dir.start({ backend: 'rocksdb' });
  t.is((await c.node.store.stats()).keyCount, 1);
  t.deepEqual(await c.node.store.read([given, imported]), [undefined, undefined]);
});

async function dropSlotsOn(t: ExecutionContext, store: Store): Promise<void> {
  const inside = [keyIn(10, 'a'), keyIn(10, 'b'), keyIn(20), keyIn(30)];
  const outside = [keyIn(9), keyIn(31), keyIn(16000)];
  await store.write([...inside, ...outside].map((k) => set(k)));
  await store.write([
    {
      op: 'hset',
      key: keyIn(25, 'h'),
      fields: [{ field: Buffer.from('f'), value: Buffer.from('v') }],
    },
  ]);
  const before = await store.stats();
  t.is(before.keyCount, 8);
  const { seq } = await dropSlots(store, [
    { start: 20, end: 30 },
    { start: 10, end: 10 },
  ]);
  t.is(seq, before.seq + 1);
  const after = await store.stats();
  t.is(after.keyCount, 3);
  t.is(after.seq, seq);
  t.true((await store.read([...inside, keyIn(25, 'h')])).every((e) => e === undefined));
  t.true((await store.read(outside)).every((e) => e !== undefined));
  // No slots drops nothing (an empty list never means "all" here).
  t.deepEqual(await dropSlots(store, []), { seq });
  t.is((await store.stats()).keyCount, 3);
}

test('dropSlots removes the keys of the slots only (memory)', async (t) => {
  const store = new MemoryStore();
  await dropSlotsOn(t, store);
  await store.close();
});

test('dropSlots removes the keys of the slots only, durably (rocksdb)', async (t) => {
  const dataDir = await tempDirFor(t, 'shardsnap-drop-');
  const store = await RocksDbStore.open(dataDir);
  await dropSlotsOn(t, store);
  await store.close();
  const reopened = await RocksDbStore.open(dataDir);
  t.teardown(() => reopened.close());
  t.is((await reopened.stats()).keyCount, 3);
  t.true(
    (await reopened.read([keyIn(10, 'a'), keyIn(20), keyIn(30)])).every((e) => e === undefined),
  );
  t.true((await reopened.read([keyIn(9), keyIn(31), keyIn(16000)])).every((e) => e !== undefined));
});

test('serve --slots rejects bad ranges with exit code 2', async (t) => {
  const dataDir = await tempDirFor(t, 'shardsnap-ownership-cli-');
  for (const [slots, message] of [
    ['bad', /--slots.*cannot parse slot range "bad"/],
    ['5-3', /--slots.*start is greater than end/],
    ['0-16384', /--slots.*outside 0\.\.16383/],
    ['', /--slots.*no slots given/],
  ] as const) {
    const result = await cli([
      'serve',
      '--listen',
      '127.0.0.1:0',
      '--data-dir',
      dataDir,
      '--slots',
      slots,
    ]);
    t.is(result.code, 2, `${slots}: ${result.stderr}`);
    t.regex(result.stderr, message);
  }
});

test('serve --slots none starts an empty node; stats shows what it owns', async (t) => {
  const empty = await serve(t, ['--slots', 'none']);
  const stats = await cliJson<{ ownedSlots: SlotRange[] }>(['stats', '--at', empty.address]);
  t.is(stats.code, 0);
  t.deepEqual(stats.json.ownedSlots, []);
  const write = await cli(['load', '--to', empty.address, '--keys', '10', '--value-size', '8']);
  t.is(write.code, 5, write.stderr);
  t.regex(write.stderr, /slot \d+ is not served by this node/);

  const split = await serve(t, ['--slots', '0-100,200-300']);
  const splitStats = await cliJson<{ ownedSlots: SlotRange[] }>(['stats', '--at', split.address]);
  t.deepEqual(splitStats.json.ownedSlots, [
    { start: 0, end: 100 },
    { start: 200, end: 300 },
  ]);
});
