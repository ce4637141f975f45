import { readFile } from 'node:fs/promises';
import * as net from 'node:net';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import {
  ShardsnapClient,
  cancelMigration,
  getMigration,
  isTryAgain,
  migrateSlots,
  movedTo,
} from '../src/client';
import { abortHandoff, commitHandoff, prepareHandoff } from '../src/migration/handoff-calls';
import { Connection } from '../src/wire';
import {
  ErrorCodes,
  type Mutation,
  ShardsnapError,
  type SlotRange,
  formatSlotRanges,
  isShardsnapError,
  slotOf,
} from '../src/core';
import type { MigrationStatus } from '../src/migration';
import { MemoryStore, registerStoreBackend } from '../src/store';
import { type ServedNode, serve } from './helpers/cli';
import {
  TrackingWriter,
  type TrackingWriterOptions,
  modelMismatches,
} from './helpers/fault-writer';
import { b, nodeFor, sleep, slowScan, strategiesWith, waitFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';
import { mixedData, modelDigest, modelOf, tagsIn } from './helpers/split';

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: 16383 };
const ALL: SlotRange = { start: 0, end: 16383 };

const ranges = (list: ReadonlyArray<{ start: number; end: number }>): string =>
  formatSlotRanges(list.map((r) => ({ start: r.start, end: r.end }))) || 'none';

// ---------------------------------------------------------------- child-process nodes

/** A port free right now on 127.0.0.1, so that a node restarted on it keeps its address. */
async function freeAddress(): Promise<string> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `127.0.0.1:${port}`;
}

/** A `shardsnap serve` child on a fixed address; its log lines are kept for failure reports. */
interface Proc {
  name: string;
  address: string;
  dataDir: string;
  node: ServedNode;
  exited: Promise<void>;
}

/** The backends the kill tests run on: RocksDB, and memory with every write synced. */
const KILL_BACKENDS = {
  rocksdb: ['--backend', 'rocksdb'],
  memory: ['--backend', 'memory', '--wal-fsync', 'always'],
} as const;
type KillBackend = keyof typeof KILL_BACKENDS;

async function startProc(
  t: ExecutionContext,
  logs: Map<string, string[]>,
  name: string,
  address: string,
  extra: readonly string[],
  dataDir?: string,
  backend: KillBackend = 'rocksdb',
): Promise<Proc> {
  const node = await serve(
    t,
    ['--listen', address, ...KILL_BACKENDS[backend], '--log-level', 'info', ...extra],
    dataDir,
  );
  const lines = logs.get(name) ?? [];
  logs.set(name, lines);
  lines.push(`---- ${name} started (pid ${node.child.pid})`);
  node.child.stderr?.on('data', (data: Buffer) => {
    for (const line of data.toString().split('\n')) if (line) lines.push(line);
    if (lines.length > 400) lines.splice(0, lines.length - 400);
  });
  const exited = new Promise<void>((resolve) => {
    if (node.child.exitCode !== null || node.child.signalCode !== null) resolve();
    else node.child.once('exit', () => resolve());
  });
  return { name, address: node.address, dataDir: node.dataDir, node, exited };
}

async function kill(proc: Proc): Promise<void> {
  process.kill(proc.node.child.pid!, 'SIGKILL');
  await proc.exited;
}

interface OwnershipDoc {
  owned: SlotRange[];
  imports: Array<{ id: string; phase: string; slots: SlotRange[] }>;
  pendingCleanup: SlotRange[];
}

async function ownershipDoc(dataDir: string): Promise<OwnershipDoc> {
  return JSON.parse(await readFile(join(dataDir, 'ownership.json'), 'utf8')) as OwnershipDoc;
}

/** Initial data: mixed types over many slots on both sides, plus larger strings in the moving range. */
function initialData(moving: readonly string[], staying: readonly string[]): Mutation[][] {
  const batches = mixedData([...moving, ...staying], 20);
  for (let i = 0; i < 3_000; i += 100) {
    const batch: Mutation[] = [];
    for (let j = i; j < i + 100; j++) {
      const tag = moving[j % moving.length] as string;
      batch.push({
        op: 'set',
        key: b(`{${tag}}big${j}`),
        value: Buffer.alloc(4096, j % 251),
        expireAtMs: 0,
      });
    }
    batches.push(batch);
  }
  return batches;
}

type Victim = 'source' | 'target';
/**
 * In the handoff, HANDOFF_PAUSED kills once the source answers TRYAGAIN (it paused the
 * slots), HANDOFF_COMMITTED once it answers MOVED (it committed the transfer).
 */
type KillPhase = 'SNAPSHOT' | 'CATCH_UP' | 'HANDOFF' | 'HANDOFF_PAUSED' | 'HANDOFF_COMMITTED';

/** How far a migration event is; the kill fires at the first event at or past the chosen point. */
function progressOf(event: MigrationStatus): number {
  switch (event.phase) {
    case 'SNAPSHOT':
      return event.bytes > 0 ? 1 : 0;
    case 'CATCH_UP':
      return 2;
    case 'HANDOFF':
      return 3;
    default:
      return 4;
  }
}
const KILL_AT: Record<KillPhase, number> = {
  SNAPSHOT: 1,
  CATCH_UP: 2,
  HANDOFF: 3,
  HANDOFF_PAUSED: 3,
  HANDOFF_COMMITTED: 3,
};

/**
 * Writes one key of the moving range straight to the source, as fast as it answers, until
 * it answers TRYAGAIN (its handoff paused the slots; only when `until` is 'paused') or MOVED
 * (the handoff committed), or 10 s pass. Acknowledged probes are applied to the model.
 */
async function probeSource(
  address: string,
  model: MemoryStore,
  tag: string,
  until: 'paused' | 'committed',
): Promise<'paused' | 'committed' | 'timeout'> {
  const client = new ShardsnapClient(address);
  const giveUpAt = Date.now() + 10_000;
  try {
    for (let n = 0; Date.now() < giveUpAt; n++) {
      const batch: Mutation[] = [
        { op: 'set', key: b(`{${tag}}probe`), value: b(`p${n}`), expireAtMs: 0 },
      ];
      try {
        await client.write({ mutations: batch });
        await model.write(batch);
      } catch (error) {
        if (movedTo(error)) return 'committed';
        if (!isTryAgain(error)) throw error;
        if (until === 'paused') return 'paused';
      }
    }
    return 'timeout';
  } finally {
    client.close();
  }
}

type Outcome = { ok: true; status: MigrationStatus } | { ok: false; error: Error };

function settle(promise: Promise<MigrationStatus>): Promise<Outcome> {
  return promise.then(
    (status) => ({ ok: true as const, status }),
    (error: unknown) => ({ ok: false as const, error: error as Error }),
  );
}

async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The node that owns the moving range once nothing is in progress: no import recorded on
 * the target, and exactly one of the two nodes owning the range.
 */
async function settledOwner(
  t: ExecutionContext,
  source: ShardsnapClient,
  target: ShardsnapClient,
  targetDir: string,
): Promise<'source' | 'target'> {
  let last = '';
  const owner = await waitFor(
    async () => {
      try {
        const [doc, s, g] = await Promise.all([
          ownershipDoc(targetDir),
          source.stats(),
          target.stats(),
        ]);
        const so = ranges(s.ownedSlots);
        const to = ranges(g.ownedSlots);
        last = `source owns ${so}, target owns ${to}, target imports ${JSON.stringify(doc.imports)}`;
        if (doc.imports.length > 0) return undefined;
        if (so === ranges([ALL]) && to === 'none') return 'source' as const;
        if (so === ranges([STAYING]) && to === ranges([MOVING])) return 'target' as const;
        return undefined;
      } catch (error) {
        last = `not reachable: ${(error as Error).message}`;
        return undefined;
      }
    },
    20_000,
    100,
  );
  if (!owner) throw new Error(`the state did not settle: ${last}`);
  t.log(`settled: ${last}`);
  return owner;
}

async function assertRangeMatchesModel(
  t: ExecutionContext,
  owner: ShardsnapClient,
  model: MemoryStore,
  what: string,
): Promise<void> {
  const expected = await modelDigest(model, [MOVING]);
  const actual = await owner.digest({ slots: [MOVING] });
  t.is(Number(actual.keyCount), expected.keyCount, `${what}: key count of slots 0-8191`);
  t.is(actual.digest, expected.digest, `${what}: digest of slots 0-8191 equals the model's`);
}

async function killDuringMigration(
  t: ExecutionContext,
  victim: Victim,
  phase: KillPhase,
  backend: KillBackend = 'rocksdb',
): Promise<void> {
  const logs = new Map<string, string[]>();
  t.teardown(() => {
    if (t.passed) return;
    for (const [name, lines] of logs)
      t.log(`${name} log (last lines):\n${lines.slice(-60).join('\n')}`);
  });
  const [sourceAddress, targetAddress] = await Promise.all([freeAddress(), freeAddress()]);
  const procs = {
    source: await startProc(t, logs, 'source', sourceAddress, [], undefined, backend),
    target: await startProc(
      t,
      logs,
      'target',
      targetAddress,
      ['--slots', 'none'],
      undefined,
      backend,
    ),
  };
  t.is(procs.source.address, sourceAddress, '--listen given in the extra args wins');
  t.is(procs.target.address, targetAddress);
  const source = new ShardsnapClient(sourceAddress);
  const target = new ShardsnapClient(targetAddress);
  t.teardown(() => {
    source.close();
    target.close();
  });

  const moving = tagsIn(MOVING, 200);
  const staying = tagsIn(STAYING, 50);
  const initial = initialData(moving, staying);
  for (const batch of initial) await source.write({ mutations: batch });
  const model = await modelOf(initial);

  const writer = new TrackingWriter(sourceAddress, moving.slice(0, 40), model, {
    lanes: 3,
  }).start();
  t.teardown(async () => {
    await writer.stop();
    writer.close();
  });
  await waitFor(() => writer.acked > 30, 5_000);

  // Migrate, and kill the victim at the first event at or past the chosen phase.
  const conn = new Connection(targetAddress);
  t.teardown(() => conn.close());
  const events: MigrationStatus[] = [];
  let killedAfter: MigrationStatus | undefined;
  let killing: Promise<void> | undefined;
  let sourceAtKill = '';
  const migration = settle(
    migrateSlots(
      conn,
      { source: sourceAddress, slots: [MOVING] },
      {
        onEvent: (event) => {
          events.push(event);
          if (!killing && progressOf(event) >= KILL_AT[phase]) {
            killedAfter = event;
            const probe =
              phase === 'HANDOFF_PAUSED'
                ? 'paused'
                : phase === 'HANDOFF_COMMITTED'
                  ? 'committed'
                  : '';
            killing =
              probe && event.phase === 'HANDOFF'
                ? probeSource(sourceAddress, model, moving[0] as string, probe).then((seen) => {
                    sourceAtKill = `, source ${seen}`;
                    return kill(procs[victim]);
                  })
                : kill(procs[victim]);
          }
        },
      },
    ),
  );
  await waitFor(() => killing !== undefined, 30_000);
  if (!killing) {
    t.fail(`the migration never reached ${phase}: ${JSON.stringify(events.at(-1))}`);
    return;
  }
  await killing;
  const victimDir = procs[victim].dataDir;
  const importAtKill = victim === 'target' ? (await ownershipDoc(victimDir)).imports : undefined;
  // Restart on the same address and data dir. No --slots: ownership.json is authoritative.
  procs[victim] = await startProc(t, logs, victim, procs[victim].address, [], victimDir, backend);

  const outcome = await within(migration, 45_000, 'the interrupted migration');
  const ackedAtRestart = writer.acked;
  await waitFor(() => writer.acked > ackedAtRestart + 20, 10_000);
  await writer.stop();
  t.log(
    `killed the ${victim} after a ${killedAfter?.phase} event (${killedAfter?.bytes} bytes${sourceAtKill}); ` +
      `import on the target then: ${JSON.stringify(importAtKill?.map((r) => r.phase))}; ` +
      `migration ${outcome.ok ? outcome.status.phase : `rejected: ${outcome.error.message}`}; ` +
      `writer: ${writer.acked} acked, ${writer.unknown} unknown outcomes`,
  );
  const lastEvent = events.at(-1)?.phase;
  if (victim === 'source' && !outcome.ok) {
    t.is(lastEvent, 'FAILED', 'the target reported the failure');
  }
  if (victim === 'target' && killedAfter?.phase !== 'DONE') {
    t.false(outcome.ok, 'the call broke with the target');
  }
  // A consistent state: no import left, exactly one owner of the range.
  const owner = await settledOwner(t, source, target, procs.target.dataDir);
  const ownerClient = owner === 'target' ? target : source;
  const other = owner === 'target' ? source : target;
  const emptied = await waitFor(
    async () => Number((await other.digest({ slots: [MOVING] })).keyCount) === 0,
    15_000,
    100,
  );
  t.true(emptied, `the ${owner === 'target' ? 'source' : 'target'} holds no key of 0-8191`);
  // Nothing of the source's other slots was lost by a kill or a restart.
  t.is(
    (await source.digest({ slots: [STAYING] })).digest,
    (await modelDigest(model, [STAYING])).digest,
  );

  // Every acknowledged write is there: per key for the keys whose state is known...
  const mismatches = await modelMismatches(model, writer.certainKeys(), (keys) =>
    ownerClient.read({ keys }),
  );
  t.deepEqual(mismatches.lines, [], `${mismatches.count} acknowledged keys differ`);
  // ...then, with the unknown ones overwritten, the whole range, and nothing else.
  const resolved = await writer.resolveUncertain();
  t.log(`${resolved} keys with an unknown outcome were overwritten before the digest check`);
  await assertRangeMatchesModel(t, ownerClient, model, `owner (${owner}) after the kill`);

  // The slots moved (the kill came after the commit): nothing to retry.
  if (owner === 'target') return;
  t.false(outcome.ok, 'a migration that left the slots on the source did not report DONE');

  // Retryable: the same migration runs again to its end.
  const errorsBefore = writer.unknown;
  writer.start();
  const retryConn = new Connection(targetAddress);
  t.teardown(() => retryConn.close());
  const done = await within(
    migrateSlots(retryConn, { source: sourceAddress, slots: [MOVING] }),
    30_000,
    'the retried migration',
  );
  const ackedAtDone = writer.acked;
  await waitFor(() => writer.acked > ackedAtDone + 20, 10_000);
  await writer.stop();
  t.is(done.phase, 'DONE');
  t.is(
    writer.unknown,
    errorsBefore,
    `no write failed during the retry: ${writer.errors.join('; ')}`,
  );
  t.deepEqual(
    (await target.stats()).ownedSlots.map((r) => ({ start: r.start, end: r.end })),
    [MOVING],
  );
  t.deepEqual(
    (await source.stats()).ownedSlots.map((r) => ({ start: r.start, end: r.end })),
    [STAYING],
  );
  await assertRangeMatchesModel(t, target, model, 'target after the retry');
  t.true(
    await waitFor(
      async () => Number((await source.digest({ slots: [MOVING] })).keyCount) === 0,
      15_000,
      100,
    ),
    'the source drops the moved keys',
  );
}

for (const victim of ['source', 'target'] as const) {
  for (const phase of [
    'SNAPSHOT',
    'CATCH_UP',
    'HANDOFF',
    'HANDOFF_PAUSED',
    'HANDOFF_COMMITTED',
  ] as const) {
    const when =
      phase === 'HANDOFF_PAUSED'
        ? 'HANDOFF while the source pauses writes'
        : phase === 'HANDOFF_COMMITTED'
          ? 'HANDOFF right after the source committed'
          : phase;
    test.serial(
      `killing the ${victim} during ${when} leaves one owner, every acked write, and a retryable split`,
      async (t) => {
        t.timeout(90_000);
        await killDuringMigration(t, victim, phase);
      },
    );
  }
}

// The same kills with memory nodes that log every write (`--wal-fsync always`): a node
// killed at any point of a split restarts with every write it acknowledged.
for (const victim of ['source', 'target'] as const) {
  for (const phase of ['CATCH_UP', 'HANDOFF_PAUSED', 'HANDOFF_COMMITTED'] as const) {
    test.serial(
      `memory nodes with a write-ahead log: killing the ${victim} during ${phase} keeps every acked write`,
      async (t) => {
        t.timeout(90_000);
        await killDuringMigration(t, victim, phase, 'memory');
      },
    );
  }
}

// ---------------------------------------------------------------- in-process nodes

/** A memory store whose writes take `delayMs` each (a target that applies changes slowly). */
class SlowWriteStore extends MemoryStore {
  constructor(private readonly delayMs: number) {
    super();
  }

  override async write(
    mutations: Parameters<MemoryStore['write']>[0],
    options?: Parameters<MemoryStore['write']>[1],
  ): Promise<{ seq: number }> {
    await sleep(this.delayMs);
    return super.write(mutations, options);
  }
}

let slowBackends = 0;
/** A backend name whose stores are SlowWriteStores. */
function slowWriteBackend(delayMs: number): string {
  const name = `slow-write-memory-${++slowBackends}`;
  registerStoreBackend(name, () => Promise.resolve(new SlowWriteStore(delayMs)));
  return name;
}

interface InProcessSplit {
  source: TestNode;
  target: TestNode;
  model: MemoryStore;
  moving: string[];
  writer: TrackingWriter;
  conn: Connection;
}

/** A memory source holding mixed data over both halves, an empty target, a writer on the moving half. */
async function inProcessSplit(
  t: ExecutionContext,
  options: {
    source?: Parameters<typeof nodeFor>[1];
    target?: Parameters<typeof nodeFor>[1];
    writer?: TrackingWriterOptions;
  } = {},
): Promise<InProcessSplit> {
  const source = await nodeFor(t, { backend: 'memory', ...options.source });
  const target = await nodeFor(t, { backend: 'memory', slots: [], ...options.target });
  const moving = tagsIn(MOVING, 40);
  const initial = mixedData([...moving, ...tagsIn(STAYING, 10)], 50);
  for (const batch of initial) await source.client.write({ mutations: batch });
  const model = await modelOf(initial);
  const writer = new TrackingWriter(source.node.address, moving, model, {
    lanes: 2,
    ...options.writer,
  });
  const conn = new Connection(target.node.address);
  t.teardown(async () => {
    await writer.stop();
    writer.close();
    conn.close();
  });
  return { source, target, model, moving, writer, conn };
}

/** Source owns every slot with every acked write; target holds nothing of the range, no import. */
async function assertNothingMoved(t: ExecutionContext, split: InProcessSplit): Promise<void> {
  const { source, target, model, writer } = split;
  t.deepEqual(writer.errors, [], 'every write to the source was acknowledged');
  t.deepEqual(
    plain((await source.client.stats()).ownedSlots),
    [ALL],
    'the source keeps every slot',
  );
  t.deepEqual(plain((await target.client.stats()).ownedSlots), [], 'the target owns nothing');
  t.deepEqual(target.node.ownership.imports(), [], 'the target keeps no import record');
  t.is(
    Number((await target.client.digest({ slots: [MOVING] })).keyCount),
    0,
    'the target holds no key',
  );
  const expected = await modelDigest(model, [ALL]);
  const actual = await source.client.digest({ slots: [ALL] });
  t.is(Number(actual.keyCount), expected.keyCount);
  t.is(actual.digest, expected.digest, 'the source holds every key and every acked write');
}

/** The migration runs again, to DONE, with every acked write on the target. */
async function assertRerunSucceeds(t: ExecutionContext, split: InProcessSplit): Promise<void> {
  const { source, target, model, writer, conn } = split;
  if (!writer.running) writer.start();
  const done = await migrateSlots(conn, { source: source.node.address, slots: [MOVING] });
  const ackedAtDone = writer.acked;
  await waitFor(() => writer.acked > ackedAtDone + 10, 5_000);
  await writer.stop();
  t.is(done.phase, 'DONE');
  t.deepEqual(writer.errors, []);
  t.deepEqual(plain((await target.client.stats()).ownedSlots), [MOVING]);
  const expected = await modelDigest(model, [MOVING]);
  t.is(
    (await target.client.digest({ slots: [MOVING] })).digest,
    expected.digest,
    'a rerun moves everything',
  );
}

const plain = (list: ReadonlyArray<{ start: number; end: number }>): SlotRange[] =>
  list.map((r) => ({ start: r.start, end: r.end }));

/** A source whose snapshots are built slowly (SNAPSHOT lasts about a second). */
const slowSnapshots = (): Parameters<typeof nodeFor>[1] => ({
  strategies: strategiesWith(slowScan({ name: 'slow-scan', batch: 100, delayMs: 40 })).prefer(
    'memory',
    ['slow-scan'],
  ),
});

test.serial(
  'CancelMigration during SNAPSHOT leaves the slots and all keys on the source; a rerun succeeds',
  async (t) => {
    t.timeout(30_000);
    const split = await inProcessSplit(t, { source: slowSnapshots() });
    split.writer.start();
    const events: MigrationStatus[] = [];
    let cancelling: Promise<MigrationStatus> | undefined;
    const migration = settle(
      migrateSlots(
        split.conn,
        { source: split.source.node.address, slots: [MOVING] },
        {
          onEvent: (event) => {
            events.push(event);
            // The slow build takes about a second: 200 ms in, the snapshot is under way.
            if (!cancelling && event.phase === 'SNAPSHOT') {
              cancelling = sleep(200).then(() =>
                cancelMigration(split.conn, { migrationId: event.migrationId }),
              );
            }
          },
        },
      ),
    );
    const outcome = await migration;
    t.truthy(cancelling, 'the snapshot was under way');
    const cancelledStatus = await cancelling!;
    t.is(cancelledStatus.phase, 'CANCELLED');
    t.false(outcome.ok);
    if (!outcome.ok)
      t.true(isShardsnapError(outcome.error, ErrorCodes.cancelled), outcome.error.message);
    t.deepEqual(
      [...new Set(events.map((e) => e.phase))],
      ['SNAPSHOT', 'CANCELLED'],
      'cancelled before any change was applied',
    );
    // Writes to the source go on.
    const acked = split.writer.acked;
    t.true(await waitFor(() => split.writer.acked > acked + 20, 5_000), 'writes continue');
    await split.writer.stop();
    await assertNothingMoved(t, split);
    await assertRerunSucceeds(t, split);
  },
);

test.serial(
  'CancelMigration during CATCH_UP leaves the slots and all keys on the source; a rerun succeeds',
  async (t) => {
    t.timeout(30_000);
    // A target that applies changes slowly stays in CATCH_UP while the writer writes.
    const split = await inProcessSplit(t, { target: { backend: slowWriteBackend(100) } });
    split.writer.start();
    const events: MigrationStatus[] = [];
    let cancelling: Promise<MigrationStatus> | undefined;
    const outcome = await settle(
      migrateSlots(
        split.conn,
        { source: split.source.node.address, slots: [MOVING] },
        {
          onEvent: (event) => {
            events.push(event);
            if (!cancelling && event.phase === 'CATCH_UP') {
              cancelling = sleep(300).then(() =>
                cancelMigration(split.conn, { migrationId: event.migrationId }),
              );
            }
          },
        },
      ),
    );
    t.truthy(cancelling, 'catch-up was under way');
    t.is((await cancelling!).phase, 'CANCELLED');
    t.false(outcome.ok);
    const phases = [...new Set(events.map((e) => e.phase))];
    t.deepEqual(phases, ['SNAPSHOT', 'CATCH_UP', 'CANCELLED'], 'cancelled in CATCH_UP');
    t.true((events.at(-2)?.changesApplied ?? 0) > 0, 'changes were being applied');
    const acked = split.writer.acked;
    t.true(await waitFor(() => split.writer.acked > acked + 20, 5_000), 'writes continue');
    await split.writer.stop();
    await assertNothingMoved(t, split);
    // The rerun needs a target that keeps up: the writer pauses between writes.
    await assertRerunSucceedsWithSlowTarget(t, split);
  },
);

/** As assertRerunSucceeds, with writes spaced so that a slow target can catch up. */
async function assertRerunSucceedsWithSlowTarget(
  t: ExecutionContext,
  split: InProcessSplit,
): Promise<void> {
  const writer = new TrackingWriter(split.source.node.address, split.moving, split.model, {
    lanes: 1,
    pauseMs: 250,
  }).start();
  t.teardown(async () => {
    await writer.stop();
    writer.close();
  });
  const done = await migrateSlots(split.conn, {
    source: split.source.node.address,
    slots: [MOVING],
  });
  await writer.stop();
  t.is(done.phase, 'DONE');
  t.deepEqual(writer.errors, []);
  const expected = await modelDigest(split.model, [MOVING]);
  t.is((await split.target.client.digest({ slots: [MOVING] })).digest, expected.digest);
}

test.serial(
  'aborting the MigrateSlots call (client disconnect) cancels the migration',
  async (t) => {
    t.timeout(30_000);
    const split = await inProcessSplit(t, { source: slowSnapshots() });
    split.writer.start();
    const controller = new AbortController();
    let id = '';
    const phases = new Set<string>();
    const outcome = await settle(
      migrateSlots(
        split.conn,
        { source: split.source.node.address, slots: [MOVING] },
        {
          signal: controller.signal,
          onEvent: (event) => {
            phases.add(event.phase);
            if (!id) setTimeout(() => controller.abort(), 200);
            id = event.migrationId;
          },
        },
      ),
    );
    t.deepEqual([...phases], ['SNAPSHOT'], 'disconnected during SNAPSHOT');
    t.false(outcome.ok);
    if (!outcome.ok)
      t.true(isShardsnapError(outcome.error, ErrorCodes.cancelled), outcome.error.message);
    const final = await waitFor(async () => {
      const status = await getMigration(split.conn, { migrationId: id });
      return status.phase === 'CANCELLED' ? status : undefined;
    }, 10_000);
    t.is(final?.phase, 'CANCELLED', 'the node cancelled the migration');
    t.regex(final?.error ?? '', /client cancelled/);
    await split.writer.stop();
    await assertNothingMoved(t, split);
    await assertRerunSucceeds(t, split);
  },
);

/** Final checks of a migration that gave up its handoffs: FAILED_PRECONDITION about the pause. */
function assertHandoffsAborted(
  t: ExecutionContext,
  outcome: Outcome,
  events: readonly MigrationStatus[],
): void {
  t.false(outcome.ok, 'the migration did not move the slots');
  if (outcome.ok) return;
  t.true(
    isShardsnapError(outcome.error, ErrorCodes.failedPrecondition),
    `FAILED_PRECONDITION, got: ${outcome.error.message}`,
  );
  t.regex(outcome.error.message, /handoff aborted 3 times; the source keeps the slots/);
  t.regex(outcome.error.message, /pause/);
  const last = events.at(-1);
  t.is(last?.phase, 'FAILED');
  t.is(last?.handoffAttempts, 3, 'every handoff attempt was made');
  const aborted = events.filter((e) => e.detail.startsWith('handoff aborted:'));
  t.true(aborted.length > 0, 'events reported the aborted handoffs');
  t.log(`${aborted.length} abort events; last: ${aborted.at(-1)?.detail}`);
}

/** A migration with a 1 ms pause limit on a source written by a busy writer. */
async function splitWithTinyPause(
  t: ExecutionContext,
): Promise<{ split: InProcessSplit; outcome: Outcome; events: MigrationStatus[] }> {
  const split = await inProcessSplit(t, { writer: { lanes: 4 } });
  // The source answers a prepare 3 ms after its pause began: a loopback round trip alone
  // could otherwise fit a handoff with nothing to drain into 1 ms.
  const handoffs = split.source.node.handoffs;
  const prepare = handoffs.prepare.bind(handoffs);
  handoffs.prepare = async (request) => {
    const prepared = await prepare(request);
    await sleep(3);
    return prepared;
  };
  split.writer.start();
  await waitFor(() => split.writer.acked > 20, 5_000);
  const events: MigrationStatus[] = [];
  const outcome = await settle(
    migrateSlots(
      split.conn,
      { source: split.source.node.address, slots: [MOVING], maxPauseMs: 1 },
      { onEvent: (event) => events.push(event) },
    ),
  );
  const acked = split.writer.acked;
  t.true(await waitFor(() => split.writer.acked > acked + 20, 5_000), 'writes continue');
  await split.writer.stop();
  return { split, outcome, events };
}

test.serial(
  'a 1 ms max pause under busy writes moves nothing: the source keeps the slots and every acked write; a rerun succeeds',
  async (t) => {
    t.timeout(30_000);
    const { split, outcome, events } = await splitWithTinyPause(t);
    t.false(outcome.ok, 'the migration did not move the slots');
    t.is(events.at(-1)?.phase, 'FAILED');
    await assertNothingMoved(t, split);
    await assertRerunSucceeds(t, split);
  },
);

// PrepareHandoff is sent with a deadline of max_pause_ms; a deadline hit counts as an
// aborted handoff attempt, not as a failure of the migration.
test.serial(
  'a 1 ms max pause fails after every handoff attempt with FAILED_PRECONDITION about the pause',
  async (t) => {
    t.timeout(30_000);
    const { outcome, events } = await splitWithTinyPause(t);
    assertHandoffsAborted(t, outcome, events);
  },
);

test.serial(
  'a target too slow to drain within max_pause_ms aborts each handoff; the source keeps everything',
  async (t) => {
    t.timeout(30_000);
    const split = await inProcessSplit(t, {
      target: { backend: slowWriteBackend(300) },
      writer: { lanes: 1, pauseMs: 500 },
    });
    // A write lands just before every pause, so each handoff has a change to drain, which
    // takes the target 300 ms: more than the 200 ms allowed.
    const handoffs = split.source.node.handoffs;
    const prepare = handoffs.prepare.bind(handoffs);
    const tag = split.moving[0] as string;
    let preWrites = 0;
    handoffs.prepare = async (request) => {
      const batch: Mutation[] = [
        {
          op: 'set',
          key: b(`{${tag}}before-pause`),
          value: b(`${++preWrites}`),
          expireAtMs: 0,
        },
      ];
      await split.source.client.write({ mutations: batch });
      await split.model.write(batch);
      return prepare(request);
    };
    split.writer.start();
    const events: MigrationStatus[] = [];
    const outcome = await settle(
      migrateSlots(
        split.conn,
        { source: split.source.node.address, slots: [MOVING], maxPauseMs: 200 },
        { onEvent: (event) => events.push(event) },
      ),
    );
    await split.writer.stop();
    assertHandoffsAborted(t, outcome, events);
    t.is(preWrites, 3, 'three handoffs were prepared');
    await assertNothingMoved(t, split);
  },
);

test.serial(
  'PrepareHandoff pauses writes to its slots with TRYAGAIN until it expires; commit then fails, abort reports not committed',
  async (t) => {
    t.timeout(20_000);
    const node = await nodeFor(t, { backend: 'memory' });
    const conn = new Connection(node.node.address);
    t.teardown(() => conn.close());
    const paused: SlotRange = { start: 0, end: 99 };
    const pausedKey = b(`{${tagsIn(paused, 1)[0]}}k`);
    const otherKey = b(`{${tagsIn(paused, 1, false)[0]}}k`);
    const set = (key: Buffer, value: string): Promise<number> =>
      node.client.write({ mutations: [{ op: 'set', key, value: b(value), expireAtMs: 0 }] });

    const before = await set(otherKey, 'before');
    const started = Date.now();
    const { seq } = await prepareHandoff(conn, {
      migrationId: 'expiring',
      slots: [paused],
      target: '127.0.0.1:1',
      maxPauseMs: 400,
    });
    t.true(seq >= before, 'the prepared seq covers the writes before the pause');
    const refused = await set(pausedKey, 'during').catch((error: unknown) => error);
    t.true(isShardsnapError(refused, ErrorCodes.tryAgain), `TRYAGAIN, got ${String(refused)}`);
    t.true(isTryAgain(refused), 'the answer is TRYAGAIN');
    t.true((await set(otherKey, 'other')) > 0, 'other slots take writes');

    // The pause ends by itself; the slots stay here.
    const resumed = await waitFor(
      () =>
        set(pausedKey, 'after').then(
          () => true,
          () => false,
        ),
      5_000,
      10,
    );
    t.true(resumed, 'writes resume');
    t.true(Date.now() - started >= 350, 'not before the pause limit');
    t.deepEqual(plain((await node.client.stats()).ownedSlots), [ALL]);
    const lateCommit = await commitHandoff(conn, 'expiring', 5_000).catch(
      (error: unknown) => error,
    );
    t.true(isShardsnapError(lateCommit, ErrorCodes.failedPrecondition), String(lateCommit));
    t.deepEqual(await abortHandoff(conn, 'expiring'), { aborted: false, committed: false });
    t.deepEqual(
      plain((await node.client.stats()).ownedSlots),
      [ALL],
      'a late commit moves nothing',
    );
  },
);

test.serial('AbortHandoff ends a prepared pause at once and the slots stay', async (t) => {
  const node = await nodeFor(t, { backend: 'memory' });
  const conn = new Connection(node.node.address);
  t.teardown(() => conn.close());
  const paused: SlotRange = { start: 0, end: 99 };
  const pausedKey = b(`{${tagsIn(paused, 1)[0]}}k`);
  await prepareHandoff(conn, {
    migrationId: 'aborted',
    slots: [paused],
    target: '127.0.0.1:1',
    maxPauseMs: 30_000,
  });
  const write = (): Promise<number> =>
    node.client.write({ mutations: [{ op: 'set', key: pausedKey, value: b('v'), expireAtMs: 0 }] });
  t.true(isTryAgain(await write().catch((error: unknown) => error)));
  t.deepEqual(await abortHandoff(conn, 'aborted'), { aborted: true, committed: false });
  t.true((await write()) > 0, 'writes resume at once');
  const commit = await commitHandoff(conn, 'aborted', 5_000).catch((error: unknown) => error);
  t.true(
    isShardsnapError(commit, ErrorCodes.failedPrecondition),
    'an aborted handoff never commits',
  );
  t.deepEqual(plain((await node.client.stats()).ownedSlots), [ALL]);
});

test.serial(
  'a committed handoff answers a repeated commit the same, reports committed to abort, and redirects with MOVED',
  async (t) => {
    const node = await nodeFor(t, { backend: 'memory' });
    const conn = new Connection(node.node.address);
    t.teardown(() => conn.close());
    const moved: SlotRange = { start: 0, end: 99 };
    const tag = tagsIn(moved, 1)[0] as string;
    const movedKey = b(`{${tag}}k`);
    await node.client.write({
      mutations: [{ op: 'set', key: movedKey, value: b('v'), expireAtMs: 0 }],
    });
    await prepareHandoff(conn, {
      migrationId: 'committed',
      slots: [moved],
      target: '127.0.0.1:1',
      maxPauseMs: 5_000,
    });
    const first = await commitHandoff(conn, 'committed', 5_000);
    const again = await commitHandoff(conn, 'committed', 5_000);
    t.deepEqual(again, first, 'a repeated commit answers the same');
    t.deepEqual(await abortHandoff(conn, 'committed'), { aborted: false, committed: true });
    const refused = await node.client
      .write({ mutations: [{ op: 'set', key: movedKey, value: b('w'), expireAtMs: 0 }] })
      .catch((error: unknown) => error);
    t.true(isShardsnapError(refused, ErrorCodes.moved), String(refused));
    t.is((refused as Error).message, `Write: MOVED ${slotOf(movedKey)} 127.0.0.1:1`);
    t.deepEqual(movedTo(refused), { slot: slotOf(movedKey), address: '127.0.0.1:1' });
    t.deepEqual(plain((await node.client.stats()).ownedSlots), [{ start: 100, end: 16383 }]);
    t.true(
      await waitFor(
        async () => Number((await node.client.digest({ slots: [moved] })).keyCount) === 0,
        5_000,
      ),
      'the keys given away are removed',
    );
  },
);

// Each handoff attempt first catches up; its progress is still reported as HANDOFF.
test.serial(
  'migration phases go SNAPSHOT, CATCH_UP, HANDOFF, DONE and never back from HANDOFF to CATCH_UP',
  async (t) => {
    t.timeout(30_000);
    const split = await inProcessSplit(t);
    split.writer.start();
    const phases: string[] = [];
    const done = await migrateSlots(
      split.conn,
      { source: split.source.node.address, slots: [MOVING] },
      {
        onEvent: (event) => {
          if (phases.at(-1) !== event.phase) phases.push(event.phase);
        },
      },
    );
    await split.writer.stop();
    t.is(done.phase, 'DONE');
    t.deepEqual(phases, ['SNAPSHOT', 'CATCH_UP', 'HANDOFF', 'DONE']);
  },
);

test.serial(
  'a target killed right after a split keeps its slots and data; the source sends MOVED; a restart with --slots none is refused',
  async (t) => {
    t.timeout(60_000);
    const logs = new Map<string, string[]>();
    const [sourceAddress, targetAddress] = await Promise.all([freeAddress(), freeAddress()]);
    const sourceProc = await startProc(t, logs, 'source', sourceAddress, []);
    let targetProc = await startProc(t, logs, 'target', targetAddress, ['--slots', 'none']);
    const source = new ShardsnapClient(sourceProc.address);
    const target = new ShardsnapClient(targetProc.address);
    const conn = new Connection(targetAddress);
    t.teardown(() => {
      source.close();
      target.close();
      conn.close();
    });
    const initial = mixedData([...tagsIn(MOVING, 50), ...tagsIn(STAYING, 10)], 20);
    for (const batch of initial) await source.write({ mutations: batch });
    const model = await modelOf(initial);
    const done = await migrateSlots(conn, { source: sourceAddress, slots: [MOVING] });
    t.is(done.phase, 'DONE');
    await kill(targetProc);

    // The recorded ownership wins over flags: a start that asks for other slots fails.
    const refused = await startProc(
      t,
      logs,
      'target',
      targetAddress,
      ['--slots', 'none'],
      targetProc.dataDir,
    ).then(
      () => undefined,
      (error: unknown) => error as Error,
    );
    t.truthy(refused, 'serve --slots none refuses to start');
    t.regex(refused?.message ?? '', /differ from the slots this node owns/);

    targetProc = await startProc(t, logs, 'target', targetAddress, [], targetProc.dataDir);
    t.deepEqual(plain((await target.stats()).ownedSlots), [MOVING]);
    await assertRangeMatchesModel(t, target, model, 'target after kill -9 and restart');
    t.deepEqual(plain((await source.stats()).ownedSlots), [STAYING]);
    const key = b(`{${tagsIn(MOVING, 1)[0]}}x`);
    const moved = await source
      .write({ mutations: [{ op: 'set', key, value: b('x'), expireAtMs: 0 }] })
      .catch((error: unknown) => error);
    t.deepEqual(
      movedTo(moved),
      { slot: slotOf(key), address: targetAddress },
      'MOVED to the target',
    );
  },
);

test.serial(
  'a commit whose answers are lost ends FAILED in doubt, then DONE once the source confirms it',
  async (t) => {
    t.timeout(30_000);
    const source = await nodeFor(t);
    const target = await nodeFor(t, { slots: [], migrationTuning: { inDoubtRetryMs: 300 } });
    const moving: SlotRange = { start: 0, end: 8191 };
    const data = mixedData(tagsIn(moving, 5), 20);
    for (const batch of data) await source.client.write({ mutations: batch });
    // The source commits, but every answer to CommitHandoff is lost on the way back.
    const handoffs = source.node.handoffs;
    const commit = handoffs.commit.bind(handoffs);
    handoffs.commit = async (id) => {
      await commit(id);
      throw new ShardsnapError(ErrorCodes.unavailable, 'injected: the answer was lost');
    };
    const conn = new Connection(target.node.address);
    t.teardown(() => conn.close());
    let migrationId = '';
    const error = await t.throwsAsync(
      migrateSlots(
        conn,
        { source: source.node.address, slots: [moving] },
        {
          onEvent: (e) => {
            migrationId = e.migrationId;
          },
        },
      ),
    );
    t.regex(error?.message ?? '', /no answer from source/);
    // The target settles with the source (AbortHandoff reports committed) and takes the slots.
    const settled = await waitFor(
      async () => (await getMigration(conn, { migrationId })).phase === 'DONE',
      10_000,
    );
    t.true(settled, 'GetMigration reports DONE once the in-doubt commit is confirmed');
    t.deepEqual((await target.client.stats()).ownedSlots, [moving]);
    t.deepEqual(target.node.ownership.imports(), []);
    const model = await modelOf(data);
    t.is(
      (await target.client.digest({ slots: [moving] })).digest,
      (await modelDigest(model, [moving])).digest,
    );
    const tag = tagsIn(moving, 1)[0] as string;
    await target.client.write({
      mutations: [{ op: 'set', key: b(`{${tag}}after`), value: b('1'), expireAtMs: 0 }],
    });
  },
);
