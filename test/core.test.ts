import test from 'ava';
import {
  type Entry,
  type Mutation,
  decodeMutations,
  encodeMutations,
  decodeRecord,
  encodeRecord,
  formatSlotRanges,
  isShardsnapError,
  normalizeSlotRanges,
  parseSlotRanges,
  slotOf,
} from '../src/core';

test('slots follow Redis Cluster hashing, with hash tags', (t) => {
  // Reference values from the CLUSTER KEYSLOT documentation.
  t.is(slotOf(Buffer.from('somekey')), 11058);
  t.is(slotOf(Buffer.from('foo{hash_tag}')), 2515);
  t.is(slotOf(Buffer.from('bar{hash_tag}')), 2515);
  t.is(slotOf(Buffer.from('{user1000}.following')), slotOf(Buffer.from('{user1000}.followers')));
  t.is(slotOf(Buffer.from('{user1000}.following')), slotOf(Buffer.from('user1000')));
  // An empty tag hashes the whole key; only the first {...} counts.
  t.not(slotOf(Buffer.from('foo{}{bar}')), slotOf(Buffer.from('bar')));
  t.is(slotOf(Buffer.from('foo{{bar}}zap')), slotOf(Buffer.from('{bar')));
  t.is(slotOf(Buffer.from('foo{bar}{zap}')), slotOf(Buffer.from('bar')));
  t.is(slotOf(Buffer.from([0xff, 0x00, 0x80])), slotOf(Buffer.from([0xff, 0x00, 0x80])));
});

test('slot ranges parse, validate and merge', (t) => {
  t.deepEqual(parseSlotRanges('0-99,100-200,500'), [
    { start: 0, end: 200 },
    { start: 500, end: 500 },
  ]);
  t.deepEqual(parseSlotRanges(''), [{ start: 0, end: 16383 }]);
  t.is(
    formatSlotRanges(
      normalizeSlotRanges([
        { start: 10, end: 20 },
        { start: 5, end: 12 },
      ]),
    ),
    '5-20',
  );
  for (const bad of ['5-1', '0-16384', 'x', '1-2-3', '-1']) {
    const error = t.throws(() => parseSlotRanges(bad));
    t.true(isShardsnapError(error, 'invalid_argument'), bad);
  }
  t.throws(() => normalizeSlotRanges([{ start: 3, end: 2 }]));
  t.throws(() => normalizeSlotRanges([{ start: 0, end: 16384 }]));
});

test('records encode and decode every type, binary-safe', (t) => {
  const binary = Buffer.from([0, 255, 128, 10, 13]);
  const entries: Entry[] = [
    { value: { type: 'string', value: binary }, expireAtMs: 2 ** 45 + 7 },
    { value: { type: 'list', items: [binary, Buffer.alloc(0), Buffer.from('x')] }, expireAtMs: 0 },
    {
      value: { type: 'hash', fields: new Map([[binary.toString('latin1'), binary]]) },
      expireAtMs: 1,
    },
    { value: { type: 'set', members: new Set(['a', binary.toString('latin1')]) }, expireAtMs: 0 },
    {
      value: {
        type: 'zset',
        members: new Map([
          ['m', -1.25],
          ['n', Number.MAX_VALUE],
        ]),
      },
      expireAtMs: 0,
    },
  ];
  for (const entry of entries) {
    const encoded = encodeRecord(binary, entry);
    const decoded = decodeRecord(encoded);
    t.deepEqual(decoded.key, binary);
    t.deepEqual(decoded.entry, entry);
    // Truncation anywhere is detected, never misread.
    for (const cut of [1, 5, encoded.length - 1]) {
      const error = t.throws(() => decodeRecord(encoded.subarray(0, cut)));
      t.true(isShardsnapError(error, 'data_loss'));
    }
  }
});

test('canonical encoding ignores collection order', (t) => {
  const a: Entry = {
    value: {
      type: 'hash',
      fields: new Map([
        ['x', Buffer.from('1')],
        ['y', Buffer.from('2')],
      ]),
    },
    expireAtMs: 0,
  };
  const b: Entry = {
    value: {
      type: 'hash',
      fields: new Map([
        ['y', Buffer.from('2')],
        ['x', Buffer.from('1')],
      ]),
    },
    expireAtMs: 0,
  };
  const key = Buffer.from('k');
  t.deepEqual(encodeRecord(key, a, true), encodeRecord(key, b, true));
  t.notDeepEqual(encodeRecord(key, a), encodeRecord(key, b));
});

test('write batches encode to one buffer and decode to the same mutations', (t) => {
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  const batch: Mutation[] = [
    { op: 'set', key: b('s'), value: b('\x00\xffvalue'), expireAtMs: 1_700_000_000_123 },
    { op: 'set', key: b(''), value: b(''), expireAtMs: 0 },
    { op: 'del', key: b('d') },
    { op: 'expire', key: b('e'), expireAtMs: 2 ** 52 },
    {
      op: 'hset',
      key: b('h'),
      fields: [
        { field: b('f'), value: b('v') },
        { field: b(''), value: b('x') },
      ],
    },
    { op: 'lpush', key: b('l'), values: [b('1'), b('22')] },
    { op: 'rpush', key: b('r'), values: [b('333')] },
    { op: 'sadd', key: b('st'), members: [b('m'), b('n')] },
    {
      op: 'zadd',
      key: b('z'),
      members: [
        { member: b('a'), score: -1.5 },
        { member: b('b'), score: Infinity },
      ],
    },
  ];
  t.deepEqual(decodeMutations(encodeMutations(batch)), batch);
  t.deepEqual(decodeMutations(encodeMutations([])), []);
  const encoded = encodeMutations(batch);
  t.throws(() => decodeMutations(encoded.subarray(0, encoded.length - 1)), {
    message: /truncated/,
  });
  t.throws(() => decodeMutations(Buffer.concat([encoded, Buffer.from([0])])), {
    message: /trailing/,
  });
});
