import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { ShardsnapClient } from '../src/client';
import { ErrorCodes, isShardsnapError, slotOf } from '../src/core';
import { REQUIRED_ROLE } from '../src/server/security/access';
import { TokenTable } from '../src/server/security/tokens';
import { type ClientSecurity, Connection, loadProto } from '../src/wire';
import { b, installMessage, rawInstall, stringSets, tempDirFor } from './helpers/harness';
import { BIN } from './helpers/cli';
import { startNode } from './helpers/nodes';
import { TOKENS, clientTls, makePki, writeTokenFile } from './helpers/tls';

type Who = 'none' | 'wrong' | keyof typeof TOKENS;
const RANK = { read: 0, write: 1, admin: 2 } as const;

const pkiReady = makePki();

function metadataFor(who: Who): grpc.Metadata {
  const metadata = new grpc.Metadata();
  if (who === 'wrong') metadata.set('authorization', 'Bearer wrong-token-0123456789abcdef');
  else if (who !== 'none') metadata.set('authorization', `Bearer ${TOKENS[who]}`);
  return metadata;
}

interface MethodDef {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize: (value: unknown) => Buffer;
  responseDeserialize: (bytes: Buffer) => unknown;
}

/** Every RPC of the node's three services, as grpc-js describes them. */
function allMethods(): Array<{ name: string; def: MethodDef }> {
  const v1 = loadProto().shardsnap.v1;
  const out: Array<{ name: string; def: MethodDef }> = [];
  for (const service of [v1.Shard.service, v1.Snapshots.service, v1.Migration.service]) {
    for (const [name, def] of Object.entries(service)) {
      out.push({ name, def: def as MethodDef });
    }
  }
  return out;
}

/**
 * Calls `def` with a default (empty) request and returns the status code it ends with.
 * A stream that is still running after a moment was admitted; it is cancelled.
 */
function callCode(
  client: grpc.Client,
  def: MethodDef,
  metadata: grpc.Metadata,
): Promise<grpc.status> {
  return new Promise((resolve) => {
    const done = (error: grpc.ServiceError | null): void => resolve(error ? error.code : 0);
    if (!def.requestStream && !def.responseStream) {
      client.makeUnaryRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        {},
        metadata,
        done,
      );
      return;
    }
    if (def.requestStream) {
      const call = client.makeClientStreamRequest(
        def.path,
        def.requestSerialize,
        def.responseDeserialize,
        metadata,
        done,
      );
      call.end();
      return;
    }
    const call = client.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      {},
      metadata,
    );
    const timer = setTimeout(() => {
      call.cancel();
      resolve(0);
    }, 500);
    call.on('data', () => undefined);
    call.on('error', (error: grpc.ServiceError) => {
      clearTimeout(timer);
      resolve(error.code === grpc.status.CANCELLED ? 0 : error.code);
    });
    call.on('end', () => {
      clearTimeout(timer);
      resolve(0);
    });
  });
}

test('the role table names every RPC of the API', (t) => {
  const names = allMethods()
    .map((m) => m.name)
    .sort();
  t.deepEqual(Object.keys(REQUIRED_ROLE).sort(), names);
});

test('role × RPC: no token and unknown tokens are UNAUTHENTICATED, low roles PERMISSION_DENIED, the rest admitted', async (t) => {
  t.timeout(120_000);
  const dir = await tempDirFor(t);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  const node = await startNode({
    authTokensFile: await writeTokenFile(dir),
    logger: pino({ level: 'debug' }, sink),
  });
  t.teardown(() => node.stop());
  const client = new grpc.Client(node.node.address, grpc.credentials.createInsecure());
  t.teardown(() => client.close());
  const outcomes: string[] = [];
  for (const { name, def } of allMethods()) {
    const needed = REQUIRED_ROLE[name] ?? 'admin';
    for (const who of ['none', 'wrong', 'read', 'write', 'admin'] as const) {
      const code = await callCode(client, def, metadataFor(who));
      let expected: 'unauthenticated' | 'denied' | 'admitted';
      if (who === 'none' || who === 'wrong') expected = 'unauthenticated';
      else expected = RANK[who] >= RANK[needed] ? 'admitted' : 'denied';
      const ok =
        expected === 'unauthenticated'
          ? code === grpc.status.UNAUTHENTICATED
          : expected === 'denied'
            ? code === grpc.status.PERMISSION_DENIED
            : code !== grpc.status.UNAUTHENTICATED && code !== grpc.status.PERMISSION_DENIED;
      if (!ok) outcomes.push(`${name} as ${who}: status ${code}, expected ${expected}`);
    }
  }
  t.deepEqual(outcomes, []);
  // Health stays open.
  const health = await new Promise<number>((resolve) => {
    client.makeUnaryRequest(
      '/grpc.health.v1.Health/Check',
      (value: Buffer) => value,
      (value: Buffer) => value,
      Buffer.alloc(0),
      new grpc.Metadata(),
      (error) => resolve(error ? error.code : 0),
    );
  });
  t.is(health, 0);
  // No token ever reaches the logs, though refusals are logged.
  const log = lines.join('');
  t.true(log.includes('call refused'));
  for (const token of [...Object.values(TOKENS), 'wrong-token-0123456789abcdef']) {
    t.false(log.includes(token), 'a token was logged');
  }
});

test('the typed client sends its token and maps refusals to domain errors', async (t) => {
  const dir = await tempDirFor(t);
  const node = await startNode({ authTokensFile: await writeTokenFile(dir) });
  t.teardown(() => node.stop());
  const reader = new ShardsnapClient(node.node.address, { security: { token: TOKENS.read } });
  const writer = new ShardsnapClient(node.node.address, { security: { token: TOKENS.write } });
  t.teardown(() => {
    reader.close();
    writer.close();
  });
  await writer.write({ mutations: [{ op: 'set', key: b('k'), value: b('v'), expireAtMs: 0 }] });
  t.is((await reader.stats()).keyCount, 1);
  const denied = await t.throwsAsync(
    reader.write({ mutations: [{ op: 'set', key: b('k'), value: b('w'), expireAtMs: 0 }] }),
  );
  t.true(isShardsnapError(denied, ErrorCodes.permissionDenied), String(denied));
  const anonymous = await t.throwsAsync(node.client.stats());
  t.true(isShardsnapError(anonymous, ErrorCodes.unauthenticated), String(anonymous));
});

test('token files are checked at start: short, duplicate, unknown roles', (t) => {
  const parse = (tokens: unknown): unknown =>
    TokenTable.parse(JSON.stringify({ tokens }), 'tokens.json');
  t.throws(() => parse([{ name: 'a', token: 'short', role: 'read' }]), { message: /at least 16/ });
  t.throws(() => parse([{ name: 'a', token: TOKENS.read, role: 'root' }]), {
    message: /role must be/,
  });
  t.throws(
    () =>
      parse([
        { name: 'a', token: TOKENS.read, role: 'read' },
        { name: 'b', token: TOKENS.read, role: 'admin' },
      ]),
    { message: /twice/ },
  );
  t.throws(() => parse([]), { message: /expected/ });
  const table = TokenTable.parse(
    JSON.stringify({ tokens: [{ name: 'ops', token: TOKENS.admin, role: 'admin' }] }),
    'x',
  );
  t.deepEqual(table.holder(TOKENS.admin), { name: 'ops', role: 'admin' });
  t.is(table.holder(TOKENS.read), undefined);
});

test('TLS: plaintext and untrusting clients fail, a client trusting the CA works', async (t) => {
  const pki = await pkiReady;
  const node = await startNode(
    { tls: { cert: pki.nodeCert, key: pki.nodeKey } },
    await clientTls(pki),
  );
  t.teardown(() => node.stop());
  await node.client.write({ mutations: stringSets('tls', 10) });
  t.is((await node.client.stats()).keyCount, 10);
  const plain = new ShardsnapClient(node.node.address);
  const untrusting = new ShardsnapClient(node.node.address, {
    security: { tls: { ca: await pki.read(pki.otherCa) } },
  });
  t.teardown(() => {
    plain.close();
    untrusting.close();
  });
  const plainError = await t.throwsAsync(plain.stats());
  t.true(isShardsnapError(plainError, ErrorCodes.unavailable), String(plainError));
  const untrustingError = await t.throwsAsync(untrusting.stats());
  t.true(isShardsnapError(untrustingError, ErrorCodes.unavailable), String(untrustingError));
  // The bulk path (its own HTTP/2 session) speaks TLS too.
  const out = `${await tempDirFor(t)}/snap.bin`;
  const fetched = await node.client.fetchToFile({ out });
  t.true(fetched.bytes > 0);
});

test('mutual TLS: no client certificate or a stranger one fails; the CA-signed one works, fetches included', async (t) => {
  const pki = await pkiReady;
  const node = await startNode(
    { tls: { cert: pki.nodeCert, key: pki.nodeKey, clientCa: pki.ca } },
    await clientTls(pki, { mutual: true }),
  );
  t.teardown(() => node.stop());
  await node.client.write({ mutations: stringSets('mtls', 50) });
  const noCert = new ShardsnapClient(node.node.address, { security: await clientTls(pki) });
  const stranger = new ShardsnapClient(node.node.address, {
    security: {
      tls: {
        ca: await pki.read(pki.ca),
        cert: await pki.read(pki.strangerCert),
        key: await pki.read(pki.strangerKey),
      },
    },
  });
  t.teardown(() => {
    noCert.close();
    stranger.close();
  });
  await t.throwsAsync(noCert.stats());
  await t.throwsAsync(stranger.stats());
  t.is((await node.client.stats()).keyCount, 50);
  const out = `${await tempDirFor(t)}/snap.bin`;
  const fetched = await node.client.fetchToFile({ out, parallel: 2 });
  t.true(fetched.bytes > 0);
  // A stranger cannot fetch either.
  await t.throwsAsync(stranger.fetchToFile({ out: `${out}.2` }));
});

async function secureNode(t: ExecutionContext, extra: Record<string, unknown> = {}) {
  const pki = await pkiReady;
  const dir = await tempDirFor(t);
  const tokens = await writeTokenFile(dir);
  const peerToken = `${dir}/peer-token`;
  const { writeFile } = await import('node:fs/promises');
  await writeFile(peerToken, `${TOKENS.admin}\n`);
  const node = await startNode(
    {
      tls: { cert: pki.nodeCert, key: pki.nodeKey, clientCa: pki.ca },
      peerTlsCa: pki.ca,
      authTokensFile: tokens,
      peerTokenFile: peerToken,
      ...extra,
    },
    await clientTls(pki, { mutual: true, token: TOKENS.admin }),
  );
  t.teardown(() => node.stop());
  return node;
}

test('node to node over mutual TLS with tokens: a pull and a full split', async (t) => {
  t.timeout(120_000);
  const source = await secureNode(t);
  await source.client.write({ mutations: stringSets('peer', 2_000) });
  // A pull into an empty node: seeding with force.
  const seeded = await secureNode(t, { slots: [] });
  let last;
  for await (const progress of seeded.client.pull({ source: source.node.address, force: true })) {
    last = progress;
  }
  t.truthy(last?.done);
  t.deepEqual((await seeded.client.digest()).digest, (await source.client.digest()).digest);
  t.deepEqual(seeded.node.ownership.owned(), [{ start: 0, end: 16383 }]);
  // A split of half the slots to a third node.
  const target = await secureNode(t, { slots: [] });
  const half = [{ start: 0, end: 8191 }];
  const before = await source.client.digest({ slots: half });
  const { migrateSlots } = await import('../src/client');
  const status = await migrateSlots(target.client.connection, {
    source: source.node.address,
    slots: half,
    maxPauseMs: 1_000,
  });
  t.is(status.phase, 'DONE');
  t.deepEqual((await target.client.digest({ slots: half })).digest, before.digest);
  t.deepEqual(target.node.ownership.owned(), half);
});

test('installs and pulls of slots the node does not own are FAILED_PRECONDITION unless seeding with force', async (t) => {
  const source = await startNode();
  t.teardown(() => source.stop());
  await source.client.write({ mutations: stringSets('own', 500) });
  const half = await startNode({ slots: [{ start: 0, end: 8191 }] });
  t.teardown(() => half.stop());
  // A full snapshot covers slots this node does not own.
  const refused = await t.throwsAsync(drain(half.client.pull({ source: source.node.address })));
  t.true(isShardsnapError(refused, ErrorCodes.failedPrecondition), String(refused));
  // force does not help a node that owns slots.
  const forced = await t.throwsAsync(
    drain(half.client.pull({ source: source.node.address, force: true })),
  );
  t.true(isShardsnapError(forced, ErrorCodes.failedPrecondition), String(forced));
  t.is((await half.client.stats()).keyCount, 0);
  // Its own slots are fine.
  await drain(half.client.pull({ source: source.node.address, slots: [{ start: 0, end: 8191 }] }));
  t.deepEqual(
    (await half.client.digest({ slots: [{ start: 0, end: 8191 }] })).digest,
    (await source.client.digest({ slots: [{ start: 0, end: 8191 }] })).digest,
  );
  // An install from a file follows the same rule.
  const file = `${await tempDirFor(t)}/full.bin`;
  await source.client.fetchToFile({ out: file });
  const install = await t.throwsAsync(half.client.installFile({ path: file }));
  t.true(isShardsnapError(install, ErrorCodes.failedPrecondition), String(install));
  const empty = await startNode({ slots: [] });
  t.teardown(() => empty.stop());
  const unforced = await t.throwsAsync(empty.client.installFile({ path: file }));
  t.true(isShardsnapError(unforced, ErrorCodes.failedPrecondition), String(unforced));
  await empty.client.installFile({ path: file, force: true });
  t.is((await empty.client.stats()).keyCount, 500);
  t.deepEqual(empty.node.ownership.owned(), [{ start: 0, end: 16383 }]);
});

async function drain<T>(stream: AsyncIterable<T>): Promise<void> {
  for await (const progress of stream) void progress;
}

test('--allow-peers refuses other addresses before any connection is opened', async (t) => {
  const probe = createServer();
  let connections = 0;
  probe.on('connection', (socket) => {
    connections++;
    socket.destroy();
  });
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  t.teardown(() => probe.close());
  const port = (probe.address() as { port: number }).port;
  const node = await startNode({ slots: [], allowPeers: ['10.0.0.0/8', 'peer-a:7420'] });
  t.teardown(() => node.stop());
  const pull = await t.throwsAsync(
    drain(node.client.pull({ source: `127.0.0.1:${port}`, force: true })),
  );
  t.true(isShardsnapError(pull, ErrorCodes.permissionDenied), String(pull));
  const { migrateSlots } = await import('../src/client');
  const split = await t.throwsAsync(
    migrateSlots(node.client.connection, {
      source: `localhost:${port}`,
      slots: [{ start: 0, end: 10 }],
      maxPauseMs: 500,
    }),
  );
  t.true(isShardsnapError(split, ErrorCodes.permissionDenied), String(split));
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.is(connections, 0);
  // An allowed address is dialed.
  const open = await startNode({ slots: [], allowPeers: [`127.0.0.1:${port}`] });
  t.teardown(() => open.stop());
  await t.throwsAsync(drain(open.client.pull({ source: `127.0.0.1:${port}`, force: true })));
  t.true(connections > 0);
});

test('client security settings are checked before anything is dialed', async (t) => {
  const { loadClientSecurity } = await import('../src/wire');
  const pki = await pkiReady;
  await t.throwsAsync(loadClientSecurity({ tlsCert: pki.clientCert }), { message: /together/ });
  await t.throwsAsync(loadClientSecurity({ tlsCa: '/nonexistent/ca.pem' }), {
    message: /nonexistent/,
  });
  await t.throwsAsync(loadClientSecurity({ token: 'has space' }), { message: /visible ASCII/ });
  const security: ClientSecurity = await loadClientSecurity({ tlsCa: pki.ca, token: 'abc' });
  t.truthy(security.tls?.ca);
  t.is(security.token, 'abc');
  // A raw connection carries the same settings to its bulk path.
  const conn = new Connection('127.0.0.1:1', { security });
  t.is(conn.security, security);
  conn.close();
});

test('an install whose header lists no slots, or a partial files artifact, is refused before anything is staged', async (t) => {
  const { encodeHeader } = await import('../src/snapshot');
  const node = await startNode({ slots: [{ start: 0, end: 8191 }] });
  t.teardown(() => node.stop());
  await node.client.write({
    mutations: stringSets('kept', 300).filter((m) => slotOfMutation(m) <= 8191),
  });
  const before = await node.client.digest();
  const header = {
    format_version: 1,
    kind: 'records' as const,
    snapshot_id: 'crafted',
    node_id: 'elsewhere',
    backend: 'memory',
    strategy: 'memory-scan',
    seq: 1,
    created_at_ms: Date.now(),
  };
  const crafted = [
    { ...header, slots: [], full: false },
    { ...header, slots: [{ start: 0, end: 100 }], full: true },
    { ...header, kind: 'files' as const, slots: [{ start: 0, end: 100 }], full: false },
    { ...header, slots: [{ start: 0, end: 100 }], full: false, seq: -1 },
    ...['abc', null, 1e300, 2 ** 64, 2 ** 53 + 1].map((seq) => ({
      ...header,
      slots: [{ start: 0, end: 100 }],
      full: false,
      seq: seq as number,
    })),
    { ...header, slots: 'x' as unknown as [], full: false },
    { ...header, slots: [{ start: 5, end: 1 }], full: false },
  ];
  for (const h of crafted) {
    const { error } = await rawInstall(node.client.connection, [
      installMessage(0, encodeHeader(h)),
    ]);
    const code = error?.code;
    t.is(code, grpc.status.DATA_LOSS, JSON.stringify(h));
  }
  t.deepEqual(await node.client.digest(), before);
});

function slotOfMutation(m: { key: Buffer }): number {
  return slotOf(m.key);
}

test('the CLI speaks TLS and sends tokens: --tls-ca, --tls-cert/--tls-key, --token, SHARDSNAP_TOKEN', async (t) => {
  t.timeout(120_000);
  const pki = await pkiReady;
  const dir = await tempDirFor(t);
  const node = await startNode(
    {
      tls: { cert: pki.nodeCert, key: pki.nodeKey, clientCa: pki.ca },
      authTokensFile: await writeTokenFile(dir),
    },
    await clientTls(pki, { mutual: true, token: TOKENS.write }),
  );
  t.teardown(() => node.stop());
  await node.client.write({ mutations: stringSets('cli', 20) });
  const at = ['--at', node.node.address];
  const tls = ['--tls-ca', pki.ca, '--tls-cert', pki.clientCert, '--tls-key', pki.clientKey];
  const run = (args: string[], env: Record<string, string> = {}) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [BIN, ...args],
        { timeout: 60_000, env: { ...process.env, SHARDSNAP_TOKEN: '', ...env } },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number(error.code ?? -1) : 0, stdout, stderr }),
      );
    });
  const ok = await run(['stats', ...at, ...tls, '--token', TOKENS.read, '--json']);
  t.is(ok.code, 0, ok.stderr);
  t.is(ok.stderr, '', 'nothing on stderr, no warning about an IP as TLS server name');
  t.is((JSON.parse(ok.stdout) as { keyCount: number }).keyCount, 20);
  const fromEnv = await run(['stats', ...at, ...tls, '--json'], { SHARDSNAP_TOKEN: TOKENS.read });
  t.is(fromEnv.code, 0, fromEnv.stderr);
  // No token: UNAUTHENTICATED, exit 9; a read token cannot load data: PERMISSION_DENIED, exit 9.
  t.is((await run(['stats', ...at, ...tls])).code, 9);
  const load = await run([
    'load',
    '--to',
    node.node.address,
    ...tls,
    '--token',
    TOKENS.read,
    '--keys',
    '5',
    '--value-size',
    '8',
  ]);
  t.is(load.code, 9, load.stderr);
  // Without the client certificate the TLS handshake fails: UNAVAILABLE, exit 7.
  t.is((await run(['stats', ...at, '--tls-ca', pki.ca, '--token', TOKENS.read])).code, 7);
  // A certificate without its key is a usage error.
  t.is((await run(['stats', ...at, '--tls-ca', pki.ca, '--tls-cert', pki.clientCert])).code, 2);
  // A fetch over TLS with a read token deletes the snapshot it made for itself.
  const out = `${dir}/cli.snap`;
  const fetched = await run([
    'fetch',
    '--from',
    node.node.address,
    ...tls,
    '--token',
    TOKENS.read,
    '--out',
    out,
    '--json',
  ]);
  t.is(fetched.code, 0, fetched.stderr);
  t.deepEqual(await node.client.listSnapshots(), []);
});
