import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { ShardsnapClient } from '../src/client';
import { ErrorCodes, isShardsnapError } from '../src/core';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import { BIN, spawnServe } from './helpers/cli';
import { nodeFor, stringSets, tempDirFor, waitFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';
import { TOKENS, writeTokenFile } from './helpers/tls';

interface LogLine {
  level: number;
  msg: string;
  nodeId?: unknown;
  [field: string]: unknown;
}

/** Parses newline-delimited JSON log output; throws on a line that is not a JSON object. */
function parseLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        throw new Error(`a log line is not JSON: ${line}`);
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
        throw new Error(`a log line is not a JSON object: ${line}`);
      }
      return parsed as LogLine;
    });
}

/** Everything a node's logger writes, kept as text. */
class LogCapture {
  text = '';
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      this.text += chunk.toString();
      callback();
    },
  });

  lines(): LogLine[] {
    return parseLines(this.text);
  }

  /** Lines with message `msg` (and, when given, whose `snapshot` field is `snapshot`). */
  find(msg: string, snapshot?: string): LogLine[] {
    return this.lines().filter(
      (line) => line.msg === msg && (snapshot === undefined || line.snapshot === snapshot),
    );
  }

  /** The one line `msg` of `snapshot`, waited for (bounded); undefined if absent or repeated. */
  async one(msg: string, snapshot?: string, timeoutMs = 3_000): Promise<LogLine | undefined> {
    await waitFor(() => this.find(msg, snapshot).length > 0, timeoutMs);
    const found = this.find(msg, snapshot);
    return found.length === 1 ? found[0] : undefined;
  }
}

async function loggedNode(
  t: ExecutionContext,
  nodeId: string,
  options: Parameters<typeof nodeFor>[1] = {},
): Promise<{ node: TestNode; log: LogCapture }> {
  const log = new LogCapture();
  const node = await nodeFor(t, {
    nodeId,
    logger: pino({ level: 'debug' }, log.stream),
    ...options,
  });
  return { node, log };
}

/** Every line parses and carries `nodeId`. */
function checkEveryLine(t: ExecutionContext, log: LogCapture, nodeId: string): void {
  const lines = log.lines();
  t.true(lines.length > 0, 'the node logged');
  const strangers = lines.filter((line) => line.nodeId !== nodeId);
  t.deepEqual(strangers, [], `every line has nodeId "${nodeId}"`);
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}

test('a fetch logs its build and its transfer, a delete its removal, with sizes and durations', async (t) => {
  t.timeout(60_000);
  const { node, log } = await loggedNode(t, 'log-node-1');
  await node.client.write({ mutations: stringSets('fetched-', 500, 64) });
  const out = join(await tempDirFor(t), 'full.snap');
  const fetched = await node.client.fetchToFile({ out });
  const id = fetched.info.id;
  t.true(fetched.bytes > 0);

  const built = await log.one('snapshot built', id);
  t.truthy(built, 'one "snapshot built" line for the fetched snapshot');
  t.is(built?.level, 30);
  t.is(built?.kind, 'full');
  t.is(built?.strategy, fetched.info.strategy);
  t.is(built?.keys, 500);
  t.is(built?.seq, Number(fetched.info.seq));
  t.is(built?.bytes, fetched.bytes);
  t.true(isCount(built?.durationMs), `durationMs ${String(built?.durationMs)}`);

  const served = await log.one('snapshot served', id);
  t.truthy(served, 'one "snapshot served" line for the fetch');
  t.is(served?.level, 30);
  t.is(served?.offset, 0);
  t.is(served?.bytes, fetched.bytes);
  t.true((served?.bytes as number) > 0);
  t.true(isCount(served?.durationMs), `durationMs ${String(served?.durationMs)}`);
  t.deepEqual(log.find('snapshot transfer cancelled'), []);

  // The fetch deletes the snapshot it made for itself once the file is complete.
  const dropped = await log.one('snapshot deleted', id);
  t.is(dropped?.reason, 'deleted');

  // An explicit DeleteSnapshot of a READY slot snapshot.
  const created = await node.client.createSnapshot({ slots: [{ start: 0, end: 8191 }] });
  const ready = await node.client.waitReady({ snapshotId: created.id });
  const slotsBuilt = await log.one('snapshot built', created.id);
  t.is(slotsBuilt?.kind, 'slots');
  t.true(isCount(slotsBuilt?.keys) && slotsBuilt?.keys > 0);
  t.is(slotsBuilt?.bytes, Number(ready.sizeBytes));
  await node.client.deleteSnapshot({ snapshotId: created.id });
  const deleted = await log.one('snapshot deleted', created.id);
  t.truthy(deleted, 'one "snapshot deleted" line');
  t.is(deleted?.level, 30);
  t.is(deleted?.reason, 'deleted');
  t.is(deleted?.state, 'READY');
  t.is(deleted?.bytes, Number(ready.sizeBytes));
  t.true((deleted?.bytes as number) > 0);
  t.true(isCount(deleted?.durationMs), `durationMs ${String(deleted?.durationMs)}`);

  t.deepEqual(log.find('snapshot build failed'), []);
  t.deepEqual(log.find('call failed'), []);
  t.truthy(log.find('node started')[0]);
  checkEveryLine(t, log, 'log-node-1');
});

test('a client error is one debug "call refused" line with its code and no stack', async (t) => {
  const { node, log } = await loggedNode(t, 'log-node-2');
  const unknown = 'lq3x9z0a-0123abcd';
  const before = log.find('call refused').length;
  t.is(before, 0);
  const error = await t.throwsAsync(node.client.getSnapshot({ snapshotId: unknown }));
  t.true(isShardsnapError(error, ErrorCodes.notFound), String(error));
  // The line is written before the status goes out; waited for all the same.
  await waitFor(() => log.find('call refused').length > 0, 2_000);
  const refused = log.find('call refused');
  t.is(refused.length, 1, 'exactly one line');
  const line = refused[0];
  t.is(line?.level, 20, 'at debug level');
  t.is(line?.method, 'GetSnapshot');
  t.is(line?.code, 'not_found');
  t.true(String(line?.message).includes(unknown), String(line?.message));
  for (const field of ['err', 'error', 'stack']) t.false(field in (line ?? {}), field);
  t.false(JSON.stringify(line).includes('    at '), 'no stack trace anywhere in the line');
  t.deepEqual(log.find('call failed'), [], 'not a warning');
  checkEveryLine(t, log, 'log-node-2');
});

test('an expired snapshot and one beyond keepRecent are logged as removed', async (t) => {
  t.timeout(30_000);
  // A 300 ms TTL: the catalog collects every second (its shortest interval).
  const expiring = await loggedNode(t, 'log-node-ttl', { snapshotTtlMs: 300 });
  const created = await expiring.node.client.createSnapshot({ slots: [{ start: 0, end: 100 }] });
  const ready = await expiring.node.client.waitReady({ snapshotId: created.id });
  const expired = await expiring.log.one('snapshot removed (expired)', created.id, 5_000);
  t.truthy(expired, 'one "snapshot removed (expired)" line within 5 s');
  t.is(expired?.level, 30);
  t.is(expired?.reason, 'expired');
  t.is(expired?.state, 'READY');
  t.is(expired?.bytes, Number(ready.sizeBytes));
  t.true(
    isCount(expired?.durationMs) && expired?.durationMs >= 300,
    `durationMs ${String(expired?.durationMs)}: at least the TTL since it was made`,
  );
  t.deepEqual(await expiring.node.client.listSnapshots(), []);
  t.deepEqual(expiring.log.find('snapshot deleted'), []);
  checkEveryLine(t, expiring.log, 'log-node-ttl');

  const keeping = await loggedNode(t, 'log-node-keep', { keepRecent: 1 });
  const older = await keeping.node.client.createSnapshot({ slots: [{ start: 0, end: 100 }] });
  await keeping.node.client.waitReady({ snapshotId: older.id });
  const newer = await keeping.node.client.createSnapshot({ slots: [{ start: 0, end: 100 }] });
  await keeping.node.client.waitReady({ snapshotId: newer.id });
  const retired = await keeping.log.one('snapshot removed (retention)', older.id);
  t.truthy(retired, 'the older snapshot is removed by the retention');
  t.is(retired?.reason, 'retention');
  t.is(retired?.state, 'READY');
  t.deepEqual(keeping.log.find('snapshot removed (retention)', newer.id), []);
  checkEveryLine(t, keeping.log, 'log-node-keep');
});

test('tokens never reach the logs, whether accepted, refused or sent to peers', async (t) => {
  t.timeout(60_000);
  const dir = await tempDirFor(t);
  const tokens = await writeTokenFile(dir);
  const peerToken = join(dir, 'peer-token');
  await writeFile(peerToken, `${TOKENS.admin}\n`);
  const unknownToken = 'unknown-peer-token-0123456789abcdef';
  const strangerToken = join(dir, 'stranger-token');
  await writeFile(strangerToken, `${unknownToken}\n`);
  // Plaintext peers on loopback: a peer token without TLS needs --allow-peers.
  const secured = { authTokensFile: tokens, peerTokenFile: peerToken, allowPeers: ['127.0.0.1'] };

  const source = await loggedNode(t, 'log-secure-source', secured);
  const puller = await loggedNode(t, 'log-secure-puller', secured);
  const stranger = await loggedNode(t, 'log-secure-stranger', {
    authTokensFile: tokens,
    peerTokenFile: strangerToken,
    allowPeers: ['127.0.0.1'],
  });
  const as = (node: TestNode, token: string): ShardsnapClient => {
    const client = new ShardsnapClient(node.node.address, { security: { token } });
    t.teardown(() => client.close());
    return client;
  };

  const admin = as(source.node, TOKENS.admin);
  await as(source.node, TOKENS.write).write({ mutations: stringSets('secret-', 200) });
  await admin.fetchToFile({ out: join(dir, 'fetched.snap') });
  // Refused: no token, an unknown token, a role too low.
  await t.throwsAsync(source.node.client.stats());
  await t.throwsAsync(as(source.node, 'wrong-token-0123456789abcdef').stats());
  await t.throwsAsync(as(source.node, TOKENS.read).write({ mutations: stringSets('denied-', 1) }));
  // Node to node: a pull with the peer token, and one with a token the source does not know.
  let last: PullProgress__Output | undefined;
  for await (const progress of as(puller.node, TOKENS.admin).pull({
    source: source.node.node.address,
  })) {
    last = progress;
  }
  t.true(last?.done);
  const failedPull = await t.throwsAsync(
    (async () => {
      for await (const progress of as(stranger.node, TOKENS.admin).pull({
        source: source.node.node.address,
      })) {
        void progress;
      }
    })(),
  );
  // The source refused the stranger's peer token: the stranger's configuration, not the caller's token.
  t.true(isShardsnapError(failedPull, ErrorCodes.failedPrecondition), String(failedPull));
  t.regex(failedPull?.message ?? '', /refused this node's credentials/);

  // Refusals were logged, so the search below had something to search.
  await waitFor(() => source.log.find('call refused').length >= 4, 2_000);
  t.true(source.log.find('call refused').length >= 4);
  t.truthy(stranger.log.find('call refused')[0] ?? stranger.log.find('call failed')[0]);
  t.truthy(
    stranger.log.find(
      "PullSnapshot: the peer refused this node's credentials (--peer-token-file, --peer-tls-ca)",
    )[0],
  );
  t.truthy(puller.log.find('snapshot pulled')[0]);
  const secrets = [...Object.values(TOKENS), 'wrong-token-0123456789abcdef', unknownToken];
  for (const [name, log] of [
    ['source', source.log],
    ['puller', puller.log],
    ['stranger', stranger.log],
  ] as const) {
    for (const secret of secrets) t.false(log.text.includes(secret), `a token in the ${name} log`);
  }
  checkEveryLine(t, source.log, 'log-secure-source');
  checkEveryLine(t, puller.log, 'log-secure-puller');
  checkEveryLine(t, stranger.log, 'log-secure-stranger');
});

test('shardsnap serve writes only JSON lines with its nodeId to stderr, and stops cleanly on SIGTERM', async (t) => {
  t.timeout(120_000);
  if (!existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js'))) {
    t.fail('the CLI is not built: run `make build` first');
    return;
  }
  const peer = await nodeFor(t, { nodeId: 'log-cli-peer' });
  await peer.client.write({ mutations: stringSets('peer-', 300) });
  const dataDir = await tempDirFor(t, 'shardsnap-cli-');
  const served = await spawnServe(t, [
    '--data-dir',
    dataDir,
    '--node-id',
    'log-cli-node',
    '--log-level',
    'info',
  ]);
  const client = new ShardsnapClient(served.address);
  t.teardown(() => client.close());
  await client.write({ mutations: stringSets('own-', 200) });

  const fetched = await client.fetchToFile({ out: join(await tempDirFor(t), 'cli-fetch.snap') });
  t.true(fetched.bytes > 0);
  let last: PullProgress__Output | undefined;
  for await (const progress of client.pull({ source: peer.node.address })) last = progress;
  t.true(last?.done);
  t.is(Number(last?.keysInstalled), 300);
  const logged = (msg: string): boolean =>
    parseLines(served.stderr()).some((line) => line.msg === msg);
  t.true(await waitFor(() => logged('snapshot pulled'), 5_000), 'the pull was logged');

  process.kill(served.child.pid!, 'SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([
    served.exited,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), 20_000);
    }),
  ]);
  clearTimeout(timer);
  t.deepEqual(exit, { code: 0, signal: null }, 'exits 0 on SIGTERM within 20 s');

  const stderr = served.stderr();
  const lines = parseLines(stderr); // throws on any line that is not JSON
  t.is(lines.length, stderr.split('\n').filter((line) => line.length > 0).length);
  t.deepEqual(
    lines.filter((line) => line.nodeId !== 'log-cli-node'),
    [],
    'every stderr line has the nodeId',
  );
  t.deepEqual(
    lines.filter((line) => line.level < 30),
    [],
    'nothing below info at --log-level info',
  );
  const messages = lines.map((line) => line.msg);
  for (const msg of [
    'node started',
    'snapshot built',
    'snapshot served',
    'snapshot deleted',
    'snapshot pulled',
    'stopping',
    'stopped',
  ]) {
    t.true(messages.includes(msg), `stderr has "${msg}"`);
  }
  t.is(messages[messages.length - 1], 'stopped', 'the last line is "stopped"');
  const stopping = lines.find((line) => line.msg === 'stopping');
  t.is(stopping?.signal, 'SIGTERM');
  const serveLine = lines.find((line) => line.msg === 'snapshot served');
  t.is(serveLine?.bytes, fetched.bytes);
  const pulled = lines.find((line) => line.msg === 'snapshot pulled');
  t.is(pulled?.keysInstalled, 300);
  t.is(pulled?.source, peer.node.address);
  t.regex(served.stdout(), /listening on 127\.0\.0\.1:\d+/);
});
