/**
 * The published package: its root is the client and loads nothing of the node; the node's
 * parts resolve through the `exports` subpaths; the tarball holds what a user needs.
 * Runs against the build (dist/), as a user of the package would.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { tempDirFor } from './helpers/harness';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');
const ENTRY = join(ROOT, 'dist', 'src', 'index.js');

/** Modules a client has no use for: the node's logging, metrics, reflection, storage, S3. */
const NODE_ONLY = [
  /node_modules\/@grpc\/reflection\//,
  /node_modules\/prom-client\//,
  /node_modules\/pino\//,
  /node_modules\/@aws-sdk\//,
  /shardsnap_rocksdb\.node$/,
  /shardsnap_segments\.node$/,
  /\/dist\/src\/(server|store|archive|migration|ownership|changes|strategies|build|cli)\//,
];

/** What requiring `file` in a fresh process loads: files in require.cache, and builtins. */
async function loadedBy(
  file: string,
): Promise<{ files: string[]; builtins: string[]; exports: string[] }> {
  const script = `
    const m = require(${JSON.stringify(file)});
    process.stdout.write(JSON.stringify({
      files: Object.keys(require.cache),
      builtins: process.moduleLoadList.filter((x) => x.startsWith('NativeModule ')),
      exports: Object.keys(m),
    }));`;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: ROOT, timeout: 30_000 });
  return JSON.parse(stdout) as { files: string[]; builtins: string[]; exports: string[] };
}

test('the package root loads the client only', async (t) => {
  t.true(existsSync(ENTRY), 'built (npx tsc -p tsconfig.json)');
  const loaded = await loadedBy(ENTRY);
  for (const pattern of NODE_ONLY) {
    t.deepEqual(
      loaded.files.filter((f) => pattern.test(f)),
      [],
      `nothing matching ${pattern} is loaded`,
    );
  }
  t.true(
    loaded.files.some((f) => f.includes('node_modules/@grpc/grpc-js/')),
    'gRPC is',
  );
  for (const name of ['ShardsnapClient', 'RoutingClient', 'migrateSlots', 'ShardsnapError']) {
    t.true(loaded.exports.includes(name), `exports ${name}`);
  }
  for (const name of ['ShardNode', 'MemoryStore', 'RocksDbStore', 'S3Target']) {
    t.false(loaded.exports.includes(name), `does not export ${name}`);
  }

  // The check sees those modules when they are loaded: the server entry loads them.
  const server = await loadedBy(join(ROOT, 'dist', 'src', 'server', 'index.js'));
  t.true(
    server.files.some((f) => NODE_ONLY[2]!.test(f)),
    'the server loads pino',
  );
  t.true(
    server.files.some((f) => NODE_ONLY[1]!.test(f)),
    'the server loads prom-client',
  );
});

test('every subpath export resolves, with its types, from a project that installed the package', async (t) => {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, string | { types: string; default: string }>;
  };
  const project = await tempDirFor(t, 'shardsnap-consumer-');
  await mkdir(join(project, 'node_modules'));
  await symlink(ROOT, join(project, 'node_modules', 'shardsnap'), 'dir');
  const subpaths = Object.keys(pkg.exports).filter((p) => p !== './package.json');
  t.true(subpaths.includes('./server') && subpaths.includes('./store'));
  const specifiers = subpaths.map((p) => (p === '.' ? 'shardsnap' : `shardsnap/${p.slice(2)}`));
  const script = `
    const out = {};
    for (const s of ${JSON.stringify(specifiers)}) {
      try { out[s] = require.resolve(s); } catch (e) { out[s] = 'ERROR ' + e.code; }
    }
    try { require.resolve('shardsnap/dist/src/server/index.js'); out.deep = 'resolved'; }
    catch (e) { out.deep = e.code; }
    process.stdout.write(JSON.stringify(out));`;
  const { stdout } = await run(process.execPath, ['-e', script], { cwd: project, timeout: 30_000 });
  const resolved = JSON.parse(stdout) as Record<string, string>;
  for (const subpath of subpaths) {
    const specifier = subpath === '.' ? 'shardsnap' : `shardsnap/${subpath.slice(2)}`;
    const entry = pkg.exports[subpath] as { types: string; default: string };
    t.is(resolved[specifier], join(ROOT, entry.default), specifier);
    t.true(existsSync(join(ROOT, entry.types)), `${specifier} has its types`);
  }
  t.is(resolved.deep, 'ERR_PACKAGE_PATH_NOT_EXPORTED', 'files outside the exports stay private');
});

test('the tarball holds the build, the contract, the CLI and the native sources only', async (t) => {
  t.timeout(60_000);
  const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    timeout: 60_000,
    maxBuffer: 64 << 20,
  });
  const [packed] = JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>;
  const files = packed!.files.map((f) => f.path);
  for (const needed of [
    'package.json',
    'README.md',
    'CHANGELOG.md',
    'bin/shardsnap',
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/src/server/index.js',
    'dist/src/cli/main.js',
    'proto/shardsnap/v1/shardsnap.proto',
    'native/binding.gyp',
  ]) {
    t.true(files.includes(needed), `ships ${needed}`);
  }
  t.true(
    files.some((f) => f.startsWith('native/src/') && f.endsWith('.cc')),
    'ships the native sources',
  );
  const unwanted = files.filter(
    (f) =>
      /^(src|test|bench|deploy|docs|scripts|dist\/test|dist\/bench|native\/build)/.test(f) ||
      f.endsWith('.map') ||
      f.endsWith('.node'),
  );
  t.deepEqual(unwanted, [], 'no sources, tests, builds of native code or source maps');
});
