import test from 'ava';
import {
  type Topology,
  decodeTopology,
  planDrain,
  planEvenSpread,
  planMove,
  slotCounts,
} from '../src/cluster';
import { planWeightedSpread } from '../src/cluster/controller/plan';
import { reassign } from '../src/cluster/topology';
import { MAX_SLOT, SLOT_COUNT, isShardsnapError } from '../src/core';

const one = (node: string): Topology => ({
  version: 1,
  cluster: 'c',
  slots: [{ start: 0, end: MAX_SLOT, node }],
  updatedAtMs: 0,
});

function apply(topology: Topology, steps: ReturnType<typeof planEvenSpread>): Topology {
  return steps.reduce((t, step) => reassign(t, step.slots, step.to), topology);
}

test('an even spread from one node to four gives 4096 slots each in three contiguous moves', (t) => {
  const steps = planEvenSpread(one('a'), ['a', 'b', 'c', 'd']);
  t.is(steps.length, 3);
  t.true(steps.every((s) => s.from === 'a' && s.slots.length === 1));
  const after = apply(one('a'), steps);
  t.deepEqual([...slotCounts(after).values()].sort(), [4096, 4096, 4096, 4096]);
  t.is(after.version, 4, 'one version per move');
});

test('adding a fifth node moves only what the newcomer needs', (t) => {
  const four = apply(one('a'), planEvenSpread(one('a'), ['a', 'b', 'c', 'd']));
  const steps = planEvenSpread(four, ['a', 'b', 'c', 'd', 'e']);
  const moved = steps.reduce((n, s) => n + s.slots.reduce((m, r) => m + r.end - r.start + 1, 0), 0);
  t.true(steps.every((s) => s.to === 'e'));
  t.is(moved, Math.floor(SLOT_COUNT / 5), 'the newcomer gets its share and no slot moves twice');
  const counts = [...slotCounts(apply(four, steps)).values()];
  t.true(Math.max(...counts) - Math.min(...counts) <= 1);
});

test('an even topology plans nothing; an unreachable node keeps its slots', (t) => {
  const two = apply(one('a'), planEvenSpread(one('a'), ['a', 'b']));
  t.deepEqual(planEvenSpread(two, ['a', 'b']), []);
  // b is not live: only a's slots are spread, over a and c.
  const steps = planEvenSpread(two, ['a', 'c']);
  t.true(steps.every((s) => s.from === 'a' && s.to === 'c'));
  t.is(slotCounts(apply(two, steps)).get('b'), 8192);
});

test('a drain spreads every slot of the node over the others, evenly', (t) => {
  const three = apply(one('a'), planEvenSpread(one('a'), ['a', 'b', 'c']));
  const after = apply(three, planDrain(three, 'b', ['a', 'c']));
  t.false(slotCounts(after).has('b'));
  t.deepEqual([...slotCounts(after).values()].sort(), [8192, 8192]);
  t.deepEqual(planDrain(after, 'b', ['a', 'c']), [], 'a drained node needs nothing');
  const error = t.throws(() => planDrain(three, 'b', []));
  t.true(isShardsnapError(error));
});

test('a move names one step per current owner and skips slots already at the target', (t) => {
  const two = apply(one('a'), planEvenSpread(one('a'), ['a', 'b']));
  const steps = planMove(two, [{ start: 8000, end: 8400 }], 'a');
  t.deepEqual(steps, [{ from: 'b', to: 'a', slots: [{ start: 8192, end: 8400 }] }]);
});

test('a weighted spread evens bytes, not slot counts', (t) => {
  const weights = new Float64Array(SLOT_COUNT).fill(10);
  // Slots 0-1023 hold most of the data.
  weights.fill(1_000, 0, 1024);
  const steps = planWeightedSpread(one('a'), ['a', 'b', 'c'], weights);
  const after = apply(one('a'), steps);
  const load = new Map<string, number>();
  for (const a of after.slots) {
    for (let slot = a.start; slot <= a.end; slot++) {
      load.set(a.node, (load.get(a.node) ?? 0) + (weights[slot] ?? 0));
    }
  }
  const values = [...load.values()];
  const mean = values.reduce((x, y) => x + y, 0) / values.length;
  t.true(
    values.every((v) => Math.abs(v - mean) / mean < 0.01),
    JSON.stringify(values),
  );
  const counts = [...slotCounts(after).values()];
  t.true(Math.max(...counts) - Math.min(...counts) > 1000, 'slot counts are uneven on purpose');
});

test('a corrupt topology document is DATA_LOSS, never a guess', (t) => {
  for (const text of [
    'not json',
    '{"version": -1, "slots": []}',
    '{"version": 1, "slots": [{"start": 10, "end": 5, "node": "a"}]}',
    '{"version": 1, "slots": [{"start": 0, "end": 10, "node": "a"}, {"start": 5, "end": 20, "node": "b"}]}',
    '{"version": 1, "slots": [{"start": 0, "end": 16384, "node": "a"}]}',
    '{"version": 1, "slots": [{"start": 0, "end": 10, "node": "bad name"}]}',
  ]) {
    const error = t.throws(() => decodeTopology(text, 'c'), undefined, text);
    t.true(isShardsnapError(error, 'data_loss'), text);
  }
  t.deepEqual(decodeTopology(JSON.stringify(one('a')), 'c').slots, one('a').slots);
});
