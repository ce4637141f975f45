import { performance } from 'node:perf_hooks';
import test from 'ava';
import type { Mutation } from '../src/core';
import { ChangeApplier, ChangeFeed, type FeedBatch } from '../src/migration';
import { MemoryStore, type WriteOptions } from '../src/store';
import { b } from './helpers/harness';

/** A memory store that keeps every write it was asked for. */
class RecordingStore extends MemoryStore {
  readonly writes: Array<{ mutations: number; atMs: WriteOptions['atMs'] }> = [];

  override write(mutations: readonly Mutation[], options?: WriteOptions): Promise<{ seq: number }> {
    this.writes.push({ mutations: mutations.length, atMs: options?.atMs });
    return super.write(mutations, options);
  }
}

const set = (key: string, value: string, expireAtMs = 0): Mutation => ({
  op: 'set',
  key: b(key),
  value: b(value),
  expireAtMs,
});

const batch = (seq: number, mutations: Mutation[], atMs = 1_000): FeedBatch => ({
  seq,
  mutations,
  headSeq: seq,
  atMs,
});

async function stringAt(store: MemoryStore, key: string): Promise<string | undefined> {
  const [entry] = await store.read([b(key)]);
  return entry?.value.type === 'string' ? entry.value.value.toString() : entry?.value.type;
}

test('batches after the applied seq go in order into one merged write; older ones are skipped', async (t) => {
  const store = new RecordingStore();
  let counted = 0;
  const applier = new ChangeApplier(store, 10, (batches) => {
    counted += batches;
  });
  const now = Date.now();
  await applier.apply([
    batch(9, [set('a', 'before the snapshot')]),
    batch(10, [set('a', 'in the snapshot')]),
    batch(11, [set('a', 'one')], now - 5),
    batch(12, []),
    batch(13, [{ op: 'del', key: b('a') }, set('b', 'two')], now - 3),
    batch(14, [set('a', 'three')], now - 1),
  ]);
  t.is(applier.appliedSeq, 14);
  t.is(counted, 3, 'the batches with mutations past the snapshot');
  t.deepEqual(store.writes, [{ mutations: 4, atMs: [now - 5, now - 3, now - 3, now - 1] }]);
  t.is(await stringAt(store, 'a'), 'three');
  t.is(await stringAt(store, 'b'), 'two');

  // A batch seen again (a resent one) changes nothing.
  await applier.apply([batch(14, [set('a', 'again')])]);
  t.is(await stringAt(store, 'a'), 'three');
  t.is(applier.appliedSeq, 14);
  t.is(applier.lag(20), 6);
  t.is(applier.lag(3), 0);
});

test("each mutation applies at its source batch's clock, which decides expiries", async (t) => {
  const store = new MemoryStore();
  const applier = new ChangeApplier(store, 0);
  const now = Date.now();
  // On the source, the string expired between the two batches, so the push made a new
  // list; at this node's clock the string would still be alive and the push refused.
  await applier.apply([
    batch(1, [set('k', 'short-lived', now + 30_000)], now + 20_000),
    batch(2, [{ op: 'rpush', key: b('k'), values: [b('x')] }], now + 40_000),
  ]);
  const [entry] = await store.read([b('k')]);
  t.is(entry?.value.type, 'list');
  t.is(applier.appliedSeq, 2);
});

test('a large backlog is split into writes of at most 4096 mutations, in order', async (t) => {
  const store = new RecordingStore();
  const applier = new ChangeApplier(store, 0);
  const batches: FeedBatch[] = [];
  for (let seq = 1; seq <= 30; seq++) {
    batches.push(
      batch(
        seq,
        Array.from({ length: 300 }, (_, i) => set(`k${i}`, `v${seq}`)),
      ),
    );
  }
  await applier.apply(batches);
  t.true(store.writes.length > 1);
  t.true(store.writes.every((w) => w.mutations <= 4096 + 300));
  t.is(
    store.writes.reduce((n, w) => n + w.mutations, 0),
    9_000,
  );
  t.is(await stringAt(store, 'k0'), 'v30');
  t.is(await stringAt(store, 'k299'), 'v30');
});

/** A feed of the given batches, then silence until it is closed. */
function feedOf(batches: FeedBatch[], gapMs: number): ChangeFeed {
  return new ChangeFeed(async function* (signal) {
    for (const item of batches) {
      await new Promise((resolve) => setTimeout(resolve, gapMs));
      yield item;
    }
    await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
  }, 1 << 20);
}

test('applyUntil applies what the feed delivers until the seq is reached', async (t) => {
  const store = new MemoryStore();
  const applier = new ChangeApplier(store, 0);
  const feed = feedOf(
    [1, 2, 3, 4].map((seq) => batch(seq, [set('k', `v${seq}`)])),
    10,
  );
  t.teardown(() => feed.close());
  const reached = await applier.applyUntil(
    feed,
    3,
    performance.now() + 5_000,
    new AbortController().signal,
  );
  t.true(reached);
  t.true(applier.appliedSeq >= 3);
  t.is(await stringAt(store, 'k'), `v${applier.appliedSeq}`);
});

test('applyUntil gives up at its deadline when the seq does not come', async (t) => {
  const store = new MemoryStore();
  const applier = new ChangeApplier(store, 0);
  const feed = feedOf([batch(1, [set('k', 'v1')])], 1);
  t.teardown(() => feed.close());
  const startedAt = performance.now();
  const reached = await applier.applyUntil(feed, 5, startedAt + 150, new AbortController().signal);
  const took = performance.now() - startedAt;
  t.false(reached);
  t.is(applier.appliedSeq, 1, 'what came was applied');
  t.true(took >= 140 && took < 1_000, `gave up after ${Math.round(took)} ms`);
});

test('applyUntil stops with the cancel reason when its signal fires', async (t) => {
  const store = new MemoryStore();
  const applier = new ChangeApplier(store, 0);
  const feed = feedOf([], 1);
  t.teardown(() => feed.close());
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('migration cancelled')), 30);
  const error = await t.throwsAsync(
    applier.applyUntil(feed, 5, performance.now() + 10_000, controller.signal),
  );
  t.is(error?.message, 'migration cancelled');
});
