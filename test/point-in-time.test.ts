import test, { type ExecutionContext } from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ShardsnapClient, keyName, loadSynthetic } from '../src/client';
import { type Entry, type Mutation, type SlotRange, type StoreRecord, slotOf } from '../src/core';
import type { Value__Output } from '../src/generated/shardsnap/v1/Value';
import { ArtifactWriter, FORMAT_VERSION, RecordsDecoder } from '../src/snapshot';
import { MemoryStore } from '../src/store';
import { memoryScan } from '../src/strategies';
import { b, comparable, nodeFor, rawFetch, tempDirFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';

/** Decodes a whole records artifact, checking its trailer. */
function decodeArtifact(artifact: Buffer) {
  const decoder = new RecordsDecoder();
  // One piece: decoding in pieces is covered by integrity.test.ts.
  const records: StoreRecord[] = decoder.push(artifact);
  const { header, keyCount } = decoder.finish();
  const byKey = new Map<string, Entry>();
  for (const r of records) {
    const k = r.key.toString('latin1');
    if (byKey.has(k)) throw new Error(`duplicate key ${k} in artifact`);
    byKey.set(k, r.entry);
  }
  return { header, keyCount, records, byKey };
}

async function fetchArtifact(node: TestNode, id: string): Promise<Buffer> {
  const { chunks, error } = await rawFetch(node.client.connection, {
    snapshotId: id,
    chunkSize: 1 << 20,
  });
  if (error) throw error;
  return Buffer.concat(chunks.map((c) => c.data));
}

/** The same comparable form as `comparable()` (of a Read), for an entry of an artifact. */
function comparableEntry(entry: Entry | undefined): unknown {
  if (!entry) return { found: false };
  const hex = (x: Buffer): string => x.toString('hex');
  const lhex = (s: string): string => Buffer.from(s, 'latin1').toString('hex');
  const base = { found: true, expireAtMs: entry.expireAtMs };
  const v = entry.value;
  switch (v.type) {
    case 'string':
      return { ...base, string: hex(v.value) };
    case 'list':
      return { ...base, list: v.items.map(hex) };
    case 'hash':
      return {
        ...base,
        hash: [...v.fields]
          .map(([f, x]) => [lhex(f), hex(x)])
          .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
      };
    case 'set':
      return { ...base, set: [...v.members].map(lhex).sort() };
    case 'zset':
      return {
        ...base,
        zset: [...v.members]
          .map(([m, s]) => [lhex(m), s] as const)
          .sort((x, y) => (x[0] < y[0] ? -1 : 1)),
      };
  }
}

type Model = {
  found: boolean;
  expireAtMs?: number;
  string?: string;
  list?: string[];
  hash?: Array<[string, string]>;
  set?: string[];
  zset?: Array<readonly [string, number]>;
};

/** Applies one single-key mutation to the comparable form of a value (the expected-value model). */
function applyModel(state: Model, m: Mutation): Model {
  const hex = (x: Buffer): string => x.toString('hex');
  const byFirst = <T extends readonly [string, unknown]>(x: T, y: T): number =>
    x[0] < y[0] ? -1 : 1;
  switch (m.op) {
    case 'set':
      return { found: true, expireAtMs: m.expireAtMs, string: hex(m.value) };
    case 'del':
      return { found: false };
    case 'expire':
      return state.found ? { ...state, expireAtMs: m.expireAtMs } : state;
    case 'rpush':
      return { ...state, list: [...(state.list ?? []), ...m.values.map(hex)] };
    case 'lpush':
      return { ...state, list: [...m.values.map(hex).reverse(), ...(state.list ?? [])] };
    case 'hset': {
      const fields = new Map(state.hash ?? []);
      for (const f of m.fields) fields.set(hex(f.field), hex(f.value));
      return { ...state, hash: [...fields].sort(byFirst) };
    }
    case 'sadd':
      return { ...state, set: [...new Set([...(state.set ?? []), ...m.members.map(hex)])].sort() };
    case 'zadd': {
      const members = new Map(state.zset ?? []);
      for (const z of m.members) members.set(hex(z.member), z.score);
      return { ...state, zset: [...members].sort(byFirst) };
    }
  }
}

/** A key in the given slot (searched; slots of short keys are spread evenly). */
function keyInSlot(slot: number, name: string): Buffer {
  for (let i = 0; ; i++) {
    const key = b(`${name}-${i}`);
    if (slotOf(key) === slot) return key;
  }
}

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

interface Raced {
  mutation: Mutation;
  seq: number;
  /** Whether the write was acknowledged while the snapshot was still building. */
  duringBuild: boolean;
}

/**
 * Starts `concurrency` writers issuing `nextMutation()` until stopped; once `before` writes
 * are done, creates a snapshot; stops the writers when the snapshot is READY.
 */
async function raceSnapshot(
  t: ExecutionContext,
  node: TestNode,
  nextMutation: () => Mutation,
  options: { before?: number; concurrency?: number; strategy?: string } = {},
) {
  const before = options.before ?? 40;
  const writes: Raced[] = [];
  let stop = false;
  const current: { snapshotId?: string } = {};
  const building = (): boolean =>
    current.snapshotId !== undefined &&
    node.node.catalog.get(current.snapshotId).meta.state === 'BUILDING';
  let done = 0;
  let reachedBefore!: () => void;
  const beforeReached = new Promise<void>((resolve) => (reachedBefore = resolve));
  const writer = async (client: ShardsnapClient): Promise<void> => {
    while (!stop) {
      const mutation = nextMutation();
      const seq = await client.write({ mutations: [mutation] });
      writes.push({ mutation, seq, duringBuild: building() });
      if (++done === before) reachedBefore();
    }
  };
  const writers = Array.from({ length: options.concurrency ?? 8 }, () => writer(node.client));
  await beforeReached;
  const created = await node.client.createSnapshot(
    options.strategy ? { strategy: options.strategy } : {},
  );
  current.snapshotId = created.id;
  const info = await node.client.waitReady({ snapshotId: created.id, pollMs: 5 }).finally(() => {
    stop = true;
  });
  await Promise.all(writers);
  t.is(info.state, 'READY');
  t.is(Number(info.seq), Number(created.seq), 'the seq given at creation is the snapshot point');
  return { info, writes };
}

/** Expected value of each raced key at `seq`: its original, then its writes up to `seq` in order. */
function expectedAt(
  originals: Map<string, Model>,
  writes: readonly Raced[],
  seq: number,
): Map<string, Model> {
  const expected = new Map(originals);
  for (const w of [...writes].sort((x, y) => x.seq - y.seq)) {
    if (w.seq > seq) break;
    const k = w.mutation.key.toString('latin1');
    expected.set(k, applyModel(expected.get(k) ?? { found: false }, w.mutation));
  }
  return expected;
}

async function originalsOf(
  client: ShardsnapClient,
  keys: readonly Buffer[],
): Promise<Map<string, Model>> {
  const values: Value__Output[] = await client.read({ keys });
  return new Map(keys.map((k, i) => [k.toString('latin1'), comparable(values[i]) as Model]));
}

function checkRaced(
  t: ExecutionContext,
  artifact: ReturnType<typeof decodeArtifact>,
  expected: Map<string, Model>,
  writesOf?: (key: string) => unknown,
): void {
  const mismatches: string[] = [];
  for (const [key, model] of expected) {
    const actual = comparableEntry(artifact.byKey.get(key));
    if (JSON.stringify(actual) !== JSON.stringify(model)) {
      if (process.env.PIT_DEBUG) console.log(key, JSON.stringify(writesOf?.(key)));
      mismatches.push(
        `${key}: artifact ${JSON.stringify(actual)} expected ${JSON.stringify(model)}`,
      );
    }
  }
  t.deepEqual(
    mismatches.slice(0, 5),
    [],
    `${mismatches.length} raced keys differ from their value at the snapshot seq`,
  );
}

// RocksDB's full snapshots are checkpoints (files); its records come from the bounded
// iterator over a pinned snapshot, which these tests race.
for (const [backend, recordsStrategy] of [
  ['memory', 'memory-scan'],
  ['rocksdb', 'rocksdb-iterator'],
] as const) {
  test(`overwrites, deletes and new keys racing a build: the artifact is exactly the store at its seq (${backend})`, async (t) => {
    const node = await nodeFor(t, { backend });
    const total = 20_000;
    await loadSynthetic(node.client, { keys: total, valueSize: 200, types: 'string', seed: 31 });
    const random = prng(1);
    const pool = Array.from({ length: 600 }, () => keyName(Math.floor(random() * total)));
    const fresh = Array.from({ length: 200 }, (_, i) => b(`fresh:${i}`));
    const originals = await originalsOf(node.client, [...pool, ...fresh]);
    let n = 0;
    const next = (): Mutation => {
      const r = random();
      n++;
      if (r < 0.6) {
        const key = pool[Math.floor(random() * pool.length)]!;
        return { op: 'set', key, value: b(`overwrite #${n}`), expireAtMs: 0 };
      }
      if (r < 0.8) return { op: 'del', key: pool[Math.floor(random() * pool.length)]! };
      return {
        op: 'set',
        key: fresh[Math.floor(random() * fresh.length)]!,
        value: b(`fresh #${n}`),
        expireAtMs: 0,
      };
    };
    const { info, writes } = await raceSnapshot(t, node, next, { strategy: recordsStrategy });
    const snapSeq = Number(info.seq);
    const after = writes.filter((w) => w.seq > snapSeq);
    t.true(writes.filter((w) => w.seq <= snapSeq).length >= 40, 'writes before the snapshot point');
    t.true(
      after.some((w) => w.duringBuild),
      `writes landed while the build ran (${after.length} after its seq)`,
    );

    const artifact = decodeArtifact(await fetchArtifact(node, info.id));
    t.is(artifact.header.seq, snapSeq);
    t.is(artifact.keyCount, Number(info.keyCount));
    const expected = expectedAt(originals, writes, snapSeq);
    checkRaced(t, artifact, expected);

    // Every other key is there, untouched, and nothing else is.
    const racedPresent = [...expected.values()].filter((m) => m.found).length;
    const untouched = new Set(
      Array.from({ length: total }, (_, i) => keyName(i).toString('latin1')),
    );
    for (const k of expected.keys()) untouched.delete(k);
    t.is(artifact.keyCount, untouched.size + racedPresent);
    let missing = 0;
    for (const k of untouched) if (!artifact.byKey.has(k)) missing++;
    t.is(missing, 0);
  });

  test(`in-place collection changes and expiries racing a build are not seen by the snapshot (${backend})`, async (t) => {
    const node = await nodeFor(t, { backend });
    const total = 20_000;
    await loadSynthetic(node.client, {
      keys: total,
      valueSize: 160,
      types: 'mixed',
      seed: 32,
      nowMs: 1_900_000_000_000,
    });
    const random = prng(2);
    // Keys by synthetic type: i % 5 = 0 string, 1 list, 2 hash, 3 set, 4 zset.
    const ofType = (type: number): Buffer[] =>
      Array.from({ length: 300 }, () => keyName(Math.floor(random() * (total / 5)) * 5 + type));
    const lists = ofType(1);
    const hashes = ofType(2);
    const sets = ofType(3);
    const zsets = ofType(4);
    const any = [...ofType(0), ...lists, ...hashes, ...sets, ...zsets];
    const originals = await originalsOf(
      node.client,
      [...new Set(any.map((k) => k.toString('latin1')))].map((s) => Buffer.from(s, 'latin1')),
    );
    const pick = (keys: Buffer[]): Buffer => keys[Math.floor(random() * keys.length)]!;
    let n = 0;
    const next = (): Mutation => {
      n++;
      const tag = b(`w${n}`);
      switch (Math.floor(random() * 6)) {
        case 0:
          return { op: 'rpush', key: pick(lists), values: [tag] };
        case 1:
          return { op: 'hset', key: pick(hashes), fields: [{ field: b('f0'), value: tag }] };
        case 2:
          return { op: 'sadd', key: pick(sets), members: [tag] };
        case 3:
          return { op: 'zadd', key: pick(zsets), members: [{ member: tag, score: n }] };
        case 4:
          return { op: 'lpush', key: pick(lists), values: [tag] };
        default:
          return { op: 'expire', key: pick(any), expireAtMs: 2_000_000_000_000 + n };
      }
    };
    const { info, writes } = await raceSnapshot(t, node, next, { strategy: recordsStrategy });
    const snapSeq = Number(info.seq);
    t.true(
      writes.some((w) => w.seq > snapSeq && w.duringBuild),
      'writes landed while the build ran',
    );

    const artifact = decodeArtifact(await fetchArtifact(node, info.id));
    t.is(artifact.header.seq, snapSeq);
    t.is(artifact.keyCount, total);
    checkRaced(t, artifact, expectedAt(originals, writes, snapSeq), (key) => ({
      snapSeq,
      writes: writes
        .filter((w) => w.mutation.key.toString('latin1') === key)
        .map((w) => [w.mutation.op, w.seq, w.duringBuild]),
    }));
  });

  test(`a slot-range snapshot holds exactly the keys of its slots (${backend})`, async (t) => {
    const node = await nodeFor(t, { backend });
    const total = 4000;
    await loadSynthetic(node.client, { keys: total, valueSize: 60, types: 'mixed', seed: 33 });
    const ranges: SlotRange[] = [
      { start: 0, end: 2999 },
      { start: 9000, end: 9000 },
      { start: 12000, end: 16383 },
    ];
    const inRanges = (slot: number): boolean =>
      ranges.some((r) => slot >= r.start && slot <= r.end);
    const keys = Array.from({ length: total }, (_, i) => keyName(i));
    // A key in the single slot 9000, found by search so that range is not empty.
    let extra = 0;
    while (slotOf(b(`x${extra}`)) !== 9000) extra++;
    await node.client.write({
      mutations: [{ op: 'set', key: b(`x${extra}`), value: b('in slot 9000'), expireAtMs: 0 }],
    });
    keys.push(b(`x${extra}`));
    const wanted = new Set(
      keys.filter((k) => inRanges(slotOf(k))).map((k) => k.toString('latin1')),
    );

    const created = await node.client.createSnapshot({ slots: ranges });
    const info = await node.client.waitReady({ snapshotId: created.id });
    t.deepEqual(info.slots, ranges);
    const artifact = decodeArtifact(await fetchArtifact(node, info.id));
    t.deepEqual(artifact.header.slots, ranges);
    t.false(artifact.header.full);
    t.is(artifact.keyCount, wanted.size);
    t.is(Number(info.keyCount), wanted.size);
    const outside = artifact.records.filter((r) => !inRanges(slotOf(r.key)));
    t.is(outside.length, 0, 'no key outside the ranges');
    t.deepEqual([...artifact.byKey.keys()].sort(), [...wanted].sort(), 'every key of the ranges');
    t.true(artifact.byKey.has(`x${extra}`));
    // And the content matches what the node serves.
    const sample = keys.filter((k) => wanted.has(k.toString('latin1'))).slice(0, 200);
    const values = await node.client.read({ keys: sample });
    t.deepEqual(
      sample.map((k) => comparableEntry(artifact.byKey.get(k.toString('latin1')))),
      values.map((v) => comparable(v)),
    );
    // The digest of those ranges counts the same keys.
    t.is(Number((await node.client.digest({ slots: ranges })).keyCount), wanted.size);
  });
}

/**
 * A deterministic form of the race above: the build's writer is held (a slow disk) while
 * it writes a batch, and keys of that batch are changed in place meanwhile.
 */
test('a build held on a slow disk does not see in-place changes made after its seq', async (t) => {
  const dir = await tempDirFor(t);
  const store = new MemoryStore();
  t.teardown(() => store.close());
  const k1 = keyInSlot(100, 'list');
  const k2 = keyInSlot(200, 'hash');
  const k3 = keyInSlot(300, 'zset');
  await store.write([
    { op: 'rpush', key: k1, values: [b('a'), b('b')] },
    { op: 'hset', key: k2, fields: [{ field: b('f'), value: b('old') }] },
    { op: 'zadd', key: k3, members: [{ member: b('m'), score: 1 }] },
  ]);
  const prepared = await memoryScan.prepare(store, {
    slots: [{ start: 0, end: 16383 }],
    full: true,
  });
  const seq = prepared.seq;
  // A tiny buffer, so writing the batch flushes (awaits the disk) between records.
  const real = await ArtifactWriter.create(join(dir, 'artifact.bin'), () => undefined, {
    bufferBytes: 64,
  });
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let held!: () => void;
  const isHeld = new Promise<void>((resolve) => (held = resolve));
  let gated = false;
  // The first flush after the header waits for the gate: a disk that is slow once.
  const slowDisk = new Proxy(real, {
    get(target, prop, receiver) {
      if (prop === 'flush') {
        return async function (this: ArtifactWriter): Promise<void> {
          if (!gated && target.size > 0) {
            gated = true;
            held();
            await gate;
          }
          return target.flush.call(this);
        };
      }
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
  const header = {
    format_version: FORMAT_VERSION,
    kind: 'records' as const,
    snapshot_id: 'gated',
    node_id: 'test',
    backend: 'memory',
    strategy: 'memory-scan',
    seq,
    slots: [{ start: 0, end: 16383 }],
    full: true,
    created_at_ms: Date.now(),
  };
  const writing = prepared.write(slowDisk, header, new AbortController().signal);
  await isHeld;
  // While the first record waits for the disk: in-place changes to every key of the batch.
  const later = await store.write([
    { op: 'rpush', key: k1, values: [b('c')] },
    { op: 'hset', key: k2, fields: [{ field: b('f'), value: b('new') }] },
    { op: 'zadd', key: k3, members: [{ member: b('m'), score: 2 }] },
    { op: 'expire', key: k3, expireAtMs: 4_000_000_000_000 },
  ]);
  t.true(later.seq > seq);
  release();
  const outcome = await writing.then(
    () => 'ok',
    (error: unknown) => `build failed: ${(error as Error).message}`,
  );
  await prepared.release();
  t.is(outcome, 'ok');
  if (outcome !== 'ok') return;
  await real.finish();
  let artifact: ReturnType<typeof decodeArtifact>;
  try {
    artifact = decodeArtifact(await readFile(join(dir, 'artifact.bin')));
  } catch (error) {
    t.fail(`the build wrote a corrupt artifact: ${(error as Error).message}`);
    return;
  }
  t.deepEqual(comparableEntry(artifact.byKey.get(k1.toString('latin1'))), {
    found: true,
    expireAtMs: 0,
    list: [b('a').toString('hex'), b('b').toString('hex')],
  });
  t.deepEqual(comparableEntry(artifact.byKey.get(k2.toString('latin1'))), {
    found: true,
    expireAtMs: 0,
    hash: [[b('f').toString('hex'), b('old').toString('hex')]],
  });
  t.deepEqual(comparableEntry(artifact.byKey.get(k3.toString('latin1'))), {
    found: true,
    expireAtMs: 0,
    zset: [[b('m').toString('hex'), 1]],
  });
});
