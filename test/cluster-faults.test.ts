/**
 * The cluster under failures, through the CLI with real processes: a controller killed
 * (SIGKILL) at every step of a migration, etcd killed and restarted during a rebalance,
 * a node's registration lapsing while it is frozen, and two controllers started at once.
 * Every case ends with checkConverged: one owner per slot, the one the topology names,
 * and every key where it belongs.
 */
import test, { type ExecutionContext } from 'ava';
import {
  type CliRun,
  type MigrationDoc,
  type TestCluster,
  checkConverged,
  describeRun,
  slotCountsOf,
  startCluster,
} from './helpers/cluster';
import { sleep, waitFor } from './helpers/harness';

/** Where SHARDSNAP_CONTROLLER_EXIT_AT can stop a controller dead (crash-point.ts). */
const CRASH_POINTS = ['recorded', 'SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'done', 'committed'] as const;

/** Small enough for a ~1 s migration, big enough for every phase to be reported. */
const KEYS = 20_000;

/** A dead controller's lead outlives it by its TTL; the next one waits for it this long. */
const WAIT_LEADER = ['--wait-leader', '20000'];

/** Exit codes of the CLI (README): FAILED_PRECONDITION, UNAVAILABLE. */
const EXIT_FAILED_PRECONDITION = 5;
const EXIT_UNAVAILABLE = 7;

function errorOf(run: CliRun): { code?: string; reason?: string; message?: string } {
  return run.json?.error ?? {};
}

function migrationsOf(run: CliRun): Array<{ id: string; slots: string; from: string; to: string }> {
  return (run.json?.migrations ?? []) as Array<{
    id: string;
    slots: string;
    from: string;
    to: string;
  }>;
}

/**
 * The topology changed once per committed migration: the version is 1 (init) plus the
 * number of `done` records, and each of them wrote a version of its own, after the one
 * it was planned on.
 */
async function assertOneVersionPerCommit(
  t: ExecutionContext,
  c: TestCluster,
): Promise<MigrationDoc[]> {
  const records = await c.migrations();
  const done = records.filter((r) => r.state === 'done');
  const topology = await c.topology();
  t.is(topology?.version, 1 + done.length, 'one topology version per committed migration');
  t.deepEqual(
    done.map((r) => r.committedVersion).sort((a, b) => (a ?? 0) - (b ?? 0)),
    done.map((_, i) => i + 2),
    'each commit wrote its own version',
  );
  for (const r of done) {
    t.true((r.committedVersion ?? 0) > r.baseVersion, `${r.id} committed after its base version`);
  }
  return records;
}

for (const point of CRASH_POINTS) {
  test.serial(
    `a controller killed at ${point}: the next one settles what it left, and the cluster converges`,
    async (t) => {
      const c = await startCluster(t, { nodes: 2, keys: KEYS });

      const crashed = await c.cli(
        ['move', '--slots', '0-8191', '--to', 'n2', '--parallel', '1', '--lease-ttl', '2'],
        { env: { SHARDSNAP_CONTROLLER_EXIT_AT: point } },
      );
      t.is(crashed.signal, 'SIGKILL', `the controller died by SIGKILL: ${describeRun(crashed)}`);

      const left = await c.migrations();
      t.is(left.length, 1, 'the dead controller recorded one migration');
      const dead = left[0] as MigrationDoc;
      t.is(dead.state, point === 'committed' ? 'done' : 'running');
      t.is(
        (await c.topology())?.version,
        point === 'committed' ? 2 : 1,
        'only a commit changes the topology',
      );

      const next = await c.cli(['rebalance', '--parallel', '1', ...WAIT_LEADER], { json: true });
      t.is(next.code, 0, describeRun(next));
      const recovered = next.json?.recovered as { committed: number; aborted: number };

      const records = await assertOneVersionPerCommit(t, c);
      t.deepEqual(
        records.filter((r) => r.state === 'running'),
        [],
        'no record stays running',
      );
      const settled = records.find((r) => r.id === dead.id);
      switch (point) {
        case 'recorded':
          // Nothing had started: the record is rolled back, and the rebalance moved data itself.
          t.is(settled?.state, 'aborted');
          t.deepEqual(recovered, { committed: 0, aborted: 1 });
          t.is(migrationsOf(next).length, 1);
          break;
        case 'done':
          // The target had finished: the new controller commits that migration, moving nothing.
          t.is(settled?.state, 'done');
          t.is(settled?.committedVersion, 2);
          t.deepEqual(recovered, { committed: 1, aborted: 0 });
          t.deepEqual(migrationsOf(next), [], 'the data was not migrated a second time');
          t.is(records.length, 1);
          break;
        case 'committed':
          t.is(settled?.state, 'done');
          t.deepEqual(recovered, { committed: 0, aborted: 0 });
          t.deepEqual(migrationsOf(next), []);
          t.is(records.length, 1);
          break;
        default:
          // Killed mid-migration: the target either rolled it back or had already handed it off.
          t.true(settled?.state === 'done' || settled?.state === 'aborted', settled?.state);
          t.log(`the migration the dead controller left ended ${settled?.state ?? 'missing'}`);
          t.is(recovered.committed + recovered.aborted, 1);
          t.is(
            migrationsOf(next).length,
            settled?.state === 'aborted' ? 1 : 0,
            'the rebalance moved what the dead controller did not',
          );
      }
      const topology = await checkConverged(t, c);
      t.deepEqual(slotCountsOf(topology), { n1: 8192, n2: 8192 });
    },
  );
}

test.serial(
  'etcd killed and restarted during a rebalance: the run finishes or fails as UNAVAILABLE, a second one finishes',
  async (t) => {
    const c = await startCluster(t, { nodes: 3, keys: KEYS });
    const run = c.spawnCli(['rebalance', '--parallel', '1'], { json: true, timeoutMs: 40_000 });
    // Once the first migration is recorded the controller is in the middle of its work.
    const started = await waitFor(async () => (await c.migrations()).length > 0, 15_000, 20);
    t.truthy(started, 'the rebalance recorded a migration');
    await c.etcd.kill();
    await sleep(2_000);
    await c.etcd.restart();

    const first = await run.done;
    t.false(first.timedOut, describeRun(first));
    if (first.code !== 0) {
      t.is(first.code, EXIT_UNAVAILABLE, describeRun(first));
      t.is(errorOf(first).code, 'unavailable', describeRun(first));
      t.log(`the first rebalance failed: ${errorOf(first).message ?? ''}`);
      const second = await c.cli(['rebalance', '--parallel', '1', ...WAIT_LEADER], {
        json: true,
      });
      t.is(second.code, 0, describeRun(second));
    }

    // The nodes' registrations come back on their own once etcd answers again.
    await c.waitRegistered(['n1', 'n2', 'n3'], 15_000);
    const status = await c.cli(['status'], { json: true });
    t.is(status.code, 0, describeRun(status));
    const nodes = status.json?.nodes as Array<{ id: string; live: boolean }>;
    t.deepEqual(
      nodes.map((n) => [n.id, n.live]),
      [
        ['n1', true],
        ['n2', true],
        ['n3', true],
      ],
    );
    await assertOneVersionPerCommit(t, c);
    const topology = await checkConverged(t, c);
    t.deepEqual(Object.values(slotCountsOf(topology)).sort(), [5461, 5461, 5462]);
  },
);

test.serial(
  "a frozen node's registration lapses: it is left out of plans and refused as a target, and comes back by itself",
  async (t) => {
    const c = await startCluster(t, { nodes: 3, keys: 2_000, leaseTtlSeconds: 2 });
    const spread = await c.cli(['rebalance'], { json: true });
    t.is(spread.code, 0, describeRun(spread));
    await c.addNode('n4');

    const n3 = c.node('n3');
    const pid = n3.process.child.pid as number;
    let frozen = true;
    t.teardown(() => {
      if (frozen) process.kill(pid, 'SIGCONT');
    });
    process.kill(pid, 'SIGSTOP');
    const frozenAt = Date.now();

    const gone = await waitFor(async () => !(await c.registered()).has('n3'), 8_000, 100);
    t.true(gone, 'the registration key went with the lease');

    const status = await c.cli(['status'], { json: true });
    const nodes = status.json?.nodes as Array<{ id: string; live: boolean; slotCount: number }>;
    const n3Status = nodes.find((n) => n.id === 'n3');
    t.is(n3Status?.live, false, 'status shows n3 down');
    t.true((n3Status?.slotCount ?? 0) > 0, 'n3 keeps its slots in the topology');

    const plan = await c.cli(['rebalance', '--dry-run'], { json: true });
    t.is(plan.code, 0, describeRun(plan));
    const moves = plan.json?.moves as Array<{ from: string; to: string }>;
    t.true(
      moves.some((m) => m.to === 'n4'),
      'the plan fills the new node',
    );
    t.false(
      moves.some((m) => m.from === 'n3' || m.to === 'n3'),
      'the plan leaves the down node out',
    );

    const refused = await c.cli(['move', '--slots', '0-99', '--to', 'n3'], { json: true });
    t.is(refused.code, EXIT_FAILED_PRECONDITION, describeRun(refused));
    t.regex(errorOf(refused).message ?? '', /not live/);
    const topology = await c.topology();
    t.is(topology?.version, 3, 'the refused move changed nothing');

    await sleep(Math.max(0, frozenAt + 5_000 - Date.now()));
    process.kill(pid, 'SIGCONT');
    frozen = false;
    await c.waitRegistered(['n1', 'n2', 'n3', 'n4'], 10_000);
    const again = await c.cli(['status'], { json: true });
    t.is(
      (again.json?.nodes as Array<{ id: string; live: boolean }>).find((n) => n.id === 'n3')?.live,
      true,
      'n3 is live again',
    );
    await checkConverged(t, c);
  },
);

test.serial(
  'two controllers at once: one acts, the other is refused as CONTROLLER_BUSY',
  async (t) => {
    const c = await startCluster(t, { nodes: 3, keys: KEYS });
    const args = ['rebalance', '--parallel', '1'];
    const runs = await Promise.all([
      c.spawnCli(args, { json: true }).done,
      c.spawnCli(args, { json: true }).done,
    ]);
    const acted = runs.filter((r) => r.code === 0);
    const refused = runs.filter((r) => r.code !== 0);
    t.is(acted.length, 1, runs.map(describeRun).join('\n'));
    t.is(refused.length, 1);
    const [busy] = refused as [CliRun];
    t.is(busy.code, EXIT_FAILED_PRECONDITION, describeRun(busy));
    t.is(busy.json?.ok, false);
    t.is(errorOf(busy).reason, 'CONTROLLER_BUSY', describeRun(busy));
    t.is(migrationsOf(acted[0] as CliRun).length, 2);
    await assertOneVersionPerCommit(t, c);
    t.is((await c.migrations()).length, 2, 'only the acting controller recorded migrations');
    await checkConverged(t, c);
  },
);

test.serial(
  'two controllers at once with --wait-leader: the second waits, then finds nothing to do',
  async (t) => {
    const c = await startCluster(t, { nodes: 3, keys: KEYS });
    const args = ['rebalance', '--parallel', '1', '--wait-leader', '60000'];
    const runs = await Promise.all([
      c.spawnCli(args, { json: true }).done,
      c.spawnCli(args, { json: true }).done,
    ]);
    for (const run of runs) t.is(run.code, 0, describeRun(run));
    const counts = runs.map((r) => migrationsOf(r).length).sort();
    t.deepEqual(counts, [0, 2], 'one moved the slots, the other had nothing left to move');
    await assertOneVersionPerCommit(t, c);
    t.is((await c.migrations()).length, 2);
    await checkConverged(t, c);
  },
);
