import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { S3Targets, listArchives, resolveS3Settings } from '../src/archive';
import { tempDirFor, waitFor } from './helpers/harness';
import { BIN, type CliResult, cli, cliJson, serve } from './helpers/cli';
import { S3RVER_CREDENTIALS, s3For } from './helpers/s3';

// Served nodes and commands run as child processes with this env: the usual AWS_* vars.
process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
process.env.AWS_REGION = 'us-east-1';
delete process.env.AWS_ENDPOINT_URL;
delete process.env.AWS_ENDPOINT_URL_S3;

test.before(() => {
  if (!existsSync(join(BIN, '..', '..', 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('the CLI is not built: run `make build` first');
  }
});

/** Runs the CLI with extra env (the shared helper always inherits this process's env). */
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

interface Archived {
  ok: boolean;
  uri: string;
  snapshotId: string;
  sha256: string;
  sizeBytes: number;
}

test('archive, archives list|verify|delete and restore through the CLI', async (t) => {
  const s3 = await s3For(t);
  const endpoint = ['--s3-endpoint', s3.endpoint];
  const [a, b] = await Promise.all([
    serve(t, [...endpoint, '--node-id', 'cli-a']),
    serve(t, endpoint),
  ]);
  const load = await cli([
    'load',
    '--to',
    a.address,
    '--keys',
    '1500',
    '--value-size',
    '80',
    '--types',
    'mixed',
  ]);
  t.is(load.code, 0, load.stderr);
  const created = await cliJson<{ id: string; sha256: string }>([
    'snapshots',
    'create',
    '--at',
    a.address,
    '--wait',
  ]);
  t.is(created.code, 0);

  const archived = await cliJson<Archived>([
    'archive',
    '--at',
    a.address,
    '--id',
    created.json.id,
    '--bucket',
    s3.bucket,
    '--prefix',
    'cli',
  ]);
  t.is(archived.code, 0, archived.raw.stderr);
  t.regex(
    archived.json.uri,
    /^s3:\/\/archives\/cli\/cli-a\/slots-0-16383\/seq-\d{20}-[a-z0-9-]+\/manifest\.json$/,
  );
  t.is(archived.json.sha256, created.json.sha256);
  // Without --json the URI is the last line, ready for `restore`.
  const human = await cli([
    'archive',
    '--at',
    a.address,
    '--id',
    created.json.id,
    '--bucket',
    s3.bucket,
    '--prefix',
    'cli',
  ]);
  t.is(human.code, 0, human.stderr);
  t.is(human.stdout.trim().split('\n').at(-1), archived.json.uri);

  const listed = await cliJson<{ archives: Archived[] }>([
    'archives',
    'list',
    '--bucket',
    s3.bucket,
    '--prefix',
    'cli',
    ...endpoint,
  ]);
  t.is(listed.code, 0, listed.raw.stderr);
  t.deepEqual(
    listed.json.archives.map((x) => x.uri),
    [archived.json.uri],
  );
  const viaNode = await cliJson<{ archives: Archived[] }>([
    'archives',
    'list',
    '--bucket',
    s3.bucket,
    '--at',
    b.address,
  ]);
  t.deepEqual(
    viaNode.json.archives.map((x) => x.uri),
    [archived.json.uri],
  );

  const verified = await cliJson<{ ok: boolean; sha256: string; chunks: number }>([
    'archives',
    'verify',
    archived.json.uri,
    ...endpoint,
  ]);
  t.is(verified.code, 0, verified.raw.stderr);
  t.is(verified.json.sha256, created.json.sha256);
  t.true(verified.json.chunks >= 1);

  const restored = await cliJson<{ ok: boolean; keysInstalled: number; sha256: string }>([
    'restore',
    '--to',
    b.address,
    archived.json.uri,
  ]);
  t.is(restored.code, 0, restored.raw.stderr);
  t.is(Number(restored.json.keysInstalled), 1500);
  const [da, db] = await Promise.all([
    cliJson<{ digest: string }>(['digest', '--at', a.address]),
    cliJson<{ digest: string }>(['digest', '--at', b.address]),
  ]);
  t.is(db.json.digest, da.json.digest);

  // Failures keep their codes: NOT_FOUND exits 3, refused credentials 9.
  const missing = await cliJson<{ ok: boolean; error: { code: string } }>([
    'archives',
    'list',
    '--bucket',
    'no-such-bucket',
    ...endpoint,
  ]);
  t.is(missing.code, 3);
  t.is(missing.json.error.code, 'not_found');
  const denied = await cliWithEnv(
    ['archives', 'verify', archived.json.uri, ...endpoint, '--json'],
    { AWS_ACCESS_KEY_ID: 'WRONG' },
  );
  t.is(denied.code, 9, denied.stdout);
  t.regex(denied.stdout, /"code":"permission_denied"/);

  const deleted = await cliJson(['archives', 'delete', archived.json.uri, ...endpoint]);
  t.is(deleted.code, 0, deleted.raw.stderr);
  const after = await cliJson<{ archives: Archived[] }>([
    'archives',
    'list',
    '--bucket',
    s3.bucket,
    ...endpoint,
  ]);
  t.deepEqual(after.json.archives, []);
  const gone = await cliJson(['restore', '--to', b.address, archived.json.uri]);
  t.is(gone.code, 3);
});

test('serve takes the archive schedule flags (as docker-compose passes them) and archives on its own', async (t) => {
  const s3 = await s3For(t);
  const dir = await tempDirFor(t);
  const half = await cli(['serve', '--data-dir', dir, '--archive-every', '1m']);
  t.is(half.code, 2, 'an interval without a bucket is a usage error');

  const node = await serve(t, [
    '--backend',
    'memory',
    '--node-id',
    'cli-sched',
    '--archive-every',
    '300ms',
    '--archive-bucket',
    s3.bucket,
    '--archive-prefix',
    'sched',
    '--archive-keep',
    '1',
    '--s3-endpoint',
    s3.endpoint,
  ]);
  const targets = new S3Targets(resolveS3Settings(s3.settings));
  t.teardown(() => targets.close());
  const target = targets.open(s3.bucket);
  const archived = (): Promise<Array<{ seq: number; id: string }>> =>
    listArchives(target, 'sched').then((list) =>
      list.map((r) => ({ seq: r.manifest.snapshot.seq, id: r.manifest.snapshot.id })),
    );

  t.is((await cli(['load', '--to', node.address, '--keys', '200', '--value-size', '16'])).code, 0);
  const first = await waitFor(async () => (await archived())[0], 15_000, 100);
  t.truthy(first, 'a first archive appears');
  t.is(
    (await cli(['load', '--to', node.address, '--keys', '50', '--value-size', '16', '--seed', '2']))
      .code,
    0,
  );
  // The schedule catches up with the second load, and the retention keeps only that one.
  const stats = await cli(['stats', '--at', node.address, '--json']);
  const seq = Number((JSON.parse(stats.stdout) as { seq: number }).seq);
  const kept = await waitFor(
    async () => {
      const list = await archived();
      return list.length === 1 && list[0]?.seq === seq ? list : undefined;
    },
    15_000,
    100,
  );
  t.truthy(
    kept,
    `--archive-keep 1 keeps only the newest (seq ${seq}): ${JSON.stringify(await archived())}`,
  );
  t.true(seq > (first?.seq ?? 0));
});
