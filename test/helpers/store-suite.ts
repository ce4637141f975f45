import type { ExecutionContext, TestFn } from 'ava';
import {
  type Entry,
  ErrorCodes,
  ErrorReasons,
  type Mutation,
  type StoreRecord,
  hasReason,
  isShardsnapError,
  slotOf,
} from '../../src/core';
import { type Store, digestStore } from '../../src/store';

/**
 * The conformance suite every Store backend passes: the same tests, run against a
 * fresh store from `factory` each time.
 */
export interface StoreSuiteOptions {
  test: TestFn;
  name: string;
  factory: () => Promise<{ store: Store; cleanup?: () => Promise<void> }>;
}

const b = (s: string): Buffer => Buffer.from(s);
const FUTURE = Date.now() + 7 * 86_400_000;

async function collect(
  store: Store,
  slots: Array<{ start: number; end: number }>,
): Promise<Map<string, Entry>> {
  const view = await store.openView(slots);
  const out = new Map<string, Entry>();
  try {
    for await (const batch of view.batches({ maxRecords: 7, maxBytes: 1 << 20 })) {
      for (const r of batch) {
        if (out.has(r.key.toString())) throw new Error(`view yielded ${r.key.toString()} twice`);
        out.set(r.key.toString(), structuredCloneEntry(r.entry));
      }
    }
  } finally {
    view.close();
  }
  return out;
}

function structuredCloneEntry(entry: Entry): Entry {
  const v = entry.value;
  switch (v.type) {
    case 'string':
      return {
        expireAtMs: entry.expireAtMs,
        value: { type: 'string', value: Buffer.from(v.value) },
      };
    case 'list':
      return {
        expireAtMs: entry.expireAtMs,
        value: { type: 'list', items: v.items.map((i) => Buffer.from(i)) },
      };
    case 'hash':
      return { expireAtMs: entry.expireAtMs, value: { type: 'hash', fields: new Map(v.fields) } };
    case 'set':
      return { expireAtMs: entry.expireAtMs, value: { type: 'set', members: new Set(v.members) } };
    case 'zset':
      return { expireAtMs: entry.expireAtMs, value: { type: 'zset', members: new Map(v.members) } };
  }
}

function str(entry: Entry | undefined): string | undefined {
  return entry?.value.type === 'string' ? entry.value.value.toString() : undefined;
}

export function runStoreSuite({ test, name, factory }: StoreSuiteOptions): void {
  const withStore = (
    title: string,
    body: (t: ExecutionContext, store: Store) => Promise<void>,
  ): void => {
    test(`${name}: ${title}`, async (t) => {
      const { store, cleanup } = await factory();
      try {
        await body(t, store);
      } finally {
        await store.close();
        await cleanup?.();
      }
    });
  };

  withStore('every write batch gets the next seq', async (t, store) => {
    const before = (await store.stats()).seq;
    const first = await store.write([{ op: 'set', key: b('a'), value: b('1'), expireAtMs: 0 }]);
    const second = await store.write([
      { op: 'set', key: b('b'), value: b('2'), expireAtMs: 0 },
      { op: 'del', key: b('a') },
    ]);
    t.is(first.seq, before + 1);
    t.is(second.seq, before + 2);
    t.is((await store.stats()).seq, before + 2);
  });

  withStore('every type reads back as written', async (t, store) => {
    await store.write([
      { op: 'set', key: b('s'), value: b('v'), expireAtMs: FUTURE },
      { op: 'rpush', key: b('l'), values: [b('x'), b('y')] },
      { op: 'lpush', key: b('l'), values: [b('w'), b('v')] },
      {
        op: 'hset',
        key: b('h'),
        fields: [
          { field: b('f1'), value: b('1') },
          { field: b('f2'), value: b('2') },
        ],
      },
      { op: 'hset', key: b('h'), fields: [{ field: b('f1'), value: b('one') }] },
      { op: 'sadd', key: b('st'), members: [b('m1'), b('m2'), b('m1')] },
      {
        op: 'zadd',
        key: b('z'),
        members: [
          { member: b('a'), score: 1.5 },
          { member: b('b'), score: -2 },
        ],
      },
      { op: 'zadd', key: b('z'), members: [{ member: b('a'), score: 3 }] },
      { op: 'expire', key: b('h'), expireAtMs: FUTURE + 1 },
    ]);
    const [s, l, h, st, z, missing] = await store.read([
      b('s'),
      b('l'),
      b('h'),
      b('st'),
      b('z'),
      b('nope'),
    ]);
    t.is(str(s), 'v');
    t.is(s?.expireAtMs, FUTURE);
    t.deepEqual(l?.value.type === 'list' && l.value.items.map(String), ['v', 'w', 'x', 'y']);
    t.deepEqual(
      h?.value.type === 'hash' && [...h.value.fields].map(([f, v]) => [f, v.toString()]).sort(),
      [
        ['f1', 'one'],
        ['f2', '2'],
      ],
    );
    t.is(h?.expireAtMs, FUTURE + 1);
    t.deepEqual(st?.value.type === 'set' && [...st.value.members].sort(), ['m1', 'm2']);
    t.deepEqual(z?.value.type === 'zset' && [...z.value.members].sort(), [
      ['a', 3],
      ['b', -2],
    ]);
    t.is(missing, undefined);
    t.is((await store.stats()).keyCount, 5);
  });

  withStore('a batch with a WRONGTYPE mutation changes nothing', async (t, store) => {
    await store.write([{ op: 'hset', key: b('h'), fields: [{ field: b('f'), value: b('v') }] }]);
    const seq = (await store.stats()).seq;
    const error = await t.throwsAsync(
      store.write([
        { op: 'set', key: b('fresh'), value: b('1'), expireAtMs: 0 },
        { op: 'lpush', key: b('h'), values: [b('x')] },
      ]),
    );
    t.true(isShardsnapError(error, 'wrong_type'));
    t.regex(error?.message ?? '', /WRONGTYPE/);
    t.is((await store.read([b('fresh')]))[0], undefined);
    t.is((await store.stats()).seq, seq);
    // The check sees earlier mutations of the same batch.
    await t.throwsAsync(
      store.write([
        { op: 'set', key: b('k'), value: b('1'), expireAtMs: 0 },
        { op: 'sadd', key: b('k'), members: [b('m')] },
      ]),
    );
    await store.write([
      { op: 'del', key: b('h') },
      { op: 'sadd', key: b('h'), members: [b('m')] },
    ]);
    t.is((await store.read([b('h')]))[0]?.value.type, 'set');
  });

  withStore(
    'expired keys read as absent and can be rewritten with another type',
    async (t, store) => {
      await store.write([
        { op: 'set', key: b('gone'), value: b('1'), expireAtMs: Date.now() - 1000 },
      ]);
      t.is((await store.read([b('gone')]))[0], undefined);
      await store.write([{ op: 'set', key: b('soon'), value: b('1'), expireAtMs: FUTURE }]);
      await store.write([{ op: 'expire', key: b('soon'), expireAtMs: 0 }]);
      t.is((await store.read([b('soon')]))[0]?.expireAtMs, 0);
    },
  );

  withStore('a view is the store at its seq while writes go on', async (t, store) => {
    const keys = Array.from({ length: 300 }, (_, i) => b(`k${i}`));
    await store.write(keys.map((key) => ({ op: 'set', key, value: b('old'), expireAtMs: 0 })));
    await store.write([{ op: 'rpush', key: b('list'), values: [b('a')] }]);
    const view = await store.openView([]);
    const seen = new Map<string, string>();
    let i = 0;
    for await (const batch of view.batches({ maxRecords: 10, maxBytes: 1 << 20 })) {
      for (const r of batch) {
        t.false(seen.has(r.key.toString()), `duplicate ${r.key.toString()}`);
        seen.set(
          r.key.toString(),
          r.entry.value.type === 'list'
            ? r.entry.value.items.map(String).join(',')
            : (str(r.entry) ?? ''),
        );
      }
      // Between batches: overwrite, delete, create, and grow the list in place.
      const mutations: Mutation[] = [
        { op: 'set', key: keys[(i * 7) % 300] as Buffer, value: b('new'), expireAtMs: 0 },
        { op: 'del', key: keys[(i * 13 + 1) % 300] as Buffer },
        { op: 'set', key: b(`created${i}`), value: b('x'), expireAtMs: 0 },
        { op: 'rpush', key: b('list'), values: [b('more')] },
      ];
      await store.write(mutations);
      i++;
    }
    view.close();
    t.is(seen.size, 301);
    for (const key of keys) t.is(seen.get(key.toString()), 'old');
    t.is(seen.get('list'), 'a');
    t.is((await store.stats()).openViews, 0);
  });

  withStore('a slot-range view holds exactly the keys of its slots', async (t, store) => {
    const keys = Array.from({ length: 500 }, (_, i) => b(`key:${i}`));
    await store.write(keys.map((key) => ({ op: 'set', key, value: key, expireAtMs: 0 })));
    const range = { start: 1000, end: 9000 };
    const seen = await collect(store, [range]);
    const expected = keys
      .filter((k) => slotOf(k) >= range.start && slotOf(k) <= range.end)
      .map(String);
    t.deepEqual([...seen.keys()].sort(), expected.sort());
  });

  withStore(
    'a staged full install is invisible until commit, then replaces everything',
    async (t, store) => {
      await store.write([{ op: 'set', key: b('old'), value: b('1'), expireAtMs: 0 }]);
      const staged = await store.beginInstall({
        slots: [{ start: 0, end: 16383 }],
        full: true,
        seq: 42,
      });
      const records: StoreRecord[] = [
        { key: b('n1'), entry: { value: { type: 'string', value: b('a') }, expireAtMs: FUTURE } },
        { key: b('n2'), entry: { value: { type: 'set', members: new Set(['x']) }, expireAtMs: 0 } },
      ];
      await staged.add(records);
      t.is((await store.read([b('n1')]))[0], undefined);
      t.is(str((await store.read([b('old')]))[0]), '1');
      const result = await staged.commit();
      t.is(result.keysInstalled, 2);
      t.is(result.seq, 42);
      t.is((await store.stats()).seq, 42);
      t.is((await store.read([b('old')]))[0], undefined);
      t.is((await store.read([b('n1')]))[0]?.expireAtMs, FUTURE);
      t.is((await store.stats()).keyCount, 2);
    },
  );

  withStore(
    'a slot-range install replaces exactly the keys of its slots; abort changes nothing',
    async (t, store) => {
      const keys = Array.from({ length: 200 }, (_, i) => b(`key:${i}`));
      await store.write(keys.map((key) => ({ op: 'set', key, value: b('before'), expireAtMs: 0 })));
      const range = { start: 0, end: 8191 };
      const inRange = keys.filter((k) => slotOf(k) <= range.end);
      const outside = keys.filter((k) => slotOf(k) > range.end);
      const digestBefore = await digestStore(store, []);
      const aborted = await store.beginInstall({ slots: [range], full: false, seq: 1 });
      await aborted.add([
        {
          key: inRange[0] as Buffer,
          entry: { value: { type: 'string', value: b('x') }, expireAtMs: 0 },
        },
      ]);
      await aborted.abort();
      t.is((await digestStore(store, [])).digest, digestBefore.digest);

      const staged = await store.beginInstall({ slots: [range], full: false, seq: 1 });
      await staged.add(
        inRange.slice(1).map((key) => ({
          key,
          entry: { value: { type: 'string', value: b('after') }, expireAtMs: 0 },
        })),
      );
      const seqBefore = (await store.stats()).seq;
      const result = await staged.commit();
      t.is(result.seq, seqBefore + 1);
      t.is(
        (await store.read([inRange[0] as Buffer]))[0],
        undefined,
        'an in-range key missing from the artifact is removed',
      );
      for (const key of inRange.slice(1)) t.is(str((await store.read([key]))[0]), 'after');
      for (const key of outside) t.is(str((await store.read([key]))[0]), 'before');
      t.is((await store.stats()).keyCount, keys.length - 1);
    },
  );

  withStore('an install rejects records outside its slot ranges', async (t, store) => {
    const key = b('somekey');
    const slot = slotOf(key);
    const range = slot > 100 ? { start: 0, end: slot - 1 } : { start: slot + 1, end: 16383 };
    const staged = await store.beginInstall({ slots: [range], full: false, seq: 1 });
    const error = await t.throwsAsync(
      staged.add([{ key, entry: { value: { type: 'string', value: b('x') }, expireAtMs: 0 } }]),
    );
    t.true(isShardsnapError(error, 'data_loss'));
    await staged.abort();
  });

  withStore('digests depend on content only', async (t, store) => {
    await store.write([
      {
        op: 'hset',
        key: b('h'),
        fields: [
          { field: b('a'), value: b('1') },
          { field: b('b'), value: b('2') },
        ],
      },
      { op: 'zadd', key: b('z'), members: [{ member: b('m'), score: 1 }] },
      { op: 'set', key: b('s'), value: b('v'), expireAtMs: FUTURE },
    ]);
    const first = await digestStore(store, []);
    t.is(first.keyCount, 3);
    await store.write([{ op: 'hset', key: b('h'), fields: [{ field: b('b'), value: b('2') }] }]);
    t.is(
      (await digestStore(store, [])).digest,
      first.digest,
      'rewriting the same value keeps the digest',
    );
    await store.write([
      { op: 'zadd', key: b('z'), members: [{ member: b('m'), score: 1.0000001 }] },
    ]);
    const afterScore = await digestStore(store, []);
    t.not(afterScore.digest, first.digest);
    await store.write([{ op: 'expire', key: b('s'), expireAtMs: FUTURE + 1 }]);
    t.not((await digestStore(store, [])).digest, afterScore.digest);
  });

  withStore(
    'a closed store answers STORE_CLOSED, views and installs opened before too',
    async (t, store) => {
      await store.write([
        { op: 'set', key: b('a'), value: b('1'), expireAtMs: 0 },
        { op: 'set', key: b('b'), value: b('2'), expireAtMs: 0 },
      ]);
      const view = await store.openView([]);
      const install = await store.beginInstall({
        slots: [{ start: 0, end: 100 }],
        full: false,
        seq: 0,
      });
      await store.close();
      await store.close();

      const closed = async (what: string, call: () => Promise<unknown>): Promise<void> => {
        const error = await t.throwsAsync(call, undefined, what);
        t.true(isShardsnapError(error, ErrorCodes.unavailable), `${what}: ${String(error)}`);
        t.true(hasReason(error, ErrorReasons.storeClosed), `${what}: reason`);
      };
      await closed('write', () =>
        store.write([{ op: 'set', key: b('c'), value: b('3'), expireAtMs: 0 }]),
      );
      await closed('read', () => store.read([b('a')]));
      await closed('stats', () => store.stats());
      await closed('openView', () => store.openView([]));
      await closed('beginInstall', () => store.beginInstall({ slots: [], full: true, seq: 1 }));
      await closed('view.batches', async () => {
        for await (const batch of view.batches({ maxRecords: 10, maxBytes: 1 << 20 })) t.log(batch);
      });
      await closed('install.add', () => install.add([]));
      await closed('install.commit', () => install.commit());
      // Releasing what was opened before stays harmless.
      view.close();
      await t.notThrowsAsync(() => install.abort());
      t.deepEqual(store.properties?.() ?? {}, {});
    },
  );
}
