import test from 'ava';
import { copyFile, readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ALL_SLOTS, ErrorCodes, type Mutation, isShardsnapError } from '../src/core';
import { LocalSnapshotSchedule, LocalSnapshots } from '../src/durability/local-snapshots';
import { verifyArtifactFile } from '../src/snapshot';
import { MemoryStore, type StoreView, digestStore } from '../src/store';
import { b, flipByte, sha256, sleep, stringSets, tempDirFor, waitFor } from './helpers/harness';

/** Opens a whole-store view; the store's seq stands for the WAL position (lsn). */
const viewOf =
  (store: MemoryStore, onOpen?: (view: StoreView) => void) =>
  async (): Promise<{ view: StoreView; lsn: number }> => {
    const view = await store.openView(ALL_SLOTS);
    onOpen?.(view);
    return { view, lsn: view.seq };
  };

const digestOf = async (store: MemoryStore): Promise<string> =>
  (await digestStore(store, ALL_SLOTS)).digest;

/** One key of every type, one with an expiry far ahead. */
function mixedMutations(tag: string): Mutation[] {
  return [
    { op: 'set', key: b(`${tag}:s`), value: b('value'), expireAtMs: 0 },
    { op: 'set', key: b(`${tag}:ttl`), value: b('later'), expireAtMs: Date.now() + 3_600_000 },
    { op: 'hset', key: b(`${tag}:h`), fields: [{ field: b('f'), value: b('v') }] },
    { op: 'rpush', key: b(`${tag}:l`), values: [b('a'), b('b'), b('c')] },
    { op: 'sadd', key: b(`${tag}:set`), members: [b('x'), b('y')] },
    { op: 'zadd', key: b(`${tag}:z`), members: [{ member: b('m'), score: 1.5 }] },
  ];
}

async function filledStore(keys: number, prefix = 'k'): Promise<MemoryStore> {
  const store = new MemoryStore();
  for (let at = 0; at < keys; at += 10_000) {
    await store.write(stringSets(`${prefix}${at}-`, Math.min(10_000, keys - at), 64));
  }
  return store;
}

test('take, list and loadNewest round-trip the store', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const source = new MemoryStore();
  t.teardown(() => source.close());
  await source.write(mixedMutations('a'));
  await source.write(stringSets('key', 2_000));
  const expected = await digestStore(source, ALL_SLOTS);

  const snapshots = new LocalSnapshots({ dir, keep: 2 });
  const info = await snapshots.take(viewOf(source));
  t.is(info.seq, expected.seq);
  t.is(info.lsn, expected.seq);
  t.is(info.path, join(dir, `local-${String(info.lsn).padStart(20, '0')}.snap`));
  const bytes = await readFile(info.path);
  t.is(info.bytes, bytes.length);
  t.is(info.sha256, sha256(bytes));
  // The artifact is an ordinary records artifact: it verifies on its own.
  const verified = await verifyArtifactFile(info.path, info.sha256);
  t.is(verified.keyCount, expected.keyCount);
  t.is(verified.header.seq, expected.seq);
  t.true(verified.header.full);
  const sidecar = JSON.parse(await readFile(`${info.path}.json`, 'utf8')) as Record<
    string,
    unknown
  >;
  t.like(sidecar, { lsn: info.lsn, seq: info.seq, sha256: info.sha256, bytes: info.bytes });

  t.deepEqual(await snapshots.list(), [info]);
  t.is(await snapshots.oldestKeptLsn(), info.lsn);

  const restored = new MemoryStore();
  t.teardown(() => restored.close());
  const { loaded, skipped } = await new LocalSnapshots({ dir, keep: 2 }).loadNewest(restored);
  t.deepEqual(loaded, info);
  t.deepEqual(skipped, []);
  const got = await digestStore(restored, ALL_SLOTS);
  t.is(got.digest, expected.digest);
  t.is(got.keyCount, expected.keyCount);
  // A full install adopts the snapshot's seq: the WAL replay continues from it.
  t.is((await restored.stats()).seq, expected.seq);
});

test('an empty directory: nothing listed, nothing loaded', async (t) => {
  const dir = join(await tempDirFor(t, 'local-snap-'), 'not', 'yet');
  const snapshots = new LocalSnapshots({ dir, keep: 1 });
  t.deepEqual(await snapshots.list(), []);
  t.is(await snapshots.oldestKeptLsn(), undefined);
  const store = new MemoryStore();
  t.teardown(() => store.close());
  t.deepEqual(await snapshots.loadNewest(store), { loaded: undefined, skipped: [] });
  t.throws(() => new LocalSnapshots({ dir, keep: 0 }), { message: /keep/ });
});

test('keeps the newest `keep` snapshots; a take at an unchanged lsn adds none', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 2 });
  const taken = [];
  for (let i = 0; i < 4; i++) {
    await store.write(stringSets(`round${i}-`, 100));
    taken.push(await snapshots.take(viewOf(store)));
  }
  const listed = await snapshots.list();
  t.deepEqual(
    listed.map((s) => s.lsn),
    [taken[3]!.lsn, taken[2]!.lsn],
  );
  t.is(await snapshots.oldestKeptLsn(), taken[2]!.lsn);
  t.deepEqual((await readdir(dir)).sort(), [
    `local-${String(taken[2]!.lsn).padStart(20, '0')}.snap`,
    `local-${String(taken[2]!.lsn).padStart(20, '0')}.snap.json`,
    `local-${String(taken[3]!.lsn).padStart(20, '0')}.snap`,
    `local-${String(taken[3]!.lsn).padStart(20, '0')}.snap.json`,
  ]);

  const again = await snapshots.take(viewOf(store));
  t.deepEqual(again, taken[3]);
  t.deepEqual(await snapshots.list(), listed);
});

test('a corrupt newest snapshot is skipped and reported; the older one loads', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 3 });
  await store.write(stringSets('old', 500));
  const olderDigest = await digestOf(store);
  const older = await snapshots.take(viewOf(store));
  await store.write(stringSets('new', 500));
  const newer = await snapshots.take(viewOf(store));

  const bytes = await readFile(newer.path);
  flipByte(bytes, Math.floor(bytes.length / 2));
  await writeFile(newer.path, bytes);

  const restored = new MemoryStore();
  t.teardown(() => restored.close());
  const { loaded, skipped } = await snapshots.loadNewest(restored);
  t.deepEqual(loaded, older);
  t.is(skipped.length, 1);
  t.is(skipped[0]!.path, newer.path);
  // Whichever check notices first (a record's structure, the whole-file SHA-256).
  t.truthy(skipped[0]!.reason);
  t.log('corrupt newest:', skipped[0]!.reason);
  t.is(await digestOf(restored), olderDigest);
  t.is((await restored.stats()).seq, older.seq);
  // Reported, not deleted: it stays for a look.
  t.is((await readFile(newer.path)).length, bytes.length);
  t.is((await snapshots.list()).length, 2);
});

test('a truncated artifact is skipped, whether or not its sidecar agrees with it', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 3 });
  await store.write(stringSets('a', 300));
  const first = await snapshots.take(viewOf(store));
  await store.write(stringSets('b', 300));
  const second = await snapshots.take(viewOf(store));
  await store.write(stringSets('c', 300));
  const third = await snapshots.take(viewOf(store));

  // The newest cut short: its size no longer matches the sidecar.
  await truncate(third.path, third.bytes - 100);
  // The next one cut short with a sidecar rewritten to match: only the artifact's own
  // structure (its missing trailer) gives it away.
  await truncate(second.path, second.bytes - 100);
  const cut = await readFile(second.path);
  const sidecarPath = `${second.path}.json`;
  const sidecar = JSON.parse(await readFile(sidecarPath, 'utf8')) as Record<string, unknown>;
  await writeFile(
    sidecarPath,
    JSON.stringify({ ...sidecar, bytes: cut.length, sha256: sha256(cut) }),
  );

  const restored = new MemoryStore();
  t.teardown(() => restored.close());
  const { loaded, skipped } = await snapshots.loadNewest(restored);
  t.deepEqual(loaded, first);
  t.deepEqual(
    skipped.map((s) => s.path),
    [third.path, second.path],
  );
  t.regex(skipped[0]!.reason, /bytes/);
  t.log('truncated artifact with a matching sidecar:', skipped[1]!.reason);
  t.is((await restored.stats()).keyCount, 300);
});

test('no snapshot verifies: nothing is loaded and the store stays empty', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = await filledStore(5_000);
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 1 });
  const only = await snapshots.take(viewOf(store));
  // The last byte (of the trailer's inner digest): every record has been staged when
  // the whole-file SHA-256 fails.
  const bytes = await readFile(only.path);
  flipByte(bytes, bytes.length - 1);
  await writeFile(only.path, bytes);
  const restored = new MemoryStore();
  t.teardown(() => restored.close());
  const { loaded, skipped } = await snapshots.loadNewest(restored);
  t.is(loaded, undefined);
  t.is(skipped.length, 1);
  t.regex(skipped[0]!.reason, /SHA-256/);
  t.deepEqual(await restored.stats(), { keyCount: 0, seq: 0, dataBytes: 0, openViews: 0 });
});

test('leftovers of interrupted takes are not listed and are removed', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 2 });
  await store.write(stringSets('k', 200));
  const complete = await snapshots.take(viewOf(store));
  const name = (lsn: number): string => join(dir, `local-${String(lsn).padStart(20, '0')}.snap`);
  // Renamed into place but the sidecar never written.
  await copyFile(complete.path, name(complete.lsn + 10));
  // Still being written.
  await copyFile(complete.path, `${name(complete.lsn + 20)}.tmp`);
  await writeFile(`${name(complete.lsn + 30)}.json.tmp`, '{"version":1');
  // A deletion beyond `keep` cut between the sidecar and the artifact... the other way round.
  await writeFile(`${name(complete.lsn + 40)}.json`, await readFile(`${complete.path}.json`));
  // Not ours: left alone.
  await writeFile(join(dir, 'notes.txt'), 'hello');

  t.deepEqual(await snapshots.list(), [complete]);
  t.deepEqual((await readdir(dir)).sort(), [
    `local-${String(complete.lsn).padStart(20, '0')}.snap`,
    `local-${String(complete.lsn).padStart(20, '0')}.snap.json`,
    'notes.txt',
  ]);
});

test('an aborted take leaves the previous set as it was', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = await filledStore(100_000);
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 1 });
  const previous = await snapshots.take(viewOf(store));
  const before = (await readdir(dir)).sort();
  await store.write(stringSets('more', 10));

  const controller = new AbortController();
  const taking = snapshots.take(viewOf(store), { signal: controller.signal });
  // Abort once the temp file exists, well before 100k keys are written.
  await waitFor(async () => (await readdir(dir)).some((n) => n.endsWith('.tmp')), 5_000, 2);
  controller.abort();
  const error = await t.throwsAsync(taking);
  t.true(isShardsnapError(error, ErrorCodes.cancelled), String(error));
  t.deepEqual((await readdir(dir)).sort(), before);
  t.deepEqual(await snapshots.list(), [previous]);
  t.is((await store.stats()).openViews, 0);
});

test('a take is a point in time and does not block writes', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = await filledStore(100_000);
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 1 });
  const expected = await digestStore(store, ALL_SLOTS);

  let opened!: () => void;
  const viewOpen = new Promise<void>((resolve) => (opened = resolve));
  const startedAt = performance.now();
  let done = false;
  const taking = snapshots.take(viewOf(store, () => opened())).finally(() => (done = true));
  await viewOpen;
  let writes = 0;
  let maxLatencyMs = 0;
  while (!done) {
    const at = performance.now();
    // As a client's request would, the write first waits for a turn of the event loop:
    // its latency includes however long the take holds the loop.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Overwrites keys the snapshot holds, deletes one, adds new ones.
    await store.write([
      { op: 'set', key: b(`k0-${writes % 10_000}`), value: b(`changed ${writes}`), expireAtMs: 0 },
      { op: 'del', key: b(`k10000-${writes % 10_000}`) },
      { op: 'set', key: b(`during-${writes}`), value: b('x'), expireAtMs: 0 },
    ]);
    maxLatencyMs = Math.max(maxLatencyMs, performance.now() - at);
    writes++;
  }
  const info = await taking;
  const takeMs = performance.now() - startedAt;
  t.log(
    `take of ${expected.keyCount} keys (${info.bytes} bytes): ${takeMs.toFixed(0)} ms; ` +
      `${writes} writes during it, longest write latency ${maxLatencyMs.toFixed(2)} ms`,
  );
  t.true(writes > 10, `only ${writes} writes ran during the take`);
  // A take that held the loop would make a write wait about as long as the take itself;
  // the bound leaves room for a busy machine's scheduling and garbage collection.
  t.true(
    maxLatencyMs < Math.max(250, takeMs / 4),
    `a write waited ${maxLatencyMs.toFixed(0)} ms during a take of ${takeMs.toFixed(0)} ms`,
  );
  t.is(info.seq, expected.seq);

  const restored = new MemoryStore();
  t.teardown(() => restored.close());
  const { loaded } = await snapshots.loadNewest(restored);
  t.deepEqual(loaded, info);
  const got = await digestStore(restored, ALL_SLOTS);
  t.is(got.digest, expected.digest);
  t.is(got.keyCount, 100_000);
  t.not(await digestOf(store), expected.digest);
});

test('takes are serialized', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = await filledStore(20_000);
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 5 });
  const openWhenCalled: number[] = [];
  const openOne = async (): Promise<{ view: StoreView; lsn: number }> => {
    // Another take still running would hold its view open.
    openWhenCalled.push((await store.stats()).openViews);
    await store.write(stringSets(`t${openWhenCalled.length}-`, 1));
    return viewOf(store)();
  };
  const results = await Promise.all([1, 2, 3].map(() => snapshots.take(openOne)));
  t.deepEqual(openWhenCalled, [0, 0, 0]);
  t.is(new Set(results.map((r) => r.lsn)).size, 3);
  t.is((await snapshots.list()).length, 3);
});

test('the schedule takes on its interval', async (t) => {
  let takes = 0;
  const errors: unknown[] = [];
  const schedule = new LocalSnapshotSchedule({
    intervalMs: 80,
    walBytesThreshold: Number.MAX_SAFE_INTEGER,
    walBytes: () => 0,
    take: () => {
      takes++;
      return Promise.resolve();
    },
    onError: (e) => errors.push(e),
    pollMs: 20,
  });
  t.teardown(() => schedule.stop());
  await sleep(40);
  t.is(takes, 0, 'nothing before start');
  schedule.start();
  t.true(await waitFor(() => takes >= 3, 3_000), `${takes} takes`);
  await schedule.stop();
  const stoppedAt = takes;
  await sleep(200);
  t.is(takes, stoppedAt, 'nothing after stop');
  t.deepEqual(errors, []);
});

test('the schedule takes once the WAL grows past the threshold, one take at a time', async (t) => {
  let walBytes = 0;
  let takes = 0;
  let running = 0;
  let maxRunning = 0;
  const schedule = new LocalSnapshotSchedule({
    intervalMs: 60_000,
    walBytesThreshold: 1_000,
    walBytes: () => walBytes,
    take: async () => {
      takes++;
      maxRunning = Math.max(maxRunning, ++running);
      await sleep(100);
      walBytes = 0;
      running--;
    },
    onError: (e) => t.fail(String(e)),
    pollMs: 10,
  });
  t.teardown(() => schedule.stop());
  schedule.start();
  await sleep(100);
  t.is(takes, 0);
  walBytes = 999;
  await sleep(60);
  t.is(takes, 0, 'below the threshold');
  walBytes = 1_000;
  t.true(await waitFor(() => takes === 1, 2_000));
  // Still above the threshold while the take runs: no second take meanwhile.
  await sleep(60);
  t.is(takes, 1);
  await waitFor(() => running === 0, 2_000);
  await sleep(60);
  t.is(takes, 1, 'the take brought the WAL size back down');

  // poke() checks at once, without waiting for the poll.
  await schedule.stop();
  const poked = new LocalSnapshotSchedule({
    intervalMs: 60_000,
    walBytesThreshold: 10,
    walBytes: () => 50,
    take: () => {
      takes++;
      return Promise.resolve();
    },
    onError: (e) => t.fail(String(e)),
    pollMs: 60_000,
  });
  t.teardown(() => poked.stop());
  poked.start();
  poked.poke();
  t.is(takes, 2);
  await poked.stop();
  t.is(maxRunning, 1);
});

test('stop() waits for a running take; a failing take is reported and the schedule goes on', async (t) => {
  let release!: () => void;
  let finished = false;
  let calls = 0;
  const errors: unknown[] = [];
  const schedule = new LocalSnapshotSchedule({
    intervalMs: 30,
    walBytesThreshold: Number.MAX_SAFE_INTEGER,
    walBytes: () => 0,
    take: async () => {
      calls++;
      if (calls === 1) throw new Error('disk on fire');
      await new Promise<void>((resolve) => (release = resolve));
      finished = true;
    },
    onError: (e) => errors.push(e),
    pollMs: 10,
  });
  schedule.start();
  t.true(await waitFor(() => calls === 2 && schedule.busy, 3_000));
  t.is(errors.length, 1);
  t.regex(String(errors[0]), /disk on fire/);
  let stopped = false;
  const stopping = schedule.stop().then(() => (stopped = true));
  await sleep(100);
  t.false(stopped, 'stop() returned while the take ran');
  release();
  await stopping;
  t.true(finished);
  t.is(calls, 2);
});

test('a scheduled local snapshot against a live store', async (t) => {
  const dir = await tempDirFor(t, 'local-snap-');
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const snapshots = new LocalSnapshots({ dir, keep: 2 });
  let written = 0;
  let checkpointAt = 0;
  let takes = 0;
  const schedule = new LocalSnapshotSchedule({
    intervalMs: 60_000,
    walBytesThreshold: 10_000,
    walBytes: () => written - checkpointAt,
    take: async () => {
      const mark = written;
      await snapshots.take(viewOf(store));
      checkpointAt = mark;
      takes++;
    },
    onError: (e) => t.fail(String(e)),
    pollMs: 20,
  });
  t.teardown(() => schedule.stop());
  schedule.start();
  for (let i = 0; i < 50; i++) {
    const batch = stringSets(`live${i}-`, 20, 64);
    await store.write(batch);
    written += batch.length * 70;
    await sleep(5);
  }
  await waitFor(() => !schedule.busy && written - checkpointAt < 10_000, 3_000);
  await schedule.stop();
  // ~70 KB written against a 10 KB threshold.
  t.true(takes >= 3, `${takes} takes`);
  const listed = await snapshots.list();
  t.is(listed.length, 2);
  t.true(listed[0]!.lsn > listed[1]!.lsn);
});
