import test, { type ExecutionContext } from 'ava';
import { Connection, migrateSlots } from '../src/client';
import type { SlotRange } from '../src/core';
import type { MigrationStatus } from '../src/migration';
import { nodeFor, waitFor } from './helpers/harness';
import { SplitWriter, mixedData, modelDigest, modelOf, tagsIn } from './helpers/split';

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: 16383 };

type Backend = 'memory' | 'rocksdb';

async function splitUnderWrites(t: ExecutionContext, from: Backend, to: Backend): Promise<void> {
  const source = await nodeFor(t, { backend: from });
  const target = await nodeFor(t, { backend: to, slots: [] });
  const moving = tagsIn(MOVING, 40);
  const staying = tagsIn(STAYING, 10);
  const initial = mixedData([...moving, ...staying], 100);
  for (const batch of initial) await source.client.write(batch);
  const model = await modelOf(initial);

  const writer = new SplitWriter(source.node.address, moving, model, { lanes: 3 }).start();
  t.teardown(() => writer.close());
  const events: MigrationStatus[] = [];
  const conn = new Connection(target.node.address);
  t.teardown(() => conn.close());
  const done = await migrateSlots(conn, {
    source: source.node.address,
    slots: [MOVING],
    onEvent: (event) => events.push(event),
  });
  // Some writes after the handoff, which now go to the target by MOVED.
  const ackedAtDone = writer.acked;
  await waitFor(() => writer.acked > ackedAtDone + 20, 5_000);
  await writer.stop();

  t.deepEqual(writer.failures, [], 'every write was acknowledged eventually');
  t.true(writer.acked > 50, `writer made progress (${writer.acked} acks)`);
  t.true(writer.addresses.has(target.node.address), 'writes were redirected to the target');
  t.is(done.phase, 'DONE');
  const phases = [...new Set(events.map((e) => e.phase))];
  t.deepEqual(phases, ['SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'DONE']);
  t.true(done.keys > 0 && done.bytes > 0);
  t.true(done.writePauseMs <= 1_000, `write pause ${done.writePauseMs} ms`);

  // Ownership moved, on both sides.
  t.deepEqual((await target.client.stats()).ownedSlots, [MOVING]);
  t.deepEqual((await source.client.stats()).ownedSlots, [STAYING]);

  // Every acknowledged write is on the target: its digest of the range equals the model's.
  const expected = await modelDigest(model, [MOVING]);
  const actual = await target.client.digest([MOVING]);
  t.is(Number(actual.keyCount), expected.keyCount);
  t.is(actual.digest, expected.digest);
  // The source keeps the other slots untouched and drops the moved keys in the background.
  const stayingExpected = await modelDigest(model, [STAYING]);
  t.is((await source.client.digest([STAYING])).digest, stayingExpected.digest);
  const emptied = await waitFor(
    async () => Number((await source.client.digest([MOVING])).keyCount) === 0,
    10_000,
  );
  t.true(emptied, 'the source no longer holds the moved keys');
}

for (const [from, to] of [
  ['memory', 'memory'],
  ['rocksdb', 'rocksdb'],
  ['memory', 'rocksdb'],
  ['rocksdb', 'memory'],
] as const) {
  test(`split ${from} → ${to} under live writes loses no acknowledged write`, async (t) => {
    t.timeout(60_000);
    await splitUnderWrites(t, from, to);
  });
}
