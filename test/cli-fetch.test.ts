/**
 * `shardsnap fetch` as a user meets it: part files that cannot resume, nothing left
 * behind by a failed start, the progress line in a real terminal (tmux), Ctrl-C, `--out -`,
 * and the snapshots retried fetches leave on the source. The CLI is the built one
 * (`npx tsc -p tsconfig.json` first); the nodes run in the test process, throttled so that
 * a transfer lasts a few seconds.
 */
import test, { type ExecutionContext } from 'ava';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotInfo__Output } from '../src/generated/shardsnap/v1/SnapshotInfo';
import { ProgressLine } from '../src/cli/progress';
import { fetchToFile } from '../src/transfer';
import { verifyArtifactFile } from '../src/snapshot';
import type { Connection } from '../src/wire';
import { mutationsToWire } from '../src/wire/convert';
import { BIN } from './helpers/cli';
import {
  nodeFor,
  rawUnary,
  slowScan,
  strategiesWith,
  stringSets,
  tempDirFor,
  waitFor,
} from './helpers/harness';
import type { TestNode } from './helpers/nodes';

const MiB = 1 << 20;
/** The source's send rate: a few MiB take a few seconds. */
const RATE = 2 * MiB;
const SHOW_CURSOR = '\x1b[?25h';
const HIDE_CURSOR = '\x1b[?25l';

// --- nodes and data ----------------------------------------------------------------------

/** A throttled node holding ~`bytes` of data; `slowBuild`: its snapshots take ~1 s to build. */
async function source(
  t: ExecutionContext,
  bytes = 5 * MiB,
  options: { slowBuild?: boolean } = {},
): Promise<TestNode> {
  const node = await nodeFor(t, {
    maxSendRate: RATE,
    ...(options.slowBuild
      ? {
          strategies: strategiesWith(slowScan({ batch: 100, delayMs: 80 })).prefer('memory', [
            'slow-scan',
          ]),
        }
      : {}),
  });
  const all = stringSets('k', Math.ceil(bytes / 4096), 4096);
  for (let from = 0; from < all.length; from += 256) {
    const batch = mutationsToWire(all.slice(from, from + 256));
    await rawUnary((cb) => node.client.connection.shard.Write({ mutations: batch }, cb));
  }
  return node;
}

async function unary<T>(invoke: Parameters<typeof rawUnary<T>>[0]): Promise<T> {
  const result = await rawUnary<T>(invoke);
  if (!result.ok) throw result.error;
  return result.value;
}

async function snapshotsOn(conn: Connection): Promise<SnapshotInfo__Output[]> {
  const response = await unary<{ snapshots: SnapshotInfo__Output[] }>((cb) =>
    conn.snapshots.ListSnapshots({}, cb),
  );
  return response.snapshots;
}

async function readySnapshot(conn: Connection): Promise<SnapshotInfo__Output> {
  const created = await unary<SnapshotInfo__Output>((cb) =>
    conn.snapshots.CreateSnapshot({ slots: [] }, cb),
  );
  const ready = await waitFor(async () => {
    const info = await unary<SnapshotInfo__Output>((cb) =>
      conn.snapshots.GetSnapshot({ snapshotId: created.id }, cb),
    );
    return info.state === 'READY' ? info : undefined;
  }, 10_000);
  if (!ready) throw new Error(`snapshot ${created.id} did not become READY`);
  return ready;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

// --- the CLI as a child process ------------------------------------------------------------

interface Run {
  child: ChildProcess;
  stdout: () => Buffer;
  stderr: () => string;
  exited: Promise<number>;
}

/** `shardsnap ...args` with pipes (no terminal); killed by its pid if still running at the end. */
function run(t: ExecutionContext, args: readonly string[], cwd?: string): Run {
  const child = spawn(process.execPath, [BIN, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(cwd ? { cwd } : {}),
  });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (data: Buffer) => out.push(data));
  child.stderr.on('data', (data: Buffer) => (err += data.toString()));
  const exited = new Promise<number>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGKILL' ? 137 : -1))),
  );
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => Buffer.concat(out), stderr: () => err, exited };
}

/** Runs to the end, bounded. */
async function runToEnd(
  t: ExecutionContext,
  args: readonly string[],
  cwd?: string,
  timeoutMs = 20_000,
): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  const r = run(t, args, cwd);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
  const code = await r.exited;
  clearTimeout(timer);
  return { code, stdout: r.stdout(), stderr: r.stderr() };
}

/** Verified bytes in `<out>.part` (a sequential fetch's part is a gapless prefix). */
const partBytes = (out: string): Promise<number> =>
  stat(`${out}.part`).then(
    (s) => s.size,
    () => 0,
  );

/** Starts a fetch and stops it with `signal` once it added bytes to its part file. */
async function interruptAfterBytes(
  t: ExecutionContext,
  args: readonly string[],
  out: string,
  signal: NodeJS.Signals = 'SIGINT',
): Promise<{ code: number; stderr: string; kept: number }> {
  const before = await partBytes(out);
  const r = run(t, args);
  t.true(
    await waitFor(async () => (await partBytes(out)) > before, 10_000),
    `some bytes arrived: ${r.stderr()}`,
  );
  r.child.kill(signal);
  const code = await r.exited;
  return { code, stderr: r.stderr(), kept: await partBytes(out) };
}

/** The command a hint prints (`shardsnap ...` on its own line), as arguments. */
function hintedCommand(text: string): string[] {
  const line = text.split('\n').find((l) => l.trim().startsWith('shardsnap '));
  if (!line) throw new Error(`no command in: ${text}`);
  return line.trim().split(/\s+/).slice(1);
}

// --- a real terminal -----------------------------------------------------------------------

let sessions = 0;

interface Terminal {
  /** Everything the program wrote to the terminal, escapes included. */
  raw(): Promise<string>;
  /** The screen as it stands. */
  screen(): Promise<string>;
  ctrlC(): Promise<void>;
  /** Resolves with the program's exit status. */
  exited(timeoutMs?: number): Promise<number | undefined>;
}

/** `socket`: a path in the test's temp dir, so that nothing is left once it is removed. */
function tmux(socket: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('tmux', ['-S', socket, '-f', '/dev/null', ...args], (error, stdout, stderr) =>
      error
        ? reject(new Error(`tmux ${args.join(' ')}: ${stderr || error.message}`))
        : resolve(stdout),
    ),
  );
}

/**
 * Runs `shardsnap ...args` in a tmux pane of `width` columns with its own server (killed
 * when the test ends). The program waits for a go file so that the pane's output is
 * captured from its first byte.
 */
async function inTerminal(
  t: ExecutionContext,
  args: readonly string[],
  width = 80,
): Promise<Terminal> {
  const dir = await tempDirFor(t, 'shardsnap-tty-');
  const socket = join(dir, `tmux-${++sessions}`);
  const rawFile = join(dir, 'raw');
  const go = join(dir, 'go');
  const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  // The exit code is recorded by a parent that ignores the terminal's Ctrl-C (the CLI gets
  // it alone): tmux's own record of a dead pane's status is not always there.
  const exitFile = join(dir, 'exit');
  const wrapper = join(dir, 'wrapper.js');
  await writeFile(
    wrapper,
    [
      "const { spawn } = require('node:child_process');",
      "const { writeFileSync } = require('node:fs');",
      "const { constants } = require('node:os');",
      "process.on('SIGINT', () => undefined);",
      "const child = spawn(process.execPath, process.argv.slice(3), { stdio: 'inherit' });",
      "child.on('exit', (code, signal) => {",
      '  const status = code ?? 128 + (constants.signals[signal] ?? 0);',
      '  writeFileSync(process.argv[2], String(status));',
      '  process.exit(status);',
      '});',
    ].join('\n'),
  );
  const command =
    `while [ ! -e ${quote(go)} ]; do sleep 0.02; done; ` +
    `exec ${[process.execPath, wrapper, exitFile, BIN, ...args].map(quote).join(' ')}`;
  t.teardown(() => tmux(socket, ['kill-server']).catch(() => undefined));
  await tmux(socket, [
    'new-session',
    '-d',
    '-s',
    'fetch',
    '-x',
    String(width),
    '-y',
    '24',
    `sh -c ${quote(command)}`,
    ';',
    'set-option',
    '-t',
    'fetch',
    'remain-on-exit',
    'on',
    ';',
    'pipe-pane',
    '-t',
    'fetch',
    '-o',
    `cat >> ${quote(rawFile)}`,
  ]);
  await import('node:fs/promises').then((fs) => fs.writeFile(go, ''));
  // An object, not the code: waitFor wants a truthy value, and 0 is the code of success.
  const status = async (): Promise<{ code: number } | undefined> => {
    const recorded = await readFile(exitFile, 'utf8').catch(() => '');
    return /^\d+$/.test(recorded) ? { code: Number(recorded) } : undefined;
  };
  return {
    raw: () => readFile(rawFile, 'utf8').catch(() => ''),
    screen: () => tmux(socket, ['capture-pane', '-p', '-t', 'fetch']),
    ctrlC: async () => {
      await tmux(socket, ['send-keys', '-t', 'fetch', 'C-c']);
    },
    exited: async (timeoutMs = 20_000) => {
      const ended = await waitFor(status, timeoutMs, 50);
      // The pipe may still be writing the last bytes out.
      await new Promise((resolve) => setTimeout(resolve, 200));
      return ended?.code;
    },
  };
}

/** The lines drawn on the terminal: split at carriage returns and newlines, escapes removed. */
function drawnLines(raw: string): string[] {
  // eslint-disable-next-line no-control-regex
  const plain = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  return plain.split(/\r|\n/).filter((line) => line.length > 0);
}

// --- 1. a part file that cannot resume -------------------------------------------------------

test.serial(
  'a part file whose snapshot is gone, or of another snapshot, is refused with the command that starts over',
  async (t) => {
    const node = await source(t);
    const conn = node.client.connection;
    const dir = await tempDirFor(t);
    const out = join(dir, 'x.snap');
    const first = await readySnapshot(conn);
    const args = ['fetch', '--from', node.node.address, '--id', first.id, '--out', out];

    const stopped = await interruptAfterBytes(t, args, out);
    t.is(stopped.code, 130, stopped.stderr);
    t.true(stopped.kept > 0);

    // Another snapshot named for the same file: the part is not its bytes.
    const other = await readySnapshot(conn);
    const mismatch = await runToEnd(t, [
      'fetch',
      '--from',
      node.node.address,
      '--id',
      other.id,
      '--out',
      out,
    ]);
    t.is(mismatch.code, 5, mismatch.stderr);
    t.regex(
      mismatch.stderr,
      new RegExp(`holds .* of snapshot ${first.id}, not of snapshot ${other.id}`),
    );
    t.true(hintedCommand(mismatch.stderr).includes('--restart'));

    // The snapshot of the part is gone: refused before anything is written.
    await unary((cb) => conn.snapshots.DeleteSnapshot({ snapshotId: first.id, force: true }, cb));
    const before = await stat(`${out}.part`);
    const gone = await runToEnd(t, args);
    t.is(gone.code, 3, gone.stderr);
    t.regex(
      gone.stderr,
      /x\.snap\.part holds \d+ bytes of snapshot .* which is not on node .*: it cannot resume/,
    );
    const restart = hintedCommand(gone.stderr);
    t.true(restart.includes('--restart'));
    t.false(restart.includes('--id'), 'the gone snapshot is not named again');
    const after = await stat(`${out}.part`);
    t.is(after.size, before.size);
    t.is(after.mtimeMs, before.mtimeMs, 'the part file was not touched');

    // The command of the hint starts over and completes.
    const again = await runToEnd(t, [...restart, '--json']);
    t.is(again.code, 0, again.stderr);
    const result = JSON.parse(again.stdout.toString()) as { resumedFrom: number; sha256: string };
    t.is(result.resumedFrom, 0);
    t.is((await verifyArtifactFile(out, result.sha256)).sha256, result.sha256);
    t.deepEqual((await readdir(dir)).sort(), ['x.snap', 'x.snap.json']);
  },
);

test.serial(
  'a part file fetched from another node is refused, not thrown away, and --restart fetches from this one',
  async (t) => {
    const a = await source(t);
    const b = await source(t, MiB);
    const dir = await tempDirFor(t);
    const out = join(dir, 'y.snap');
    const stopped = await interruptAfterBytes(
      t,
      ['fetch', '--from', a.node.address, '--out', out],
      out,
    );
    t.is(stopped.code, 130, stopped.stderr);
    const elsewhere = await runToEnd(t, ['fetch', '--from', b.node.address, '--out', out]);
    t.is(elsewhere.code, 3, elsewhere.stderr);
    t.true(elsewhere.stderr.includes(`the bytes came from ${a.node.address}`), elsewhere.stderr);
    t.is(await partBytes(out), stopped.kept, 'the part is kept');
    const restarted = await runToEnd(t, hintedCommand(elsewhere.stderr));
    t.is(restarted.code, 0, restarted.stderr);
    // The snapshot the abandoned part was fetching is on the other node: it stays there
    // (until its TTL), while this node keeps none.
    t.deepEqual(await snapshotsOn(b.client.connection), []);
  },
);

// --- 2. nothing before the first verified chunk ----------------------------------------------

test.serial('an unknown --id leaves nothing behind', async (t) => {
  const node = await source(t, MiB);
  const dir = await tempDirFor(t);
  const result = await runToEnd(t, [
    'fetch',
    '--from',
    node.node.address,
    '--id',
    'mx00000a-0123abcd',
    '--out',
    join(dir, 'none.snap'),
  ]);
  t.is(result.code, 3, result.stderr);
  t.regex(result.stderr, /snapshot mx00000a-0123abcd not found/);
  t.deepEqual(await readdir(dir), []);
});

test.serial(
  'a fetch stopped before its first chunk creates no part file and deletes the snapshot it made',
  async (t) => {
    const node = await source(t, MiB);
    const dir = await tempDirFor(t);
    const out = join(dir, 'early.snap');
    const controller = new AbortController();
    const phases: string[] = [];
    const error = await t.throwsAsync(
      fetchToFile(node.client.connection, {
        out,
        signal: controller.signal,
        // The first status comes before the stream starts: no byte has arrived.
        onStatus: (status) => {
          phases.push(status.phase);
          controller.abort();
        },
      }),
    );
    t.is((error as { code?: string }).code, 'cancelled', String(error));
    t.is(phases[0], 'building');
    t.deepEqual(await readdir(dir), []);
    t.deepEqual(await snapshotsOn(node.client.connection), []);
  },
);

// --- 3. progress -----------------------------------------------------------------------------

test.serial(
  'in a terminal the progress line shows building, then an ETA, then verifying, within the width',
  async (t) => {
    const node = await source(t, 5 * MiB, { slowBuild: true });
    const dir = await tempDirFor(t);
    for (const width of [80, 50]) {
      const out = join(dir, `w${width}.snap`);
      const term = await inTerminal(t, ['fetch', '--from', node.node.address, '--out', out], width);
      t.is(await term.exited(), 0, await term.screen());
      const raw = await term.raw();
      const lines = drawnLines(raw);
      const building = lines.findIndex((l) => /^fetch +building .*~\d+%/.test(l));
      const eta = lines.findIndex((l) => / ETA \d+:\d\d/.test(l));
      const verifying = lines.findIndex((l) => /^fetch +verifying/.test(l));
      t.true(building >= 0, `a building line with an estimate:\n${lines.join('\n')}`);
      t.true(eta > building, 'then an ETA');
      t.true(verifying > eta, 'then verifying');
      const progress = lines.filter((l) => l.startsWith('fetch '));
      for (const line of progress) t.true(line.length < width, `${line.length} columns: ${line}`);
      t.true(
        raw.includes(HIDE_CURSOR) && raw.lastIndexOf(SHOW_CURSOR) > raw.lastIndexOf(HIDE_CURSOR),
      );
      t.true(lines.some((l) => /^fetched snapshot .* to .*w\d+\.snap/.test(l)));
    }
  },
);

test.serial(
  'without a terminal no progress is drawn; with --json nothing but the JSON',
  async (t) => {
    const node = await source(t, MiB);
    const dir = await tempDirFor(t);
    const plain = await runToEnd(t, [
      'fetch',
      '--from',
      node.node.address,
      '--out',
      join(dir, 'a.snap'),
    ]);
    t.is(plain.code, 0, plain.stderr);
    t.is(plain.stderr, '');
    t.regex(plain.stdout.toString(), /^fetched snapshot \S+ .* sha256 [0-9a-f]{64}\n$/);
    const json = await runToEnd(t, [
      'fetch',
      '--from',
      node.node.address,
      '--out',
      join(dir, 'b.snap'),
      '--json',
    ]);
    t.is(json.code, 0, json.stderr);
    t.is(json.stderr, '');
    t.true((JSON.parse(json.stdout.toString()) as { ok: boolean }).ok);
  },
);

test('the rate and the ETA count only the bytes this run moved, not the resumed ones', (t) => {
  let clock = 0;
  const written: string[] = [];
  const line = new ProgressLine(
    'fetch',
    'bytes',
    { write: (text: string) => written.push(text), isTTY: true, columns: 80 },
    () => clock,
  );
  // 90 MiB were on file from an earlier run; this one moves 1 MiB a second.
  line.set({ done: 90 * MiB, total: 100 * MiB, base: 90 * MiB });
  clock = 2_000;
  line.set({ done: 92 * MiB, total: 100 * MiB, base: 90 * MiB });
  const drawn = line.render();
  t.regex(drawn, / 1\.0 MiB\/s ETA 0:08$/, drawn);
  t.true(drawn.length < 80);
  for (const columns of [40, 30, 20]) {
    const narrow = line.render(columns - 1);
    t.true(narrow.length < columns, `${columns}: ${narrow}`);
  }
  line.stop();
  t.true(written.join('').endsWith(`\n${SHOW_CURSOR}`));
});

// --- 4. Ctrl-C --------------------------------------------------------------------------------

test.serial(
  'Ctrl-C restores the terminal, says how to resume, exits 130 and ends the stream on the node',
  async (t) => {
    const node = await source(t);
    const dir = await tempDirFor(t);
    const out = join(dir, 'c.snap');
    const term = await inTerminal(t, ['fetch', '--from', node.node.address, '--out', out]);
    t.true(await waitFor(async () => / ETA /.test(await term.raw()), 10_000), await term.screen());
    await term.ctrlC();
    t.is(await term.exited(10_000), 130, await term.screen());
    const raw = await term.raw();
    t.true(
      raw.lastIndexOf(SHOW_CURSOR) > raw.lastIndexOf(HIDE_CURSOR),
      'the cursor is shown again',
    );
    const text = drawnLines(raw).join('\n');
    t.regex(text, /fetch interrupted: .*c\.snap\.part keeps \d.* of snapshot \S+; resume with:/);
    t.true(
      await waitFor(() => node.node.transfers.count('send') === 0, 3_000),
      'no stream left on the node',
    );
    // The hint's command resumes (the screen wraps long lines: the raw output does not).
    const resume = hintedCommand(text);
    t.deepEqual(resume, ['fetch', '--from', node.node.address, '--out', out]);
    const resumed = await runToEnd(t, [...resume, '--json']);
    t.is(resumed.code, 0, resumed.stderr);
    t.true((JSON.parse(resumed.stdout.toString()) as { resumedFrom: number }).resumedFrom > 0);
  },
);

// --- 5. --out - -------------------------------------------------------------------------------

test.serial('--out - writes the verified artifact to stdout and nothing else', async (t) => {
  const node = await source(t, 3 * MiB);
  const conn = node.client.connection;
  const dir = await tempDirFor(t, 'shardsnap-stdout-');
  const named = await readySnapshot(conn);
  // Run where a file named "-" would show up.
  const byId = await runToEnd(
    t,
    ['fetch', '--from', node.node.address, '--id', named.id, '--out', '-'],
    dir,
  );
  t.is(byId.code, 0, byId.stderr);
  t.is(byId.stdout.length, Number(named.sizeBytes));
  t.is(sha256(byId.stdout), named.sha256);
  t.regex(byId.stderr, /^fetched snapshot \S+ .* to stdout: .* sha256 [0-9a-f]{64}\n$/);

  const created = await runToEnd(
    t,
    ['fetch', '--from', node.node.address, '--out', '-', '--json'],
    dir,
  );
  t.is(created.code, 0, created.stderr);
  const summary = JSON.parse(created.stderr) as { sha256: string; bytes: number; path: string };
  t.is(summary.path, '-');
  t.is(created.stdout.length, summary.bytes);
  t.is(sha256(created.stdout), summary.sha256);
  t.deepEqual(
    (await snapshotsOn(conn)).map((s) => s.id),
    [named.id],
    'the snapshot made for stdout is deleted',
  );
  t.deepEqual(await readdir(dir), []);

  const restart = await runToEnd(t, [
    'fetch',
    '--from',
    node.node.address,
    '--out',
    '-',
    '--restart',
  ]);
  t.is(restart.code, 2, restart.stderr);
  t.regex(restart.stderr, /cannot resume/);
  t.is(restart.stdout.length, 0);
});

// --- 6. snapshots left by retried fetches --------------------------------------------------

test.serial(
  'interrupted and killed fetches resume one snapshot, and the completed fetch deletes it',
  async (t) => {
    const node = await source(t);
    const conn = node.client.connection;
    const dir = await tempDirFor(t);
    const out = join(dir, 'retried.snap');
    const args = ['fetch', '--from', node.node.address, '--out', out];
    const ids = new Set<string>();
    for (const signal of ['SIGINT', 'SIGINT', 'SIGKILL', 'SIGINT'] as const) {
      const stopped = await interruptAfterBytes(t, args, out, signal);
      t.is(stopped.code, signal === 'SIGINT' ? 130 : 137, stopped.stderr);
      const state = JSON.parse(await readFile(`${out}.part.json`, 'utf8')) as {
        snapshotId: string;
      };
      ids.add(state.snapshotId);
      const on = await snapshotsOn(conn);
      t.true(on.length <= 1, `${on.length} snapshots on the source after a ${signal}`);
    }
    t.is(ids.size, 1, 'every run resumed the snapshot of the first');
    const done = await runToEnd(t, [...args, '--json']);
    t.is(done.code, 0, done.stderr);
    t.true((JSON.parse(done.stdout.toString()) as { resumedFrom: number }).resumedFrom > 0);
    t.deepEqual(await snapshotsOn(conn), [], 'the completed fetch deleted its snapshot');

    const kept = await runToEnd(t, [
      ...args.slice(0, -1),
      join(dir, 'kept.snap'),
      '--keep',
      '--json',
    ]);
    t.is(kept.code, 0, kept.stderr);
    const result = JSON.parse(kept.stdout.toString()) as { info: { id: string } };
    t.deepEqual(
      (await snapshotsOn(conn)).map((s) => s.id),
      [result.info.id],
      '--keep keeps it',
    );
  },
);
