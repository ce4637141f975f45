/**
 * The README's "A 5-minute tour", run as printed: its shell blocks in order in one bash
 * (background nodes included), then its TypeScript blocks against the nodes the shell
 * started, importing 'shardsnap' as a user's project does.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { tempDirFor } from './helpers/harness';

const ROOT = join(__dirname, '..');
const TSX = join(ROOT, 'node_modules', 'tsx', 'dist', 'cli.mjs');

test.before(() => {
  if (!existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'))) {
    throw new Error('the CLI is not built: run `make build` first');
  }
});

interface Block {
  lang: 'sh' | 'ts';
  code: string;
}

/** The fenced sh and ts blocks of one `## ` section, in order. */
function blocksOf(readme: string, heading: string): Block[] {
  const start = readme.indexOf(`\n${heading}\n`);
  if (start === -1) throw new Error(`README has no "${heading}" section`);
  const end = readme.indexOf('\n## ', start + heading.length + 2);
  const section = readme.slice(start, end === -1 ? undefined : end);
  return [...section.matchAll(/^```(sh|ts)\n([\s\S]*?)^```$/gm)].map((match) => ({
    lang: match[1] as 'sh' | 'ts',
    code: match[2] as string,
  }));
}

/** The ports the tour's nodes listen on, as it prints them. */
function portsOf(shell: string): number[] {
  return [...shell.matchAll(/--listen 127\.0\.0\.1:(\d+)/g)].map((match) => Number(match[1]));
}

async function isFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

interface Run {
  code: number | null;
  output: string;
}

/** Runs a process to its exit (not until its pipes close: background nodes keep them). */
function runToExit(
  child: ChildProcess,
  timeoutMs: number,
  onOutput: (text: string) => void = () => undefined,
): Promise<Run> {
  let output = '';
  const collect = (data: Buffer): void => {
    output += data.toString();
    onOutput(data.toString());
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

/** Stops the nodes the tour left running, by pid: SIGTERM, then SIGKILL after 10 s. */
async function stopAll(t: ExecutionContext, pids: number[]): Promise<void> {
  const alive = (pid: number): boolean => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (pids.some(alive) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const pid of pids.filter(alive)) {
    t.log(`node ${pid} ignored SIGTERM`);
    process.kill(pid, 'SIGKILL');
  }
}

test('the README tour runs top to bottom as printed', async (t) => {
  t.timeout(10 * 60_000);
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const blocks = blocksOf(readme, '## A 5-minute tour');
  const shell = blocks.filter((block) => block.lang === 'sh');
  const scripts = blocks.filter((block) => block.lang === 'ts');
  t.true(shell.length >= 3 && scripts.length >= 2, 'the tour has shell and TypeScript blocks');

  const lines = shell.flatMap((block) => block.code.split('\n'));
  // The one step not run here: the build, which every CLI test needs done beforehand.
  const build = lines.filter((line) => /^make build\b/.test(line));
  t.is(build.length, 1);
  const tour = lines.filter((line) => !build.includes(line)).join('\n');
  for (const port of portsOf(tour)) {
    if (!(await isFree(port))) t.fail(`port ${port}, which the README's tour uses, is taken`);
  }

  // The tour's `mktemp -d` lands in this test's temp dir; the trap reports where the tour
  // ended up and which nodes it left in the background.
  const dir = await tempDirFor(t, 'shardsnap-tour-');
  const state = join(dir, 'state');
  await mkdir(state);
  const script = [
    'set -euo pipefail',
    `trap 'jobs -p > "${state}/pids"; pwd > "${state}/cwd"' EXIT`,
    tour,
  ].join('\n');
  const env: NodeJS.ProcessEnv = { ...process.env, TMPDIR: dir };
  delete env.SHARDSNAP_ADDR;
  delete env.SHARDSNAP_CONNECT_TIMEOUT;
  delete env.SHARDSNAP_TOKEN;
  const bash = spawn('bash', ['-c', script], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let pids: number[] = [];
  t.teardown(() => stopAll(t, pids));
  const ran = await runToExit(bash, 8 * 60_000);
  const readState = async (name: string): Promise<string> =>
    readFile(join(state, name), 'utf8').catch(() => '');
  pids = (await readState('pids'))
    .split('\n')
    .filter((line) => /^\d+$/.test(line))
    .map(Number);
  t.is(ran.code, 0, `the tour's shell steps failed:\n${ran.output}`);
  t.true(pids.length >= 5, `the tour's nodes run in the background (${pids.join(' ')})`);
  t.regex(ran.output, /listening on 127\.0\.0\.1:7420/);
  t.regex(ran.output, /moved slots 0-8191 from 127\.0\.0\.1:7420 to 127\.0\.0\.1:7422/);
  // The nodes' logs went to their files, not into the commands' output.
  t.notRegex(ran.output, /"level":/);
  const scratch = (await readState('cwd')).trim();
  t.true(scratch.startsWith(dir), scratch);
  t.true(existsSync(join(scratch, 'a.log')));

  // The scripts import 'shardsnap' as a project that installed it does.
  await mkdir(join(scratch, 'node_modules'));
  await symlink(ROOT, join(scratch, 'node_modules', 'shardsnap'), 'dir');
  const outputs: string[] = [];
  for (const [i, block] of scripts.entries()) {
    const file = join(scratch, `tour-${i + 1}.mts`);
    await writeFile(file, block.code);
    const run = await runToExit(
      spawn(process.execPath, [TSX, file], {
        cwd: scratch,
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
      3 * 60_000,
    );
    t.is(run.code, 0, `TypeScript block ${i + 1} failed:\n${run.output}`);
    outputs.push(run.output);
  }
  t.regex(outputs[0] ?? '', /installed \d+ keys/);
  t.regex(outputs[1] ?? '', /keys moved, writes paused \d+ ms/);
  t.true(existsSync(join(scratch, 'half.snap')), 'the first script fetched its file');
});
