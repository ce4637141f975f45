import { getEventListeners } from 'node:events';
import { rm } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import { ChangeLog, type ChangeLogBatch } from '../src/changes';
import { loadSynthetic } from '../src/client';
import { type ChangeStreamBatch, streamChanges } from '../src/transfer';
import type { Connection } from '../src/wire';
import { ErrorCodes, type Mutation, type SlotRange, isShardsnapError, slotOf } from '../src/core';
import type { ChangeBatch__Output } from '../src/generated/shardsnap/v1/ChangeBatch';
import type { StreamChangesRequest } from '../src/generated/shardsnap/v1/StreamChangesRequest';
import { parseSize, resolveConfig } from '../src/server/config';
import { MemoryStore, RocksDbStore, type Store, type StoreChange, digestStore } from '../src/store';
import { mutationsFromWire, mutationsToWire } from '../src/wire/convert';
import { loadProto } from '../src/wire/proto';
import { b, nodeFor, sleep, tempDirFor, waitFor } from './helpers/harness';
import { startNode } from './helpers/nodes';

const FUTURE = Date.now() + 7 * 86_400_000;

/** A key whose slot is that of the hash tag `{tag}`. */
const tagged = (tag: string, name: string): Buffer => b(`{${tag}}${name}`);
const slotOfTag = (tag: string): number => slotOf(b(tag));
const single = (slot: number): SlotRange[] => [{ start: slot, end: slot }];
const set = (key: Buffer, value = 'v'): Mutation => ({
  op: 'set',
  key,
  value: b(value),
  expireAtMs: 0,
});
const write = (seq: number, mutations: Mutation[]): StoreChange => ({
  kind: 'write',
  seq,
  mutations,
  atMs: 1_000,
});
const keysOf = (batch: { mutations: readonly Mutation[] }): string[] =>
  batch.mutations.map((m) => m.key.toString());

/** A seeded PRNG (mulberry32): the same runs for the same seed. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function codeOf(error: unknown): string | undefined {
  return isShardsnapError(error) ? error.code : undefined;
}

// ---------------------------------------------------------------- ChangeLog

const A = slotOfTag('a');
const B = slotOfTag('b');

test('a stream yields the matching writes in order, with only the mutations in its slots', async (t) => {
  const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 0 });
  log.append(write(1, [set(tagged('a', '1')), set(tagged('b', '1'))]));
  log.append(write(2, [set(tagged('b', '2'))]));
  log.append(write(3, [set(tagged('a', '3'))]));
  const stream = log.changes(single(A), 0);
  const first = await stream.next();
  t.deepEqual(first.value, { seq: 1, mutations: [set(tagged('a', '1'))], headSeq: 3, atMs: 1_000 });
  const second = (await stream.next()).value as ChangeLogBatch;
  t.is(second.seq, 3);
  t.deepEqual(keysOf(second), ['{a}3']);

  // Every slot: whole batches.
  const all = log.changes([], 1);
  t.deepEqual(keysOf((await all.next()).value as ChangeLogBatch), ['{b}2']);
  await all.return(undefined);
  await stream.return(undefined);
  t.is(log.subscribers, 0);
});

test('the first message comes at once: a progress marker when nothing matches yet', async (t) => {
  const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 10 });
  const idle = log.changes(single(A), 10);
  t.deepEqual((await idle.next()).value, { seq: 10, mutations: [], headSeq: 10, atMs: 0 });
  await idle.return(undefined);

  log.append(write(11, [set(tagged('b', 'x'))]));
  log.append(write(12, [set(tagged('b', 'y'))]));
  const other = log.changes(single(A), 10);
  // Writes to other slots only: the marker says everything up to the head was seen.
  t.deepEqual((await other.next()).value, { seq: 12, mutations: [], headSeq: 12, atMs: 0 });
  await other.return(undefined);
});

test.serial(
  'a caught-up stream gets a progress marker soon after writes to other slots',
  async (t) => {
    const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 0 });
    const stream = log.changes(single(A), 0);
    t.is(((await stream.next()).value as ChangeLogBatch).seq, 0);
    const pending = stream.next();
    const started = Date.now();
    log.append(write(1, [set(tagged('b', '1'))]));
    log.append(write(2, [set(tagged('b', '2'))]));
    t.deepEqual((await pending).value, { seq: 2, mutations: [], headSeq: 2, atMs: 0 });
    t.true(Date.now() - started < 100, `marker after ${Date.now() - started} ms`);

    // A matching write after that is delivered at once, without a marker first.
    const next = stream.next();
    log.append(write(3, [set(tagged('a', '3')), set(tagged('b', '3'))]));
    const batch = (await next).value as ChangeLogBatch;
    t.is(batch.seq, 3);
    t.deepEqual(keysOf(batch), ['{a}3']);
    await stream.return(undefined);
  },
);

test('a long backlog of other slots is walked in steps, with progress markers', async (t) => {
  const log = new ChangeLog({ maxBytes: 64 << 20, startSeq: 0 });
  for (let seq = 1; seq <= 10_000; seq++) log.append(write(seq, [set(tagged('b', `${seq}`))]));
  log.append(write(10_001, [set(tagged('a', 'x'))]));
  const stream = log.changes(single(A), 0);
  const first = (await stream.next()).value as ChangeLogBatch;
  // The first message does not wait for the whole backlog: a marker part of the way.
  t.deepEqual(first.mutations, []);
  t.true(first.seq > 0 && first.seq < 10_000, `first at ${first.seq}`);
  const next = (await stream.next()).value as ChangeLogBatch;
  t.is(next.seq, 10_001);
  t.deepEqual(keysOf(next), ['{a}x']);
  await stream.return(undefined);
});

test('from_seq below the floor or ahead of the head is OUT_OF_RANGE, naming both seqs', async (t) => {
  const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 7 });
  const gone = await t.throwsAsync(log.changes([], 3).next());
  t.is(codeOf(gone), ErrorCodes.outOfRange);
  t.regex(gone?.message ?? '', /after 7 only; seq 3 is gone/);
  const ahead = await t.throwsAsync(log.changes([], 9).next());
  t.is(codeOf(ahead), ErrorCodes.outOfRange);
  t.regex(ahead?.message ?? '', /seq 9 is ahead of this node \(at 7\)/);
  const negative = await t.throwsAsync(log.changes([], -1).next());
  t.is(codeOf(negative), ErrorCodes.invalidArgument);
  t.is(log.subscribers, 0);
});

test('the log is bounded by bytes, evicts the oldest first and moves its floor', (t) => {
  const log = new ChangeLog({ maxBytes: 2_000, startSeq: 0 });
  for (let seq = 1; seq <= 100; seq++)
    log.append(write(seq, [set(tagged('a', `${seq}`), 'x'.repeat(100))]));
  t.true(log.bytes <= 2_000, `${log.bytes} bytes held`);
  t.true(log.entries > 1 && log.entries < 100);
  t.is(log.headSeq, 100);
  t.is(log.floorSeq, 100 - log.entries);
  // One change bigger than the whole log is still held (alone).
  log.append(write(101, [set(tagged('a', 'big'), 'x'.repeat(10_000))]));
  t.is(log.entries, 1);
  t.is(log.floorSeq, 100);
});

test('a stream whose next change was evicted fails with OUT_OF_RANGE instead of skipping', async (t) => {
  const log = new ChangeLog({ maxBytes: 1_000, startSeq: 0 });
  log.append(write(1, [set(tagged('a', '1'), 'x'.repeat(50))]));
  log.append(write(2, [set(tagged('a', '2'), 'x'.repeat(50))]));
  const stream = log.changes(single(A), 0);
  t.is(((await stream.next()).value as ChangeLogBatch).seq, 1);
  for (let seq = 3; seq <= 40; seq++)
    log.append(write(seq, [set(tagged('a', `${seq}`), 'x'.repeat(50))]));
  t.true(log.floorSeq > 1);
  const error = await t.throwsAsync(stream.next());
  t.is(codeOf(error), ErrorCodes.outOfRange);
  t.regex(
    error?.message ?? '',
    new RegExp(`after ${log.floorSeq} only; the changes after seq 1 are gone`),
  );
  t.is(log.subscribers, 0);
});

test('an install that replaces a followed slot fails the stream; others move it on', async (t) => {
  const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 0 });
  const stream = log.changes(single(A), 0);
  t.is(((await stream.next()).value as ChangeLogBatch).seq, 0);
  log.append({ kind: 'replace', seq: 1, slots: single(B) });
  t.deepEqual((await stream.next()).value, { seq: 1, mutations: [], headSeq: 1, atMs: 0 });
  log.append({ kind: 'replace', seq: 2, slots: [{ start: A - (A > 0 ? 1 : 0), end: A }] });
  const error = await t.throwsAsync(stream.next());
  t.is(codeOf(error), ErrorCodes.failedPrecondition);
  t.regex(
    error?.message ?? '',
    new RegExp(`slots ${A} were replaced by an install at seq 2; take a new snapshot`),
  );

  // A full install that moves the seq back starts another history.
  const open = log.changes([], 2);
  t.is(((await open.next()).value as ChangeLogBatch).seq, 2);
  log.append({ kind: 'replace', seq: 1, slots: [{ start: 0, end: 16383 }] });
  t.is(log.headSeq, 1);
  t.is(log.floorSeq, 0);
  t.is(codeOf(await t.throwsAsync(open.next())), ErrorCodes.failedPrecondition);
});

test('abort, return and close release every waiter and listener', async (t) => {
  const log = new ChangeLog({ maxBytes: 1 << 20, startSeq: 0 });
  const controller = new AbortController();
  const stream = log.changes([], 0, controller.signal);
  await stream.next();
  const waiting = stream.next();
  await sleep(5);
  t.is(log.subscribers, 1);
  t.is(getEventListeners(controller.signal, 'abort').length, 1);
  controller.abort();
  t.is(codeOf(await t.throwsAsync(waiting)), ErrorCodes.cancelled);
  t.is(log.subscribers, 0);
  t.is(getEventListeners(controller.signal, 'abort').length, 0);

  const returned = log.changes([], 0);
  await returned.next();
  t.is(log.subscribers, 1);
  await returned.return(undefined);
  t.is(log.subscribers, 0);

  const closing = log.changes([], 0);
  await closing.next();
  const pending = closing.next();
  log.close();
  t.is(codeOf(await t.throwsAsync(pending)), ErrorCodes.unavailable);
  t.is(log.subscribers, 0);
});

test('no silent gaps: every stream delivers the contiguous matching writes or fails OUT_OF_RANGE', async (t) => {
  for (const seed of [1, 2, 3]) {
    const random = prng(seed);
    const store = new MemoryStore();
    const log = new ChangeLog({ maxBytes: 6_000, startSeq: 0 });
    // What the store did, seen through its own listener: the reference.
    const history = new Map<number, Mutation[]>();
    store.onChange((change) => {
      if (change.kind === 'write') history.set(change.seq, [...change.mutations]);
    });
    store.onChange((change) => log.append(change));
    const tags = Array.from({ length: 12 }, (_, i) => `t${i}`);
    const randomBatch = (): Mutation[] =>
      Array.from({ length: 1 + Math.floor(random() * 3) }, () =>
        set(
          tagged(tags[Math.floor(random() * tags.length)] as string, 'k'),
          'x'.repeat(Math.floor(random() * 80)),
        ),
      );
    const WRITES = 400;
    for (let i = 0; i < 20; i++) await store.write(randomBatch());

    type Outcome = {
      fromSeq: number;
      slots: SlotRange[];
      batches: ChangeLogBatch[];
      error?: unknown;
    };
    const consume = async (delayMs: number): Promise<Outcome> => {
      const tag = tags[Math.floor(random() * tags.length)] as string;
      const slots = random() < 0.2 ? [] : single(slotOfTag(tag));
      const fromSeq = log.floorSeq + Math.floor(random() * (log.headSeq - log.floorSeq + 1));
      const outcome: Outcome = { fromSeq, slots, batches: [] };
      try {
        for await (const batch of log.changes(slots, fromSeq)) {
          outcome.batches.push(batch);
          if (batch.seq >= 20 + WRITES) break;
          if (delayMs > 0) await sleep(delayMs * random());
        }
      } catch (error) {
        outcome.error = error;
      }
      return outcome;
    };
    const produce = async (): Promise<void> => {
      for (let i = 0; i < WRITES; i++) {
        await store.write(randomBatch());
        if (i % 4 === 0) await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const consumers = [0, 0, 1, 3, 8, 20].map((delay) => consume(delay));
    await produce();
    const outcomes = await Promise.all(consumers);

    for (const { fromSeq, slots, batches, error } of outcomes) {
      if (error !== undefined) t.is(codeOf(error), ErrorCodes.outOfRange, (error as Error).message);
      else t.is(batches[batches.length - 1]?.seq, 20 + WRITES);
      // Everything from fromSeq up to the last reported seq, exactly, in order.
      const last = batches[batches.length - 1]?.seq ?? fromSeq;
      const expected: Array<{ seq: number; keys: string[] }> = [];
      const follows = (key: Buffer): boolean =>
        slots.length === 0 || slots.some((r) => r.start <= slotOf(key) && slotOf(key) <= r.end);
      for (let seq = fromSeq + 1; seq <= last; seq++) {
        const keys = (history.get(seq) ?? [])
          .filter((m) => follows(m.key))
          .map((m) => m.key.toString());
        if (keys.length > 0) expected.push({ seq, keys });
      }
      const delivered = batches
        .filter((x) => x.mutations.length > 0)
        .map((x) => ({ seq: x.seq, keys: keysOf(x) }));
      t.deepEqual(delivered, expected, `seed ${seed}, from ${fromSeq}`);
      for (let i = 1; i < batches.length; i++) {
        t.true((batches[i] as ChangeLogBatch).seq > (batches[i - 1] as ChangeLogBatch).seq);
      }
    }
    // Both outcomes happen: fast streams keep up, the slowest fall behind the tiny log.
    t.true(
      outcomes.some((o) => o.error === undefined),
      `seed ${seed}: none kept up`,
    );
    t.true(
      outcomes.some((o) => o.error !== undefined),
      `seed ${seed}: none fell behind`,
    );
    t.is(log.subscribers, 0);
    await store.close();
  }
});

// ---------------------------------------------------------------- Store.onChange

async function storeChanges(t: ExecutionContext, store: Store): Promise<void> {
  const seen: StoreChange[] = [];
  const unsubscribe = store.onChange((change) => seen.push(change));
  // A throwing listener is skipped; the write and the other listeners go on.
  const unsubscribeBad = store.onChange(() => {
    throw new Error('listener bug');
  });
  const warnings: string[] = [];
  const onWarning = (w: Error): number => warnings.push(w.message);
  process.on('warning', onWarning);
  const batch = [set(tagged('a', '1')), set(tagged('b', '1'))];
  const { seq } = await store.write(batch);
  t.like(seen[0], { kind: 'write', seq, mutations: batch });
  t.is(seen.length, 1);
  unsubscribeBad();
  await waitFor(() => warnings.length > 0, 1_000);
  process.off('warning', onWarning);
  t.regex(warnings[0] ?? '', /listener threw at seq/);

  // A failed write changes nothing and says nothing.
  await t.throwsAsync(store.write([{ op: 'sadd', key: tagged('a', '1'), members: [b('m')] }]));
  t.is(seen.length, 1);

  const install = await store.beginInstall({ slots: single(A), full: false, seq: 0 });
  await install.add([
    { key: tagged('a', '2'), entry: { value: { type: 'string', value: b('x') }, expireAtMs: 0 } },
  ]);
  const committed = await install.commit();
  t.deepEqual(seen[1], { kind: 'replace', seq: committed.seq, slots: single(A) });
  t.is(committed.seq, seq + 1);

  const full = await store.beginInstall({ slots: [], full: true, seq: 50 });
  await full.commit();
  t.deepEqual(seen[2], { kind: 'replace', seq: 50, slots: [{ start: 0, end: 16383 }] });

  unsubscribe();
  await store.write([set(tagged('a', '3'))]);
  t.is(seen.length, 3);
}

test('MemoryStore.onChange reports writes and installs, in seq order', async (t) => {
  const store = new MemoryStore();
  await storeChanges(t, store);
  await store.close();
});

test('RocksDbStore.onChange reports writes and installs, in seq order', async (t) => {
  const dir = await tempDirFor(t);
  const store = await RocksDbStore.open(dir);
  try {
    await storeChanges(t, store);
  } finally {
    await store.close();
  }
});

// ---------------------------------------------------------------- wire and config

test('mutationsToWire and mutationsFromWire round-trip every op through protobuf', (t) => {
  const mutations: Mutation[] = [
    { op: 'set', key: b('s'), value: b('v'), expireAtMs: FUTURE },
    { op: 'del', key: b('d') },
    { op: 'hset', key: b('h'), fields: [{ field: b('f'), value: b('v') }] },
    { op: 'lpush', key: b('l'), values: [b('1'), b('2')] },
    { op: 'rpush', key: b('r'), values: [b('3')] },
    { op: 'sadd', key: b('S'), members: [b('m')] },
    { op: 'zadd', key: b('z'), members: [{ member: b('m'), score: -1.5 }] },
    { op: 'expire', key: b('e'), expireAtMs: FUTURE },
  ];
  const method = loadProto().shardsnap.v1.Shard.service.Write;
  const decoded = method.requestDeserialize(
    method.requestSerialize({ mutations: mutationsToWire(mutations) }),
  );
  t.deepEqual(mutationsFromWire(decoded.mutations), mutations);
});

test('change log sizes parse from 64MiB, 512KiB or bytes, and must be positive', (t) => {
  t.is(parseSize('64MiB'), 64 * 1024 * 1024);
  t.is(parseSize('512KiB'), 512 * 1024);
  t.is(parseSize('1g'), 1024 ** 3);
  t.is(parseSize('4096'), 4096);
  t.throws(() => parseSize('lots'), { message: /not a size/ });
  t.is(resolveConfig({ dataDir: '/x' }).changeLogBytes, 64 * 1024 * 1024);
  t.throws(() => resolveConfig({ dataDir: '/x', changeLogBytes: 0 }), {
    message: /change log size/,
  });
});

// ---------------------------------------------------------------- StreamChanges over gRPC

/** Reads a raw StreamChanges call until `count` messages or an error (which keeps its status). */
async function rawChanges(
  conn: Connection,
  request: StreamChangesRequest,
  count = 1,
): Promise<{ messages: ChangeBatch__Output[]; error?: grpc.ServiceError }> {
  const call = conn.snapshots.StreamChanges(request, { deadline: Date.now() + 10_000 });
  const messages: ChangeBatch__Output[] = [];
  try {
    for await (const message of call as AsyncIterable<ChangeBatch__Output>) {
      messages.push(message);
      if (messages.length >= count) break;
    }
    return { messages };
  } catch (error) {
    return { messages, error: error as grpc.ServiceError };
  } finally {
    call.cancel();
  }
}

/** A random batch of every op over a few keys per type (so types never clash). */
function randomMutations(random: () => number): Mutation[] {
  const pick = (n: number): number => Math.floor(random() * n);
  return Array.from({ length: 1 + pick(4) }, (): Mutation => {
    const i = pick(60);
    switch (pick(8)) {
      case 0:
        return { op: 'set', key: b(`s:${i}`), value: b(`v${pick(1000)}`), expireAtMs: 0 };
      case 1:
        return { op: 'del', key: b(`${'shlz'[pick(4)]}:${i}`) };
      case 2:
        return {
          op: 'hset',
          key: b(`h:${i}`),
          fields: [{ field: b(`f${pick(5)}`), value: b(`${pick(99)}`) }],
        };
      case 3:
        return { op: 'lpush', key: b(`l:${i}`), values: [b(`${pick(99)}`)] };
      case 4:
        return { op: 'rpush', key: b(`l:${i}`), values: [b(`${pick(99)}`), b('r')] };
      case 5:
        return { op: 'sadd', key: b(`S:${i}`), members: [b(`m${pick(20)}`)] };
      case 6:
        return {
          op: 'zadd',
          key: b(`z:${i}`),
          members: [{ member: b(`m${pick(20)}`), score: pick(100) / 3 }],
        };
      default:
        return { op: 'expire', key: b(`s:${i}`), expireAtMs: FUTURE + pick(1000) };
    }
  });
}

for (const backend of ['memory', 'rocksdb']) {
  test(`a snapshot plus the streamed changes reproduces the range on another node (${backend})`, async (t) => {
    const source = await nodeFor(t, { backend });
    const target = await nodeFor(t);
    await loadSynthetic(source.client, { keys: 1500, valueSize: 40, types: 'mixed', seed: 21 });
    const random = prng(backend === 'memory' ? 5 : 6);
    for (let i = 0; i < 30; i++) await source.client.write({ mutations: randomMutations(random) });
    const range = [{ start: 0, end: 8191 }];
    const { incarnation } = await source.client.stats();
    const info = await source.client.createSnapshot({ slots: range });
    const snapshotSeq = Number(info.seq);

    const controller = new AbortController();
    const received: ChangeStreamBatch[] = [];
    const consumer = (async () => {
      try {
        for await (const batch of streamChanges(source.client.connection, {
          slots: range,
          fromSeq: snapshotSeq,
          incarnation,
          signal: controller.signal,
        }))
          received.push(batch);
      } catch (error) {
        if (!controller.signal.aborted) throw error;
      }
    })();
    const writer = (async () => {
      for (let i = 0; i < 300; i++) {
        await source.client.write({ mutations: randomMutations(random) });
        if (i % 50 === 0) await sleep(5);
      }
    })();
    const pull = (async () => {
      for await (const progress of target.client.pull({
        source: source.node.address,
        slots: range,
        snapshotId: info.id,
      }))
        if (progress.done) return progress;
      throw new Error('pull ended without a result');
    })();
    await Promise.all([writer, pull]);
    const finalSeq = Number((await source.client.stats()).seq);
    const caughtUp = await waitFor(
      () => (received[received.length - 1]?.seq ?? -1) >= finalSeq,
      10_000,
    );
    t.truthy(caughtUp, `stream at ${received[received.length - 1]?.seq}, source at ${finalSeq}`);
    controller.abort();
    await consumer;

    t.is(received[0]?.incarnation, incarnation);
    t.true(received.every((x) => x.headSeq >= x.seq && x.incarnation === incarnation));
    for (let i = 1; i < received.length; i++) {
      t.true((received[i] as ChangeStreamBatch).seq > (received[i - 1] as ChangeStreamBatch).seq);
    }
    const batches = received.filter((x) => x.mutations.length > 0);
    t.true(batches.length > 20, `${batches.length} batches in range`);
    t.true(batches.every((x) => x.mutations.every((m) => slotOf(m.key) <= 8191)));
    for (const batch of batches) await target.client.write({ mutations: batch.mutations });

    const [want, got] = await Promise.all([
      source.client.digest({ slots: range }),
      target.client.digest({ slots: range }),
    ]);
    t.is(got.digest, want.digest);
    t.is(Number(got.keyCount), Number(want.keyCount));
    await waitFor(() => source.node.changeLog.subscribers === 0);
    t.is(source.node.changeLog.subscribers, 0);
  });
}

test('StreamChanges answers OUT_OF_RANGE for a seq the log no longer holds, or one ahead', async (t) => {
  const { node, client } = await nodeFor(t, { changeLogBytes: 2_048 });
  for (let i = 0; i < 60; i++) await client.write({ mutations: [set(b(`k${i}`), 'x'.repeat(40))] });
  const stats = await client.stats();
  t.true(Number(stats.changeLogFloorSeq) > 0);
  const gone = await rawChanges(client.connection, { fromSeq: 0 });
  t.is(gone.error?.code, grpc.status.OUT_OF_RANGE);
  t.regex(gone.error?.details ?? '', new RegExp(`seq 0 is gone`));
  const ahead = await rawChanges(client.connection, { fromSeq: 1_000 });
  t.is(ahead.error?.code, grpc.status.OUT_OF_RANGE);
  t.regex(ahead.error?.details ?? '', /seq 1000 is ahead of this node \(at 60\)/);
  // The client maps it to the domain error.
  const error = await t.throwsAsync(streamChanges(client.connection, { fromSeq: 0 }).next());
  t.is(codeOf(error), ErrorCodes.outOfRange);
  // From the floor itself, the stream works.
  const ok = await rawChanges(client.connection, { fromSeq: Number(stats.changeLogFloorSeq) });
  t.is(ok.error, undefined);
  t.is(Number(ok.messages[0]?.seq), Number(stats.changeLogFloorSeq) + 1);
  t.is(node.changeLog.headSeq, 60);
});

test('StreamChanges refuses bad slots and from_seq with INVALID_ARGUMENT', async (t) => {
  const { client } = await nodeFor(t);
  const reversed = await rawChanges(client.connection, { slots: [{ start: 9, end: 2 }] });
  t.is(reversed.error?.code, grpc.status.INVALID_ARGUMENT);
  const outside = await rawChanges(client.connection, { slots: [{ start: 0, end: 16384 }] });
  t.is(outside.error?.code, grpc.status.INVALID_ARGUMENT);
  const huge = await rawChanges(client.connection, { fromSeq: '18446744073709551615' });
  t.is(huge.error?.code, grpc.status.INVALID_ARGUMENT);
});

test('StreamChanges with the incarnation of an earlier run fails with FAILED_PRECONDITION', async (t) => {
  const dataDir = await tempDirFor(t);
  const first = await startNode({ backend: 'rocksdb', dataDir });
  for (let i = 0; i < 3; i++) await first.client.write({ mutations: [set(b(`k${i}`))] });
  const old = (await first.client.stats()).incarnation;
  t.regex(old, /^[0-9a-f]{16}$/);
  t.is(old, first.node.incarnation);
  // The right incarnation is accepted.
  const same = await rawChanges(first.client.connection, { fromSeq: 3, incarnation: old });
  t.is(same.error, undefined);
  await first.stop();

  const second = await startNode({ backend: 'rocksdb', dataDir });
  t.teardown(() => second.stop());
  const now = second.node.incarnation;
  t.not(now, old);
  const stale = await rawChanges(second.client.connection, { fromSeq: 3, incarnation: old });
  t.is(stale.error?.code, grpc.status.FAILED_PRECONDITION);
  t.regex(
    stale.error?.details ?? '',
    new RegExp(`this node restarted \\(incarnation ${now}, asked for ${old}\\)`),
  );
  // The log of the new run starts at the store's seq: earlier seqs are not held.
  const stats = await second.client.stats();
  t.is(Number(stats.changeLogFloorSeq), 3);
  t.is(
    (await rawChanges(second.client.connection, { fromSeq: 2 })).error?.code,
    grpc.status.OUT_OF_RANGE,
  );
  t.is((await rawChanges(second.client.connection, { fromSeq: 3 })).error, undefined);
});

test('a client that cancels or stops reading releases its subscription', async (t) => {
  const { node, client } = await nodeFor(t);
  const controller = new AbortController();
  const stream = streamChanges(client.connection, { fromSeq: 0, signal: controller.signal });
  t.deepEqual(
    { ...((await stream.next()).value as ChangeStreamBatch), incarnation: '' },
    { seq: 0, mutations: [], headSeq: 0, incarnation: '', atMs: 0 },
  );
  const pending = stream.next();
  await waitFor(() => node.changeLog.subscribers === 1);
  t.is(node.changeLog.subscribers, 1);
  controller.abort();
  t.is(codeOf(await t.throwsAsync(pending)), ErrorCodes.cancelled);
  t.truthy(await waitFor(() => node.changeLog.subscribers === 0));

  // Breaking out of the loop cancels the call too.
  for await (const batch of streamChanges(client.connection, { fromSeq: 0 })) {
    t.is(batch.seq, 0);
    break;
  }
  t.truthy(await waitFor(() => node.changeLog.subscribers === 0));
  t.is(node.changeLog.subscribers, 0);
});

test('stopping a node ends its change streams at once', async (t) => {
  const running = await startNode();
  t.teardown(() => rm(running.dataDir, { recursive: true, force: true }));
  const stream = streamChanges(running.client.connection, { fromSeq: 0 });
  await stream.next();
  const pending = stream.next();
  const started = Date.now();
  await running.node.stop(5_000);
  t.true(Date.now() - started < 2_000, `stop took ${Date.now() - started} ms`);
  const error = await t.throwsAsync(pending);
  t.is(codeOf(error), ErrorCodes.unavailable);
  running.client.close();
});

test('Stats shows the incarnation and the change log', async (t) => {
  const { node, client } = await nodeFor(t, { changeLogBytes: 1_000 });
  let stats = await client.stats();
  t.is(stats.incarnation, node.incarnation);
  t.is(Number(stats.changeLogEntries), 0);
  t.is(Number(stats.changeLogBytes), 0);
  t.is(Number(stats.changeLogFloorSeq), 0);
  for (let i = 0; i < 3; i++) await client.write({ mutations: [set(b(`k${i}`), 'x')] });
  stats = await client.stats();
  t.is(Number(stats.changeLogEntries), 3);
  t.is(Number(stats.changeLogBytes), node.changeLog.bytes);
  t.true(Number(stats.changeLogBytes) > 0);
  for (let i = 0; i < 30; i++) await client.write({ mutations: [set(b(`k${i}`), 'x'.repeat(50))] });
  stats = await client.stats();
  t.true(Number(stats.changeLogBytes) <= 1_000);
  t.is(Number(stats.changeLogFloorSeq), 33 - Number(stats.changeLogEntries));
});

for (const backend of ['memory', 'rocksdb'] as const) {
  test(`a replay at the source's clock reading ends like the source, near an expiry (${backend})`, async (t) => {
    // The source applies `sadd` while the set is alive; the replica replays it after the
    // set's expiry by its own clock: with the source's reading it extends the same set.
    let sourceNow = 1_000_000;
    let replicaNow = 1_000_000;
    const open = async (now: () => number): Promise<Store> => {
      if (backend === 'memory') return new MemoryStore({ now });
      const dir = await tempDirFor(t);
      return RocksDbStore.open(dir, { now });
    };
    const source = await open(() => sourceNow);
    const replica = await open(() => replicaNow);
    t.teardown(async () => {
      await source.close();
      await replica.close();
    });
    const seen: StoreChange[] = [];
    source.onChange((change) => seen.push(change));
    const first: Mutation[] = [
      { op: 'sadd', key: b('s'), members: [b('a')] },
      { op: 'expire', key: b('s'), expireAtMs: 1_000_500 },
    ];
    await source.write(first);
    await replica.write(first);
    sourceNow = 1_000_400;
    await source.write([{ op: 'sadd', key: b('s'), members: [b('b')] }]);
    replicaNow = 1_000_600;
    const change = seen[1];
    if (change?.kind !== 'write') throw new Error('expected a write change');
    t.is(change.atMs, 1_000_400);
    await replica.write(change.mutations, { atMs: change.atMs });
    // Both hold {a, b} expiring at 1_000_500 (so both now read it as gone); a replay by
    // the replica's own clock would have made a new, never-expiring {b}.
    replicaNow = sourceNow = 1_000_450;
    const [onSource] = await source.read([b('s')]);
    const [onReplica] = await replica.read([b('s')]);
    t.deepEqual(onReplica, onSource);
    t.is(onReplica?.expireAtMs, 1_000_500);
  });
}

for (const backend of ['memory', 'rocksdb'] as const) {
  test(`a merged replay with one clock reading per mutation ends like the batches one by one (${backend})`, async (t) => {
    let sourceNow = 1_000_000;
    const open = async (now: () => number): Promise<Store> => {
      if (backend === 'memory') return new MemoryStore({ now });
      return RocksDbStore.open(await tempDirFor(t), { now });
    };
    const source = await open(() => sourceNow);
    const replica = await open(() => 5_000_000);
    t.teardown(async () => {
      await source.close();
      await replica.close();
    });
    const seen: StoreChange[] = [];
    source.onChange((change) => seen.push(change));
    // Before its expiry the set grows; after it, `sadd` starts a new set without expiry,
    // and `hset` on the expired key is no WRONGTYPE.
    const steps: Array<[number, Mutation[]]> = [
      [
        1_000_000,
        [
          { op: 'sadd', key: b('s'), members: [b('a')] },
          { op: 'expire', key: b('s'), expireAtMs: 1_000_500 },
        ],
      ],
      [1_000_400, [{ op: 'sadd', key: b('s'), members: [b('b')] }]],
      [1_000_600, [{ op: 'sadd', key: b('s'), members: [b('c')] }]],
      [1_000_700, [{ op: 'set', key: b('h'), value: b('x'), expireAtMs: 1_000_800 }]],
      [1_000_900, [{ op: 'hset', key: b('h'), fields: [{ field: b('f'), value: b('v') }] }]],
    ];
    for (const [at, batch] of steps) {
      sourceNow = at;
      await source.write(batch);
    }
    const writes = seen.flatMap((c) => (c.kind === 'write' ? [c] : []));
    await replica.write(
      writes.flatMap((c) => c.mutations),
      { atMs: writes.flatMap((c) => c.mutations.map(() => c.atMs)) },
    );
    sourceNow = 1_001_000;
    const keys = [b('s'), b('h')];
    const [onReplica, onSource] = await Promise.all([
      digestStore(replica, []),
      digestStore(source, []),
    ]);
    t.deepEqual([onReplica.digest, onReplica.keyCount], [onSource.digest, onSource.keyCount]);
    const [set, hash] = await replica.read(keys);
    t.is(set?.expireAtMs, 0);
    t.is(set?.value.type === 'set' ? set.value.members.size : -1, 1);
    t.is(hash?.value.type, 'hash');
    await t.throwsAsync(replica.write([{ op: 'del', key: b('s') }], { atMs: [1, 2] }), {
      message: /2 clock readings/,
    });
  });
}
