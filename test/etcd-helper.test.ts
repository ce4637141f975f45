import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import test from 'ava';
import { startEtcd } from './helpers/etcd';

const ROOT = join(__dirname, '..');

/** True while `pid` is a live process (a zombie waiting for its reaper counts as gone). */
async function processAlive(pid: number): Promise<boolean> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2, text.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function connect(endpoints: string): Promise<void> {
  const [host = '', port = ''] = endpoints.split(':');
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host, port: Number(port) });
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('error', reject);
  });
}

async function gone(pid: number, ms = 5_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!(await processAlive(pid))) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return !(await processAlive(pid));
}

test('a started etcd serves etcdctl, keeps its data over a restart, and survives a kill', async (t) => {
  const etcd = await startEtcd(t);
  t.regex(etcd.endpoints, /^127\.0\.0\.1:\d+$/);
  t.true(await processAlive(etcd.pid));

  await etcd.put('/shardsnap/test/a', 'one');
  await etcd.put('/shardsnap/test/b', 'two\nlines and "quotes"');
  await etcd.put('/shardsnap/other', 'x');
  t.is(await etcd.get('/shardsnap/test/a'), 'one');
  t.is(await etcd.get('/shardsnap/test/missing'), undefined);
  t.deepEqual(
    await etcd.getPrefix('/shardsnap/test/'),
    new Map([
      ['/shardsnap/test/a', 'one'],
      ['/shardsnap/test/b', 'two\nlines and "quotes"'],
    ]),
  );
  t.is((await etcd.getPrefix('')).size, 3, 'an empty prefix reads every key');

  const firstPid = etcd.pid;
  await etcd.restart();
  t.not(etcd.pid, firstPid);
  t.false(await processAlive(firstPid));
  t.is(await etcd.get('/shardsnap/test/a'), 'one', 'a graceful restart keeps the data');

  await etcd.put('/shardsnap/test/c', 'three');
  const killedPid = etcd.pid;
  await etcd.kill();
  t.false(await processAlive(killedPid));
  await t.throwsAsync(connect(etcd.endpoints), { code: 'ECONNREFUSED' }, 'nothing listens');

  await etcd.restart();
  t.is(await etcd.get('/shardsnap/test/c'), 'three', 'a write acknowledged before a kill stays');
  t.true((await stat(etcd.dataDir)).isDirectory());
});

test('two etcds run side by side on their own ports and data', async (t) => {
  const [one, two] = await Promise.all([startEtcd(t), startEtcd(t)]);
  t.not(one.endpoints, two.endpoints);
  t.not(one.dataDir, two.dataDir);
  await one.put('k', 'from one');
  await two.put('k', 'from two');
  t.is(await one.get('k'), 'from one');
  t.is(await two.get('k'), 'from two');
});

test('close kills etcd and removes its data dir; stop is graceful', async (t) => {
  const etcd = await startEtcd();
  t.teardown(() => etcd.close());
  await etcd.put('k', 'v');
  const pid = etcd.pid;
  await etcd.stop();
  t.false(await processAlive(pid));
  await etcd.close();
  await t.throwsAsync(stat(etcd.dataDir), { code: 'ENOENT' });
});

test('an etcd is not left behind when its process exits without stopping it', async (t) => {
  const script = [
    "const { startEtcd } = require('./test/helpers/etcd');",
    'startEtcd().then((etcd) => {',
    '  process.stdout.write(JSON.stringify({ pid: etcd.pid, dataDir: etcd.dataDir }));',
    '  process.exit(0);',
    '});',
  ].join('\n');
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      ['--import=tsx', '-e', script],
      { cwd: ROOT, timeout: 30_000 },
      (error, out, err) => (error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out)),
    ),
  );
  const { pid, dataDir } = JSON.parse(stdout) as { pid: number; dataDir: string };
  t.teardown(async () => {
    // Only if that pid is still this etcd, not a process that reused the number.
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(dataDir)) process.kill(pid, 'SIGKILL');
  });
  t.true(await gone(pid), `etcd ${pid} still runs`);
  await t.throwsAsync(stat(dataDir), { code: 'ENOENT' });
});
