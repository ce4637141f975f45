import { execFile } from 'node:child_process';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { type SlotRange, slotOf } from '../src/core';
import type { MigrationEvent__Output } from '../src/generated/shardsnap/v1/MigrationEvent';
import { Connection } from '../src/wire';
import { b, nodeFor, rawUnary } from './helpers/harness';
import type { TestNode } from './helpers/nodes';
import { tagsIn } from './helpers/split';

/**
 * A client written in Python, from the .proto files alone, acts on what the
 * grpc-status-details-bin trailer says (ErrorInfo, RetryInfo): these tests put a node in
 * each situation and check what the client did, from the JSON lines it printed.
 */

const PYTHON = '/usr/bin/python3';
const CLIENT = join(__dirname, 'clients', 'python_client.py');
const MOVING: SlotRange = { start: 0, end: 8191 };

interface ClientEvent {
  event: string;
  attempt?: number;
  address?: string;
  status?: string;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  retry_delay_ms?: number | null;
  to?: string;
  slot?: number;
}

interface ClientRun {
  exitCode: number;
  events: ClientEvent[];
  stderr: string;
}

function runClient(args: string[], timeoutMs = 60_000): Promise<ClientRun> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [CLIENT, ...args],
      { timeout: timeoutMs, maxBuffer: 16 << 20 },
      (error, stdout, stderr) => {
        const exitCode = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (error && exitCode === -1) {
          reject(new Error(`python client did not finish: ${error.message}\n${stderr}`));
          return;
        }
        const events = stdout
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as ClientEvent);
        resolve({ exitCode, events, stderr });
      },
    );
  });
}

function log(t: ExecutionContext, run: ClientRun): void {
  t.log(`exit ${run.exitCode}`);
  for (const event of run.events.slice(0, 20)) t.log(JSON.stringify(event));
  if (run.stderr) t.log(run.stderr);
}

/** Moves MOVING from `source` to `target` over the Migration service, to its end. */
async function split(source: TestNode, target: TestNode): Promise<void> {
  const conn = new Connection(target.node.address);
  try {
    const stream = conn.migration.MigrateSlots(
      { source: source.node.address, slots: [MOVING] },
      { deadline: Date.now() + 60_000 },
    );
    let last: MigrationEvent__Output | undefined;
    for await (const event of stream as AsyncIterable<MigrationEvent__Output>) last = event;
    if (last?.phase !== 'DONE') throw new Error(`split ended in ${last?.phase}: ${last?.error}`);
  } finally {
    conn.close();
  }
}

test('MOVED: the client retries at the address of ErrorInfo after a split', async (t) => {
  const source = await nodeFor(t);
  const target = await nodeFor(t, { slots: [] });
  await split(source, target);
  const [tag] = tagsIn(MOVING, 1);
  const key = `{${tag}}moved`;

  const run = await runClient(['--address', source.node.address, '--key', key]);
  log(t, run);
  t.is(run.exitCode, 0);
  const [refused, redirect, ok] = run.events;
  t.like(refused, {
    event: 'refused',
    address: source.node.address,
    status: 'FAILED_PRECONDITION',
    reason: 'MOVED',
    domain: 'shardsnap.v1',
    metadata: { slot: String(slotOf(b(key))), address: target.node.address },
  });
  t.like(redirect, { event: 'redirect', to: target.node.address, slot: slotOf(b(key)) });
  t.like(ok, { event: 'ok', address: target.node.address, attempt: 2 });
  t.is(run.events.length, 3);

  // The write is on the target.
  const read = await rawUnary<{ values: Array<{ found: boolean; string?: Buffer }> }>((cb) =>
    target.client.connection.shard.Read({ keys: [b(key)] }, cb),
  );
  t.true(read.ok && read.value.values[0]?.found === true);
});

test('TRYAGAIN: the client waits RetryInfo.retry_delay during a handoff, then writes', async (t) => {
  const node = await nodeFor(t);
  const key = '{paused}k';
  const slot = slotOf(b(key));
  const maxPauseMs = 3_000;
  // The Migration service's own call pauses the slot, as a target does mid-handoff;
  // the source ends the pause by itself after max_pause_ms.
  const prepared = await rawUnary((cb) =>
    node.client.connection.migration.PrepareHandoff(
      {
        migrationId: 'python-client-test',
        slots: [{ start: slot, end: slot }],
        target: '127.0.0.1:1',
        maxPauseMs,
      },
      cb,
    ),
  );
  t.true(prepared.ok, prepared.ok ? '' : prepared.error.details);
  const pausedAt = Date.now();

  const run = await runClient(['--address', node.node.address, '--key', key]);
  log(t, run);
  t.is(run.exitCode, 0);
  const refusals = run.events.filter((e) => e.event === 'refused');
  t.true(
    refusals.length >= 2,
    `the paused slot was refused until the pause ended (${refusals.length})`,
  );
  for (const refused of refusals) {
    t.like(refused, {
      address: node.node.address,
      status: 'UNAVAILABLE',
      reason: 'TRYAGAIN',
      metadata: { slot: String(slot) },
    });
    t.true((refused.retry_delay_ms ?? 0) > 0, 'RetryInfo carries a delay');
  }
  const last = run.events.at(-1);
  t.like(last, { event: 'ok', address: node.node.address });
  t.is(last?.attempt, refusals.length + 1);
  // Refused until the pause ended, then let through: the write came after the pause.
  t.true(Date.now() - pausedAt >= maxPauseMs - 100, 'the write waited for the pause to end');
});

test('WRONGTYPE: the client reports the reason and its metadata and stops', async (t) => {
  const node = await nodeFor(t);
  const key = 'plain-string';
  const first = await runClient(['--address', node.node.address, '--key', key]);
  t.is(first.exitCode, 0);

  const run = await runClient(['--address', node.node.address, '--key', key, '--op', 'hset']);
  log(t, run);
  t.is(run.exitCode, 1);
  t.deepEqual(run.events, [
    {
      event: 'refused',
      attempt: 1,
      address: node.node.address,
      status: 'FAILED_PRECONDITION',
      reason: 'WRONGTYPE',
      domain: 'shardsnap.v1',
      metadata: { key, op: 'hset' },
      retry_delay_ms: null,
    },
    { event: 'gave_up', reason: 'WRONGTYPE' },
  ]);
});
