import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { rm } from 'node:fs/promises';
import { tempDirFor } from './helpers/harness';
import { makePki } from './helpers/tls';
import { ErrorCodes, ShardsnapError } from '../src/core';
import { cliJson as shapeJson } from '../src/cli/json';
import { unreachableError } from '../src/cli/unreachable';
import { BIN, type CliResult, cli, cliJson, serve, spawnServe } from './helpers/cli';
import { S3RVER_CREDENTIALS, s3For } from './helpers/s3';

// Served nodes and commands run as child processes with this env: the usual AWS_* vars.
process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
process.env.AWS_REGION = 'us-east-1';
delete process.env.AWS_ENDPOINT_URL;
delete process.env.AWS_ENDPOINT_URL_S3;
// The tests name every node; one set by the environment would hide a missing flag.
delete process.env.SHARDSNAP_ADDR;
delete process.env.SHARDSNAP_CONNECT_TIMEOUT;

test.before(() => {
  if (!existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('the CLI is not built: run `make build` first');
  }
});

const CAMEL = /^[a-z][a-zA-Z0-9]*$/;
const PROTO_ENUM = /^[A-Z]+_[A-Z_]+$/;

/**
 * What is wrong with one --json result, by path: keys not in camelCase, milliseconds
 * (`...Ms`) that are not whole numbers, values spelled like proto enums.
 */
function problems(value: unknown, path = '$'): string[] {
  if (typeof value === 'string') {
    return PROTO_ENUM.test(value) ? [`${path} = ${value}: a proto enum spelling`] : [];
  }
  if (Array.isArray(value)) return value.flatMap((item, i) => problems(item, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, item]) => {
    const at = `${path}.${key}`;
    const found: string[] = [];
    if (!CAMEL.test(key)) found.push(`${at}: key not in camelCase`);
    if (key.endsWith('Ms') && !Number.isInteger(item))
      found.push(`${at} = ${item}: not an integer`);
    return [...found, ...problems(item, at)];
  });
}

/** Every key of a result, recursively (to show that the check saw what it was meant to). */
function keys(value: unknown): string[] {
  if (Array.isArray(value)) return value.flatMap(keys);
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, item]) => [key, ...keys(item)]);
}

test('the checker catches snake_case keys, fractional milliseconds and proto enum values', (t) => {
  t.deepEqual(problems({ ok: true, elapsedMs: 12, info: { state: 'ready' } }), []);
  t.is(problems({ write_pause_ms: 1 }).length, 1);
  t.is(problems({ elapsedMs: 1.25 }).length, 1);
  t.is(problems({ list: [{ compression: 'COMPRESSION_NONE' }] }).length, 1);
});

test('every command with --json prints one camelCase object, whole milliseconds and CLI enum words', async (t) => {
  t.timeout(300_000);
  const s3 = await s3For(t);
  const endpoint = ['--s3-endpoint', s3.endpoint];
  const dir = await tempDirFor(t);
  const outputs = new Map<string, unknown>();

  /** Runs one command with --json: exit 0, exactly one line of JSON on stdout, nothing else. */
  const run = async <T = Record<string, unknown>>(args: string[]): Promise<T> => {
    const { code, json, raw } = await cliJson<T>(args);
    t.is(code, 0, `${args.join(' ')}: ${raw.stdout}${raw.stderr}`);
    t.is(raw.stdout.trim().split('\n').length, 1, `${args.join(' ')}: one line`);
    outputs.set(args.slice(0, 2).join(' '), json);
    return json;
  };

  const aDir = await tempDirFor(t, 'shardsnap-json-a-');
  const a = await spawnServe(t, [
    '--data-dir',
    aDir,
    '--log-level',
    'warn',
    '--node-id',
    'json-a',
    ...endpoint,
    '--json',
  ]);
  outputs.set('serve', JSON.parse(a.stdout().trim()));
  const [b, c, r] = await Promise.all([
    serve(t, endpoint),
    serve(t, ['--slots', 'none']),
    serve(t, ['--backend', 'rocksdb']),
  ]);

  await run([
    'load',
    '--to',
    a.address,
    '--keys',
    '3000',
    '--value-size',
    '60',
    '--types',
    'mixed',
  ]);
  await run(['stats', '--at', a.address]);
  await run(['digest', '--at', a.address, '--slots', '0-100']);
  const full = join(dir, 'full.snap');
  const fetched = await run<{ info: { compression: string; state: string } }>([
    'fetch',
    '--from',
    a.address,
    '--out',
    full,
    '--compression',
    'zstd',
  ]);
  t.is(fetched.info.state, 'ready');
  t.is(fetched.info.compression, 'zstd', 'as the option spells it');
  await run(['verify', full]);
  await run(['install', '--to', b.address, full]);
  await run(['pull', '--to', b.address, '--from', a.address, '--slots', '0-4095']);

  const created = await run<{ id: string; state: string }>([
    'snapshots',
    'create',
    '--at',
    a.address,
    '--wait',
  ]);
  t.is(created.state, 'ready');
  await run(['snapshots', 'list', '--at', a.address]);
  const archived = await run<{ uri: string }>([
    'archive',
    '--at',
    a.address,
    '--id',
    created.id,
    '--bucket',
    s3.bucket,
  ]);
  await run(['archives', 'list', '--bucket', s3.bucket, ...endpoint]);
  outputs.set(
    'archives list --at',
    await run(['archives', 'list', '--bucket', s3.bucket, '--at', a.address]),
  );
  await run(['archives', 'verify', archived.uri, ...endpoint]);
  await run(['restore', '--to', b.address, archived.uri]);
  await run(['archives', 'delete', archived.uri, ...endpoint]);
  await run(['snapshots', 'delete', '--at', a.address, '--id', created.id]);

  await run(['load', '--to', r.address, '--keys', '500', '--value-size', '40']);
  const checkpoint = join(dir, 'checkpoint.snap');
  outputs.set('fetch checkpoint', await run(['fetch', '--from', r.address, '--out', checkpoint]));
  await run(['unpack', checkpoint, '--out', join(dir, 'db')]);

  const split = await run<{ phase: string; writePauseMs: number }>([
    'split',
    '--source',
    a.address,
    '--target',
    c.address,
    '--slots',
    '0-100',
  ]);
  t.is(split.phase, 'done');
  t.true(Number.isInteger(split.writePauseMs));
  await run(['demo', '--keys', '2000', '--value-size', '32']);
  await run(['--version']);

  for (const [command, json] of outputs) t.deepEqual(problems(json), [], command);
  const seen = new Set([...outputs.values()].flatMap(keys));
  for (const key of ['elapsedMs', 'writePauseMs', 'createdAtMs', 'compression', 'state', 'phase']) {
    t.true(seen.has(key), `some output has ${key}, so the check looked at it`);
  }
});

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The one JSON object of a failed command, and nothing on stderr. */
function errorOf(t: import('ava').ExecutionContext, raw: CliResult): Record<string, unknown> {
  const lines = raw.stdout.trim().split('\n');
  t.is(lines.length, 1, raw.stdout);
  t.is(raw.stderr, '', 'no help text, no stack');
  const parsed = JSON.parse(lines[0] as string) as { ok: boolean; error: Record<string, unknown> };
  t.false(parsed.ok);
  return parsed.error;
}

test('usage errors with --json are one JSON object, exit 2, without help text', async (t) => {
  const cases: Array<[string[], string]> = [
    [['stats', '--at', '127.0.0.1:1', '--bogus'], 'UNKNOWN_OPTION'],
    [['stats'], 'MISSING_MANDATORY_OPTION_VALUE'],
    [['stats', '--at', 'not-an-address'], 'INVALID_ARGUMENT'],
    [
      ['load', '--to', '127.0.0.1:1', '--keys', '1', '--value-size', '1', '--types', 'weird'],
      'INVALID_ARGUMENT',
    ],
    [['fetch', '--from', '127.0.0.1:1', '--out', 'x', '--compression', 'gzip'], 'INVALID_ARGUMENT'],
    [['no-such-command'], 'UNKNOWN_COMMAND'],
    [[], 'MISSING_COMMAND'],
  ];
  const results = await Promise.all(cases.map(([args]) => cli([...args, '--json'])));
  results.forEach((raw, i) => {
    const [args, reason] = cases[i]!;
    t.is(raw.code, 2, args.join(' '));
    const error = errorOf(t, raw);
    t.is(error.code, 'usage');
    t.is(error.reason, reason, args.join(' '));
    t.false(String(error.message).startsWith('error:'));
  });
  // The missing node names the environment variable that could have given it.
  t.regex(String(errorOf(t, results[1]!).message), /SHARDSNAP_ADDR/);

  // Without --json: commander's message and the command's help on stderr, no stack.
  const human = await cli(['stats', '--at', '127.0.0.1:1', '--bogus']);
  t.is(human.code, 2);
  t.regex(human.stderr, /^error: unknown option '--bogus'/);
  t.regex(human.stderr, /Usage: shardsnap stats/);
  t.notRegex(human.stderr, /\.[jt]s:\d+:\d+/, 'no stack');
});

test('--version prints the package version, -V too, and JSON with --json', async (t) => {
  const { version } = JSON.parse(readFileSync(join(BIN, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const [long, short, json] = await Promise.all([
    cli(['--version']),
    cli(['-V']),
    cli(['--version', '--json']),
  ]);
  t.is(long.code, 0);
  t.is(long.stdout.trim(), version);
  t.is(short.stdout.trim(), version);
  t.deepEqual(JSON.parse(json.stdout), { ok: true, version });
});

test('an unreachable node is one plain sentence, exit 7, the same with --json', async (t) => {
  const port = await closedPort();
  const refused = await cli(['stats', '--at', `127.0.0.1:${port}`]);
  t.is(refused.code, 7);
  t.is(
    refused.stderr,
    `error: cannot reach node 127.0.0.1:${port}: connection refused (is \`shardsnap serve\` running there?)\n`,
  );
  const asJson = await cli(['digest', '--at', `127.0.0.1:${port}`, '--json']);
  t.is(asJson.code, 7);
  const error = errorOf(t, asJson);
  t.is(error.code, 'unavailable');
  t.deepEqual(error.metadata, { address: `127.0.0.1:${port}` });
  t.regex(String(error.message), /^cannot reach node 127\.0\.0\.1:\d+: connection refused/);

  const unknownHost = await cli(['stats', '--at', 'no-such-host.invalid:7420']);
  t.is(unknownHost.code, 7);
  t.regex(unknownHost.stderr, /^error: cannot reach node no-such-host\.invalid:7420: no such host/);

  for (const result of [refused, unknownHost]) {
    t.notRegex(
      result.stderr,
      /No connection established|Last error|Resolution note|\.[jt]s:\d+:\d+/,
    );
  }
});

test('SHARDSNAP_ADDR is the default node; an explicit flag wins', async (t) => {
  const node = await serve(t);
  const port = await closedPort();
  const viaEnv = await cliWithEnv(['stats', '--json'], { SHARDSNAP_ADDR: node.address });
  t.is(viaEnv.code, 0, viaEnv.stderr);
  t.is((JSON.parse(viaEnv.stdout) as { backend: string }).backend, 'memory');
  const flagWins = await cliWithEnv(['stats', '--at', node.address], {
    SHARDSNAP_ADDR: `127.0.0.1:${port}`,
  });
  t.is(flagWins.code, 0, flagWins.stderr);
  const envUsed = await cliWithEnv(['digest'], { SHARDSNAP_ADDR: `127.0.0.1:${port}` });
  t.is(envUsed.code, 7);
  t.regex(envUsed.stderr, new RegExp(`cannot reach node 127\\.0\\.0\\.1:${port}`));
  const help = await cli(['stats', '--help']);
  t.regex(help.stdout, /--at <host:port>\s+node \(env: SHARDSNAP_ADDR\)/);
});

test('--connect-timeout waits for a node that starts late', async (t) => {
  const port = await closedPort();
  const dataDir = await tempDirFor(t);
  const started = Date.now();
  const waiting = cli(['stats', '--at', `127.0.0.1:${port}`, '--connect-timeout', '20s', '--json']);
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  await spawnServe(t, [
    '--data-dir',
    dataDir,
    '--log-level',
    'warn',
    '--listen',
    `127.0.0.1:${port}`,
  ]);
  const result = await waiting;
  t.is(result.code, 0, result.stdout + result.stderr);
  t.true(Date.now() - started >= 1_000);
});

/** Runs the CLI with extra env (the shared helper inherits this process's env only). */
function cliWithEnv(args: readonly string[], env: NodeJS.ProcessEnv): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { timeout: 60_000, env: { ...process.env, ...env } },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
      },
    );
  });
}

test('a TLS mismatch with a node is one plain sentence too, exit 7', async (t) => {
  const pki = await makePki();
  t.teardown(() => rm(pki.dir, { recursive: true, force: true }));
  const [secure, plain] = await Promise.all([
    serve(t, ['--tls-cert', pki.nodeCert, '--tls-key', pki.nodeKey]),
    serve(t),
  ]);
  const cases = [
    ['stats', '--at', secure.address],
    ['stats', '--at', secure.address, '--tls-ca', pki.otherCa],
    ['stats', '--at', plain.address, '--tls-ca', pki.ca],
  ];
  const results = await Promise.all(cases.map((args) => cli(args)));
  const expected = [
    /the node closed the connection \(does it serve TLS\? then give --tls-ca\)/,
    /TLS handshake failed \(unable to verify the first certificate\)/,
    /TLS handshake failed \(wrong version number\)/,
  ];
  results.forEach((result, i) => {
    t.is(result.code, 7, cases[i]!.join(' '));
    t.regex(result.stderr, /^error: cannot reach node 127\.0\.0\.1:\d+: /);
    t.regex(result.stderr, expected[i]!);
    t.notRegex(result.stderr, /No connection established|Last error|\.[jt]s:\d+:\d+/);
  });
  const trusted = await cli(['stats', '--at', secure.address, '--tls-ca', pki.ca]);
  t.is(trusted.code, 0, trusted.stderr);
});

test('a timeout or a dropped connection before any answer is "cannot reach" too; an answer is not', (t) => {
  const timeout = new ShardsnapError(ErrorCodes.deadlineExceeded, 'Stats: Deadline exceeded');
  t.is(
    unreachableError(timeout, 'db1:7420', undefined)?.message,
    'cannot reach node db1:7420: no answer in time (is `shardsnap serve` running there?)',
  );
  // The node itself said TRYAGAIN or SHUTTING_DOWN: its words stay.
  const busy = new ShardsnapError(ErrorCodes.unavailable, 'draining', { reason: 'SHUTTING_DOWN' });
  t.is(unreachableError(busy, 'db1:7420', undefined), undefined);
  t.is(unreachableError(new ShardsnapError(ErrorCodes.notFound, 'x'), 'a:1', undefined), undefined);
});

test('cliJson: camelCase keys, whole milliseconds, two-decimal rates, CLI enum words', (t) => {
  t.deepEqual(
    shapeJson({
      snapshot_id: 'x',
      elapsedMs: 12.6,
      mibPerSecond: 1.23456,
      info: { compression: 'COMPRESSION_ZSTD', state: 'READY' },
      phase: 'CATCH_UP',
      big: 2n ** 64n,
      data: Buffer.from('hi'),
    }),
    {
      snapshotId: 'x',
      elapsedMs: 13,
      mibPerSecond: 1.23,
      info: { compression: 'zstd', state: 'ready' },
      phase: 'catch-up',
      big: '18446744073709551616',
      data: 'aGk=',
    },
  );
});
