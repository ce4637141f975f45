import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { type Command, CommanderError } from 'commander';
import { buildProgram } from '../src/cli/main';
import { parseDuration } from '../src/server/config';

const ROOT = join(__dirname, '..');
const COMPOSE_DIR = join(ROOT, 'deploy', 'compose');
const GEN_SECRETS = join(COMPOSE_DIR, 'gen-secrets.sh');
const INIT_MINIO = join(COMPOSE_DIR, 'init-minio.sh');
const NODES = ['node-memory', 'node-rocksdb'];
const LOCAL_IMAGE = 'shardsnap:local';
const run = promisify(execFile);

// --- A reader for the YAML that docker-compose.yml is written in --------------------------

type Yaml = string | null | Yaml[] | { [key: string]: Yaml };
type YamlMap = { [key: string]: Yaml };

interface Line {
  n: number;
  indent: number;
  text: string;
}

/** `raw` without a trailing comment (a `#` after a blank, outside quotes). */
function stripComment(raw: string): string {
  let quote = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    const prev = i === 0 ? ' ' : (raw[i - 1] as string);
    if (quote) {
      if (c === quote) quote = '';
    } else if ((c === "'" || c === '"') && /[\s[,]/.test(prev)) {
      quote = c;
    } else if (c === '#' && /\s/.test(prev)) {
      return raw.slice(0, i);
    }
  }
  return raw;
}

/**
 * Block mappings and sequences of plain or quoted scalars, one-line flow sequences,
 * anchors, aliases and `<<` merges: what docker-compose.yml uses. Anything else (block
 * scalars, flow mappings, mappings inside sequences, tabs) is an error, so the checks
 * below never read a file they do not understand.
 */
function parseYaml(source: string): Yaml {
  const lines: Line[] = [];
  source.split('\n').forEach((raw, i) => {
    if (raw.includes('\t')) throw new Error(`line ${i + 1}: tab`);
    const text = stripComment(raw).trimEnd();
    if (text.trim() === '') return;
    const body = text.trimStart();
    lines.push({ n: i + 1, indent: text.length - body.length, text: body });
  });
  const anchors = new Map<string, Yaml>();
  let pos = 0;
  const fail = (line: Line | undefined, why: string): never => {
    throw new Error(`line ${line?.n ?? 'at the end'}: ${why}`);
  };
  const isItem = (text: string): boolean => text === '-' || text.startsWith('- ');

  function scalar(text: string, line: Line): string {
    if (text.startsWith("'")) {
      if (!/^'(?:[^']|'')*'$/.test(text)) fail(line, 'unterminated single-quoted scalar');
      return text.slice(1, -1).replace(/''/g, "'");
    }
    if (text.startsWith('"')) {
      try {
        return JSON.parse(text) as string;
      } catch {
        return fail(line, 'double-quoted scalar beyond JSON escapes');
      }
    }
    if (/^[|>{!%@`&*]/.test(text)) fail(line, `unsupported: ${text}`);
    return text;
  }

  function flowSequence(text: string, line: Line): string[] {
    if (!text.endsWith(']')) fail(line, 'flow sequences must fit on one line');
    const items: string[] = [];
    let current = '';
    let quote = '';
    for (const c of text.slice(1, -1)) {
      if (quote) {
        if (c === quote) quote = '';
      } else if (c === "'" || c === '"') {
        quote = c;
      } else if (c === ',') {
        items.push(current.trim());
        current = '';
        continue;
      }
      current += c;
    }
    if (current.trim() !== '') items.push(current.trim());
    return items.map((item) => scalar(item, line));
  }

  /** The value after `key:` or `- ` (empty: a nested block, or null). */
  function value(text: string, line: Line, indent: number): Yaml {
    let anchor: string | undefined;
    const anchored = /^&([\w-]+)(?:\s+(.*))?$/.exec(text);
    if (anchored) {
      anchor = anchored[1];
      text = anchored[2] ?? '';
    }
    let result: Yaml;
    if (text === '') {
      const next = lines[pos];
      result = next && next.indent > indent ? block(next.indent) : null;
    } else if (text.startsWith('*')) {
      const name = text.slice(1);
      result = anchors.has(name)
        ? (anchors.get(name) as Yaml)
        : fail(line, `unknown alias ${text}`);
    } else {
      result = text.startsWith('[') ? flowSequence(text, line) : scalar(text, line);
    }
    if (anchor !== undefined) anchors.set(anchor, result);
    return result;
  }

  function sequence(indent: number): Yaml[] {
    const out: Yaml[] = [];
    while (pos < lines.length && lines[pos]?.indent === indent && isItem(lines[pos]!.text)) {
      const line = lines[pos++] as Line;
      const rest = line.text.slice(1).trim();
      if (/^[\w.-]+:(\s|$)/.test(rest)) fail(line, 'mappings inside sequences are not supported');
      out.push(value(rest, line, indent));
    }
    return out;
  }

  function mapping(indent: number): YamlMap {
    const out: YamlMap = {};
    const merges: YamlMap[] = [];
    while (pos < lines.length && lines[pos]?.indent === indent) {
      const line = lines[pos++] as Line;
      const match = /^([\w.<-]+|'[^']*'|"[^"]*"):(?:\s+(.*))?$/.exec(line.text);
      if (!match) return fail(line, 'expected "key: value"');
      const key = scalar(match[1] as string, line);
      const v = value(match[2] ?? '', line, indent);
      if (key === '<<') {
        merges.push(isMap(v) ? v : fail(line, '<< takes a mapping'));
      } else if (Object.hasOwn(out, key)) {
        fail(line, `duplicate key ${key}`);
      } else {
        out[key] = v;
      }
    }
    for (const merged of merges)
      for (const [key, v] of Object.entries(merged)) if (!Object.hasOwn(out, key)) out[key] = v;
    return out;
  }

  function block(indent: number): Yaml {
    const result = isItem(lines[pos]?.text ?? '') ? sequence(indent) : mapping(indent);
    const next = lines[pos];
    if (next && next.indent > indent) fail(next, 'unexpected indentation');
    return result;
  }

  const doc = block(0);
  if (pos < lines.length) fail(lines[pos], 'unexpected indentation');
  return doc;
}

function isMap(v: Yaml | undefined): v is YamlMap {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function asMap(v: Yaml | undefined, what: string): YamlMap {
  if (!isMap(v)) throw new Error(`${what} is not a mapping`);
  return v;
}

function asList(v: Yaml | undefined, what: string): string[] {
  if (!Array.isArray(v) || !v.every((item) => typeof item === 'string'))
    throw new Error(`${what} is not a list of strings`);
  return v;
}

function asString(v: Yaml | undefined, what: string): string {
  if (typeof v !== 'string') throw new Error(`${what} is not a string`);
  return v;
}

test('the YAML reader reads what the checks rely on, and refuses the rest', (t) => {
  const doc = parseYaml(
    [
      'x-base: &base',
      '  a: one # a comment',
      '  list: [\'x\', "y", z]',
      'services:',
      '  s:',
      '    <<: *base',
      '    a: two',
      '    items:',
      "      - 'it''s'",
      '      - --flag=a:b',
      '    empty:',
    ].join('\n'),
  );
  t.deepEqual(asMap(doc, 'doc').services, {
    s: { a: 'two', items: ["it's", '--flag=a:b'], empty: null, list: ['x', 'y', 'z'] },
  });
  t.throws(() => parseYaml('a: |\n  text'));
  t.throws(() => parseYaml('a:\n  - b: c'));
  t.throws(() => parseYaml('a: 1\na: 2'));
  t.throws(() => parseYaml('a: 1\n   b: 2'));
  t.throws(() => parseYaml('a: *missing'));
});

// --- docker-compose.yml and the Dockerfile ------------------------------------------------

interface Compose {
  services: Record<string, YamlMap>;
  volumes: string[];
}

async function loadCompose(): Promise<Compose> {
  const doc = asMap(
    parseYaml(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8')),
    'docker-compose.yml',
  );
  const services: Record<string, YamlMap> = {};
  for (const [name, service] of Object.entries(asMap(doc.services, 'services')))
    services[name] = asMap(service, name);
  return { services, volumes: Object.keys(asMap(doc.volumes, 'volumes')) };
}

/** `$$` is compose's escape for `$`; `${NAME:-default}` and `${NAME}` read the caller's env. */
function interpolate(text: string, env: NodeJS.ProcessEnv = {}): string {
  return text.replace(/\$\$|\$\{(\w+)(?::-([^}]*))?\}/g, (all, name?: string, fallback?: string) =>
    all === '$$' ? '$' : env[name as string] || (fallback ?? ''),
  );
}

function environment(service: YamlMap, what: string): Record<string, string> {
  const env = service.environment;
  if (env === undefined) return {};
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(asMap(env, `${what}.environment`)))
    out[key] = interpolate(asString(value, `${what}.environment.${key}`));
  return out;
}

/** Named volumes and bind mounts of a service: source, target, read-only. */
function mounts(service: YamlMap, what: string) {
  return asList(service.volumes ?? [], `${what}.volumes`).map((spec) => {
    const [source = '', target = '', mode = ''] = spec.split(':');
    return { source, target, readOnly: mode === 'ro' };
  });
}

/** The node services: those that run `serve` in the image built here. */
function nodeServices(compose: Compose): string[] {
  return Object.keys(compose.services).filter((name) => {
    const service = compose.services[name] as YamlMap;
    return service.image === LOCAL_IMAGE && service.entrypoint === undefined;
  });
}

/** `--name=value`, `--name value` and `--flag` of an argument list, by name. */
function flags(args: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (!arg.startsWith('--')) continue;
    const eq = arg.indexOf('=');
    let name = arg;
    let value = '';
    if (eq >= 0) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
    } else if (i + 1 < args.length && !(args[i + 1] as string).startsWith('--')) {
      value = args[++i] as string;
    }
    out.set(name, [...(out.get(name) ?? []), value]);
  }
  return out;
}

function flag(args: string[], name: string): string {
  const values = flags(args).get(name) ?? [];
  if (values.length !== 1) throw new Error(`${name} is given ${values.length} times`);
  return values[0] as string;
}

interface HealthCheck {
  tokenFile: string;
  binary: string;
  args: string[];
}

/** A node's healthcheck: `SHARDSNAP_TOKEN="$(cat FILE)" exec BINARY ARGS... >/dev/null`. */
function healthCheck(service: YamlMap, what: string): HealthCheck {
  const healthcheck = asMap(service.healthcheck, `${what}.healthcheck`);
  const [kind, script = ''] = asList(healthcheck.test, `${what}.healthcheck.test`);
  if (kind !== 'CMD-SHELL') throw new Error(`${what}: the healthcheck is not CMD-SHELL`);
  const match = /^SHARDSNAP_TOKEN="\$\(cat (\S+)\)" exec (\S+) ([^'"`$;&|<>]+) >\/dev\/null$/.exec(
    interpolate(script),
  );
  if (!match) throw new Error(`${what}: unexpected healthcheck ${script}`);
  return {
    tokenFile: match[1] as string,
    binary: match[2] as string,
    args: (match[3] as string).split(' '),
  };
}

/** FROM images of the Dockerfile, `${ARG}` resolved, and its last USER. */
async function dockerfile(): Promise<{ from: string[]; user: string; workdir: string }> {
  const text = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
  const args = new Map<string, string>();
  const stages = new Set<string>();
  const from: string[] = [];
  let user = '';
  let workdir = '';
  for (const line of text.split('\n')) {
    const arg = /^ARG (\w+)=(\S+)$/.exec(line);
    if (arg) args.set(arg[1] as string, arg[2] as string);
    const stage = /^FROM (\S+)(?: AS (\S+))?$/i.exec(line);
    if (stage) {
      const image = (stage[1] as string).replace(
        /\$\{(\w+)\}/g,
        (_, n: string) => args.get(n) ?? '',
      );
      if (!stages.has(image)) from.push(image);
      if (stage[2]) stages.add(stage[2]);
      user = '';
    }
    const u = /^USER (\S+)$/.exec(line);
    if (u) user = u[1] as string;
    const w = /^WORKDIR (\S+)$/.exec(line);
    if (w) workdir = w[1] as string;
  }
  return { from, user, workdir };
}

/**
 * Why `image` is not pinned to an exact release, or undefined: it needs a digest, or a
 * tag that names one release (`1.2.3`-like, or MinIO's `RELEASE.<date>`), and not `latest`.
 */
function unpinned(image: string): string | undefined {
  const match = /^([a-z0-9.\-/:]+?)(?::([\w.-]+))?(?:@(.+))?$/.exec(image);
  if (!match) return 'not an image reference';
  const [, , tag, digest] = match;
  if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) return 'malformed digest';
  if (tag === 'latest') return 'tag latest';
  const exact = tag !== undefined && /(^|\D)\d+\.\d+\.\d+|^RELEASE\.\d{4}-\d\d-\d\dT/.test(tag);
  if (digest === undefined && !exact) return 'no exact version tag';
  return undefined;
}

// --- The CLI -----------------------------------------------------------------------------

/** Parses `args` with the real CLI definition, every action replaced by a no-op. */
async function accepts(args: string[]): Promise<string | undefined> {
  const program = buildProgram();
  const quiet = (command: Command): void => {
    command.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    if (command !== program) command.action(() => undefined);
    command.commands.forEach(quiet);
  };
  quiet(program);
  try {
    await program.parseAsync(['node', 'shardsnap', ...args]);
    return undefined;
  } catch (error) {
    return error instanceof CommanderError ? error.message : String(error);
  }
}

test('every node service of docker-compose.yml runs a command the CLI accepts', async (t) => {
  const compose = await loadCompose();
  t.deepEqual(nodeServices(compose), NODES);
  for (const name of NODES) {
    const service = compose.services[name] as YamlMap;
    const args = asList(service.command, `${name}.command`);
    t.is(args[0], 'serve', name);
    t.is(await accepts(args), undefined, `${name}: ${args.join(' ')}`);
    const check = healthCheck(service, name);
    t.is(await accepts(check.args), undefined, `${name} healthcheck: ${check.args.join(' ')}`);
  }
  // The check itself rejects what the CLI rejects.
  t.truthy(await accepts(['serve', '--data-dir', '/data', '--no-such-flag']));
  t.truthy(await accepts(['serve', '--listen', 'nowhere', '--data-dir', '/data']));
  t.truthy(await accepts(['serve']));
  t.truthy(await accepts(['stats']));
});

test('the shardsnap image is built once, and every image is pinned', async (t) => {
  const compose = await loadCompose();
  const built = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
  t.deepEqual(
    built.map(([name, s]) => [name, s.build, s.image]),
    [['node-memory', '.', LOCAL_IMAGE]],
    'one service builds the image, and names it',
  );
  for (const [name, service] of Object.entries(compose.services)) {
    const image = asString(service.image, `${name}.image`);
    if (image === LOCAL_IMAGE) {
      if (service.build === undefined) t.is(service.pull_policy, 'never', `${name}: never pulled`);
      // Besides the nodes, only one-shot jobs that run a script of deploy/compose.
      if (!NODES.includes(name)) {
        t.deepEqual(asList(service.entrypoint, name).slice(0, 1), ['/bin/sh'], name);
        t.regex(asList(service.entrypoint, name)[1] ?? '', /^\/deploy\/[\w-]+\.sh$/, name);
        t.is(service.restart, 'no', name);
      }
      continue;
    }
    t.is(unpinned(image), undefined, `${name}: ${image}`);
  }
  // Local images come from this file only.
  const otherLocal = Object.values(compose.services).filter(
    (s) => typeof s.image === 'string' && s.image.endsWith(':local') && s.image !== LOCAL_IMAGE,
  );
  t.deepEqual(otherLocal, []);

  const file = await dockerfile();
  t.true(file.from.length > 0);
  for (const image of file.from) t.is(unpinned(image), undefined, `Dockerfile FROM ${image}`);
  t.false(['', 'root', '0'].includes(file.user.split(':')[0] as string), `USER ${file.user}`);

  t.is(unpinned('minio/minio:latest'), 'tag latest');
  t.is(unpinned('minio/minio'), 'no exact version tag');
  t.is(unpinned('node:20-bookworm-slim'), 'no exact version tag');
  t.is(unpinned('node:20.20.2-bookworm-slim'), undefined);
  t.is(unpinned('quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z'), undefined);
  t.is(unpinned(`node:20-bookworm-slim@sha256:${'a'.repeat(64)}`), undefined);
  t.is(unpinned(`node:latest@sha256:${'a'.repeat(64)}`), 'tag latest');
  t.is(unpinned('node@sha256:abc'), 'malformed digest');
});

test('every published port binds 127.0.0.1', async (t) => {
  const compose = await loadCompose();
  const hostPorts: string[] = [];
  for (const [name, service] of Object.entries(compose.services)) {
    t.not(service.network_mode, 'host', name);
    for (const port of asList(service.ports ?? [], `${name}.ports`)) {
      t.regex(port, /^127\.0\.0\.1:\d+:\d+$/, `${name}: ${port}`);
      hostPorts.push(port.split(':')[1] as string);
    }
  }
  t.true(hostPorts.length >= NODES.length);
  t.is(new Set(hostPorts).size, hostPorts.length, 'host ports are distinct');
});

test('volumes are declared, and the only bind mount is deploy/compose, read-only', async (t) => {
  const compose = await loadCompose();
  for (const [name, service] of Object.entries(compose.services))
    for (const mount of mounts(service, name)) {
      if (/^[./]/.test(mount.source)) {
        t.deepEqual(mount, { source: './deploy/compose', target: '/deploy', readOnly: true }, name);
      } else {
        t.true(compose.volumes.includes(mount.source), `${name}: volume ${mount.source}`);
      }
    }
});

test('node services run with TLS, tokens, peer settings and limits', async (t) => {
  const compose = await loadCompose();
  const secrets = compose.services['gen-secrets'] as YamlMap;
  const secretsDir = environment(secrets, 'gen-secrets').SHARDSNAP_SECRETS_DIR as string;
  const secretsVolume = mounts(secrets, 'gen-secrets').find((m) => m.target === secretsDir);
  t.truthy(secretsVolume, 'gen-secrets writes into a volume');
  const file = (name: string): string => `${secretsDir}/${name}`;

  for (const name of NODES) {
    const service = compose.services[name] as YamlMap;
    const args = asList(service.command, `${name}.command`);
    const value = (flagName: string): string => flag(args, flagName);
    const others = NODES.filter((n) => n !== name);

    t.is(value('--node-id'), name);
    t.is(value('--tls-cert'), file(`${name}.crt`));
    t.is(value('--tls-key'), file(`${name}.key`));
    t.is(value('--tls-client-ca'), file('ca.crt'));
    t.is(value('--auth-tokens'), file('tokens.json'));
    t.is(value('--peer-tls-ca'), file('ca.crt'));
    t.is(value('--peer-token-file'), file('peer.token'));
    t.deepEqual(
      value('--allow-peers')
        .split(',')
        .map((peer) => peer.split(':')[0])
        .sort(),
      others,
      `${name} dials the other nodes only`,
    );
    const port = value('--listen').split(':')[1] as string;
    t.is(value('--listen'), `0.0.0.0:${port}`);
    t.is(value('--advertise'), `${name}:${port}`);
    t.is(value('--metrics-listen'), '0.0.0.0:9464');
    const published = asList(service.ports, `${name}.ports`).map((p) => p.split(':')[2]);
    t.deepEqual(published.sort(), [port, '9464'].sort(), `${name} publishes gRPC and metrics`);
    for (const limit of [
      '--max-send-rate',
      '--max-recv-rate',
      '--max-concurrent-sends',
      '--max-concurrent-recvs',
      '--spool-max-bytes',
    ])
      t.regex(value(limit), /^\d+(MiB|GiB)?$/, `${name} ${limit}`);
    const grace = parseDuration(value('--shutdown-grace'));
    t.true(
      parseDuration(asString(service.stop_grace_period, `${name}.stop_grace_period`)) > grace,
      `${name}: docker waits longer than --shutdown-grace before killing`,
    );

    // Secrets: the volume gen-secrets fills, read-only.
    t.deepEqual(
      mounts(service, name).filter((m) => m.target === secretsDir),
      [{ source: secretsVolume?.source ?? '', target: secretsDir, readOnly: true }],
    );
    const dependsOn = asMap(service.depends_on, `${name}.depends_on`);
    for (const job of ['gen-secrets', 'minio-init'])
      t.deepEqual(dependsOn[job], { condition: 'service_completed_successfully' }, name);

    // Least privilege: the image's unprivileged user, no capabilities, a read-only root.
    t.is(service.user, undefined, `${name} keeps the image's user`);
    t.is(service.read_only, 'true', name);
    t.deepEqual(service.cap_drop, ['ALL'], name);
    t.is(service.cap_add, undefined, name);
    t.deepEqual(service.security_opt, ['no-new-privileges:true'], name);
    t.is(service.privileged, undefined, name);
  }
});

test('node services have a healthcheck that asks the node itself, over TLS, with the read token', async (t) => {
  const compose = await loadCompose();
  const { workdir } = await dockerfile();
  for (const name of NODES) {
    const service = compose.services[name] as YamlMap;
    const serve = asList(service.command, `${name}.command`);
    const check = healthCheck(service, name);
    t.is(check.tokenFile, `${flag(serve, '--auth-tokens').replace(/tokens\.json$/, '')}read.token`);
    t.is(check.binary, `${workdir}/bin/shardsnap`);
    t.is(check.args[0], 'stats');
    t.is(flag(check.args, '--at'), flag(serve, '--advertise'));
    t.is(flag(check.args, '--tls-ca'), flag(serve, '--tls-client-ca'));
    t.is(flag(check.args, '--tls-cert'), flag(serve, '--tls-cert'));
    t.is(flag(check.args, '--tls-key'), flag(serve, '--tls-key'));
    t.false(flags(check.args).has('--token'), 'the token comes from the env, not the arguments');
    const healthcheck = asMap(service.healthcheck, name);
    for (const key of ['interval', 'timeout', 'retries', 'start_period'])
      t.truthy(healthcheck[key], `${name}.healthcheck.${key}`);
  }
});

test('node services do not use the MinIO root credentials', async (t) => {
  const compose = await loadCompose();
  const minio = compose.services.minio as YamlMap;
  const minioEnv = environment(minio, 'minio');
  t.deepEqual(Object.keys(minioEnv).sort(), ['MINIO_ROOT_PASSWORD_FILE', 'MINIO_ROOT_USER_FILE']);
  const rootDir = (minioEnv.MINIO_ROOT_USER_FILE as string).replace(/\/[^/]+$/, '');
  const rootVolume = mounts(minio, 'minio').find((m) => m.target === rootDir);
  t.truthy(rootVolume, 'the MinIO root credentials come from a volume');
  t.deepEqual(
    Object.keys(compose.services).filter((name) =>
      mounts(compose.services[name] as YamlMap, name).some((m) => m.source === rootVolume?.source),
    ),
    ['gen-secrets', 'minio', 'minio-init'],
    'only MinIO and the one-shot jobs see the root credentials',
  );

  // No secret is written into the compose file itself.
  for (const [name, service] of Object.entries(compose.services))
    for (const key of Object.keys(environment(service, name)))
      t.notRegex(key, /(PASSWORD|SECRET|TOKEN|ACCESS_KEY)(_ID)?$/, `${name}: ${key}`);

  const secrets = environment(compose.services['gen-secrets'] as YamlMap, 'gen-secrets');
  for (const name of NODES) {
    const service = compose.services[name] as YamlMap;
    const env = environment(service, name);
    t.is(env.AWS_SHARED_CREDENTIALS_FILE, `${secrets.SHARDSNAP_SECRETS_DIR}/s3-credentials`);
    t.false(
      mounts(service, name).some((m) => m.source === rootVolume?.source),
      `${name} cannot see the MinIO root credentials`,
    );
    t.is(
      env.AWS_ENDPOINT_URL,
      environment(compose.services['minio-init'] as YamlMap, 'minio-init').MINIO_URL,
    );
  }
});

// --- The scripts ---------------------------------------------------------------------------

test('the compose scripts are valid POSIX sh', async (t) => {
  for (const script of [GEN_SECRETS, INIT_MINIO]) {
    await t.notThrowsAsync(run('sh', ['-n', script]), script);
    t.regex(await readFile(script, 'utf8'), /^#!\/bin\/sh\n/);
  }
});

interface Generated {
  dir: string;
  secrets: string;
  minio: string;
  /** The environment gen-secrets gets in docker-compose.yml, its directories moved here. */
  env: NodeJS.ProcessEnv;
}

async function generated(t: ExecutionContext, compose: Compose): Promise<Generated> {
  const dir = await mkdtemp(join(tmpdir(), 'shardsnap-compose-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const secrets = join(dir, 'secrets');
  const minio = join(dir, 'minio-secrets');
  const env = {
    ...process.env,
    ...environment(compose.services['gen-secrets'] as YamlMap, 'gen-secrets'),
    SHARDSNAP_SECRETS_DIR: secrets,
    SHARDSNAP_MINIO_SECRETS_DIR: minio,
  };
  await run('sh', [GEN_SECRETS], { env });
  return { dir, secrets, minio, env };
}

interface FileState {
  content: string;
  mode: number;
  uid: number;
  mtimeMs: number;
}

async function snapshot(...dirs: string[]): Promise<Record<string, FileState>> {
  const out: Record<string, FileState> = {};
  for (const dir of dirs)
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const info = await stat(path);
      if (!info.isFile()) continue;
      out[path] = {
        content: await readFile(path, 'utf8'),
        mode: info.mode & 0o777,
        uid: info.uid,
        mtimeMs: info.mtimeMs,
      };
    }
  return out;
}

async function openssl(...args: string[]): Promise<string> {
  return (await run('openssl', args)).stdout;
}

function iniValue(text: string, key: string): string {
  const match = new RegExp(`^${key}\\s*=\\s*(\\S+)\\s*$`, 'm').exec(text);
  if (!match) throw new Error(`no ${key}`);
  return match[1] as string;
}

test('gen-secrets.sh makes a CA, certificates and tokens the nodes can use', async (t) => {
  const compose = await loadCompose();
  const { secrets, minio, env } = await generated(t, compose);
  const nodes = (env.SHARDSNAP_NODES ?? '').split(' ');
  t.deepEqual(nodes, NODES, 'certificates for exactly the node services');

  const keys = [...nodes.map((n) => `${n}.key`), 'ca.key', 'client.key'];
  const certs = [...nodes.map((n) => `${n}.crt`), 'ca.crt', 'client.crt'];
  const tokens = ['read', 'write', 'admin', 'peer'].map((n) => `${n}.token`);
  t.deepEqual(
    (await readdir(secrets)).sort(),
    [...keys, ...certs, ...tokens, 'tokens.json', 's3-credentials'].sort(),
  );
  t.deepEqual((await readdir(minio)).sort(), ['root-password', 'root-user']);

  // Modes, and owners: what the nodes read is the node user's, the rest root's.
  const nodeUid = Number(env.SHARDSNAP_NODE_UID);
  const rootOnly = new Set(['ca.key', 'client.key']);
  const asRoot = process.getuid?.() === 0;
  for (const [path, state] of Object.entries(await snapshot(secrets, minio))) {
    const name = path.slice(path.lastIndexOf('/') + 1);
    t.is(state.mode, name.endsWith('.crt') ? 0o644 : 0o600, `mode of ${name}`);
    if (asRoot)
      t.is(
        state.uid,
        path.startsWith(minio) || rootOnly.has(name) ? 0 : nodeUid,
        `owner of ${name}`,
      );
  }
  t.is((await stat(secrets)).mode & 0o777, 0o750);
  t.is((await stat(minio)).mode & 0o777, 0o700);

  // The CA verifies the node certificates, for serving and for dialing peers.
  const ca = join(secrets, 'ca.crt');
  for (const node of nodes) {
    const crt = join(secrets, `${node}.crt`);
    for (const purpose of ['sslserver', 'sslclient'])
      t.regex(await openssl('verify', '-CAfile', ca, '-purpose', purpose, crt), /: OK\n$/);
    const san = await openssl('x509', '-in', crt, '-noout', '-ext', 'subjectAltName');
    for (const name of [`DNS:${node}`, 'DNS:localhost', 'IP Address:127.0.0.1'])
      t.true(san.includes(name), `${node}: ${name} in ${san}`);
    const pub = await openssl('x509', '-in', crt, '-noout', '-pubkey');
    t.is(await openssl('pkey', '-in', join(secrets, `${node}.key`), '-pubout'), pub);
  }
  t.regex(
    await openssl('verify', '-CAfile', ca, '-purpose', 'sslclient', join(secrets, 'client.crt')),
    /: OK\n$/,
  );
  await t.throwsAsync(
    openssl('verify', '-CAfile', ca, '-purpose', 'sslserver', join(secrets, 'client.crt')),
  );

  // Tokens: read, write and admin, and the peer token (admin); each also in NAME.token.
  const parsed = JSON.parse(await readFile(join(secrets, 'tokens.json'), 'utf8')) as {
    tokens: Array<{ name: string; token: string; role: string }>;
  };
  t.deepEqual(
    parsed.tokens.map((e) => [e.name, e.role]),
    [
      ['read', 'read'],
      ['write', 'write'],
      ['admin', 'admin'],
      ['peer', 'admin'],
    ],
  );
  for (const entry of parsed.tokens) {
    t.regex(entry.token, /^[0-9a-f]{64}$/);
    t.is(await readFile(join(secrets, `${entry.name}.token`), 'utf8'), entry.token);
  }
  t.is(new Set(parsed.tokens.map((e) => e.token)).size, 4, 'the tokens differ');

  // The nodes' MinIO user is not the root user.
  const credentials = await readFile(join(secrets, 's3-credentials'), 'utf8');
  t.regex(credentials, /^\[default\]\n/);
  const rootUser = await readFile(join(minio, 'root-user'), 'utf8');
  const rootPassword = await readFile(join(minio, 'root-password'), 'utf8');
  t.not(iniValue(credentials, 'aws_access_key_id'), rootUser);
  t.not(iniValue(credentials, 'aws_secret_access_key'), rootPassword);
  for (const secret of [iniValue(credentials, 'aws_secret_access_key'), rootPassword])
    t.regex(secret, /^[0-9a-f]{40}$/, 'MinIO takes secret keys of 8 to 40 characters');

  // Every file that docker-compose.yml hands a node exists.
  const inCompose = environment(compose.services['gen-secrets'] as YamlMap, 'gen-secrets')
    .SHARDSNAP_SECRETS_DIR as string;
  for (const name of NODES) {
    const service = compose.services[name] as YamlMap;
    const inContainer = [
      ...[...flags(asList(service.command, name)).values()].flat(),
      healthCheck(service, name).tokenFile,
      environment(service, name).AWS_SHARED_CREDENTIALS_FILE ?? '',
    ].filter((v) => v.startsWith(`${inCompose}/`));
    t.true(inContainer.length >= 8, name);
    for (const path of inContainer)
      await t.notThrowsAsync(stat(join(secrets, path.slice(path.lastIndexOf('/') + 1))), path);
  }
});

test('gen-secrets.sh keeps what exists, and replaces only what is missing or outdated', async (t) => {
  const compose = await loadCompose();
  const { secrets, minio, env } = await generated(t, compose);
  const before = await snapshot(secrets, minio);

  await run('sh', [GEN_SECRETS], { env });
  t.deepEqual(await snapshot(secrets, minio), before, 'a re-run changes nothing');

  // A lost certificate is issued again; nothing else changes.
  const crt = join(secrets, 'node-rocksdb.crt');
  await rm(crt);
  await run('sh', [GEN_SECRETS], { env });
  const after = await snapshot(secrets, minio);
  t.regex(await openssl('verify', '-CAfile', join(secrets, 'ca.crt'), crt), /: OK\n$/);
  t.not(after[crt]?.content, before[crt]?.content);
  const unchanged = (files: Record<string, FileState>) =>
    Object.fromEntries(Object.entries(files).filter(([path]) => path !== crt));
  t.deepEqual(unchanged(after), unchanged(before));

  // More names for the node certificates: new certificates, same keys, CA and tokens.
  const withSans = { ...env, SHARDSNAP_EXTRA_SANS: 'DNS:shard1.example.test,IP:192.0.2.10' };
  await run('sh', [GEN_SECRETS], { env: withSans });
  const renamed = await snapshot(secrets, minio);
  for (const node of NODES) {
    const san = await openssl(
      'x509',
      '-in',
      join(secrets, `${node}.crt`),
      '-noout',
      '-ext',
      'subjectAltName',
    );
    t.true(san.includes('DNS:shard1.example.test') && san.includes('IP Address:192.0.2.10'), san);
  }
  for (const name of ['ca.crt', 'ca.key', 'tokens.json', 'peer.token', 'node-memory.key'])
    t.deepEqual(renamed[join(secrets, name)], before[join(secrets, name)], name);
  await run('sh', [GEN_SECRETS], { env: withSans });
  t.deepEqual(await snapshot(secrets, minio), renamed, 'the same names change nothing');

  // A token file gone while tokens.json stays is an error, not a silent new token.
  await rm(join(secrets, 'read.token'));
  const error = await t.throwsAsync(run('sh', [GEN_SECRETS], { env }));
  t.regex(String((error as { stderr?: string } | undefined)?.stderr), /read\.token is missing/);
  t.false((await readdir(secrets)).includes('read.token'));
});

test('init-minio.sh gives the nodes a MinIO user limited to the archive bucket', async (t) => {
  const compose = await loadCompose();
  const { dir, secrets, minio } = await generated(t, compose);
  const init = compose.services['minio-init'] as YamlMap;
  const initEnv = environment(init, 'minio-init');

  // A stand-in for mc that records its calls and keeps the policy it is given.
  const bin = join(dir, 'bin');
  await mkdir(bin);
  await writeFile(
    join(bin, 'mc'),
    [
      '#!/bin/sh',
      'printf \'%s|%s\\n\' "$MC_HOST_local" "$*" >>"$MC_LOG"',
      'case "$1 $2 $3" in',
      '  "admin policy create") cp "$6" "$MC_POLICY" ;;',
      '  "admin policy attach") [ -z "${MC_ATTACH_FAILS:-}" ] || exit 1 ;;',
      '  "admin user info") printf \'%s\\n\' "$MC_USER_INFO" ;;',
      'esac',
      '',
    ].join('\n'),
  );
  await chmod(join(bin, 'mc'), 0o755);
  const env = {
    ...process.env,
    ...initEnv,
    SHARDSNAP_SECRETS_DIR: secrets,
    SHARDSNAP_MINIO_SECRETS_DIR: minio,
    PATH: `${bin}:${process.env.PATH ?? ''}`,
    TMPDIR: dir,
    MC_LOG: join(dir, 'mc.log'),
    MC_POLICY: join(dir, 'policy.json'),
  };
  await run('sh', [INIT_MINIO], { env });

  const bucket = initEnv.SHARDSNAP_BUCKET as string;
  for (const name of NODES)
    t.is(flag(asList(compose.services[name]?.command, name), '--archive-bucket'), bucket);
  const credentials = await readFile(join(secrets, 's3-credentials'), 'utf8');
  const user = iniValue(credentials, 'aws_access_key_id');
  const root = `http://${await readFile(join(minio, 'root-user'), 'utf8')}:${await readFile(join(minio, 'root-password'), 'utf8')}@minio:9000`;
  const calls = (await readFile(env.MC_LOG, 'utf8')).trimEnd().split('\n');
  t.deepEqual(
    calls.map((c) => c.replace(/ \S+\.json$/, ' POLICY')),
    [
      `${root}|mb --ignore-existing local/${bucket}`,
      `${root}|admin policy create local shardsnap-archives POLICY`,
      `${root}|admin user add local ${user} ${iniValue(credentials, 'aws_secret_access_key')}`,
      `${root}|admin policy attach local shardsnap-archives --user ${user}`,
    ],
  );

  const policy = JSON.parse(await readFile(env.MC_POLICY, 'utf8')) as {
    Statement: Array<{ Effect: string; Action: string[]; Resource: string[] }>;
  };
  const actions = policy.Statement.flatMap((s) => s.Action);
  const resources = policy.Statement.flatMap((s) => s.Resource);
  t.true(policy.Statement.every((s) => s.Effect === 'Allow'));
  t.deepEqual([...new Set(resources)].sort(), [
    `arn:aws:s3:::${bucket}`,
    `arn:aws:s3:::${bucket}/*`,
  ]);
  for (const needed of ['s3:ListBucket', 's3:GetObject', 's3:PutObject', 's3:DeleteObject'])
    t.true(actions.includes(needed), needed);
  t.false(
    actions.some((a) => a.includes('*') || !a.startsWith('s3:')),
    'no wildcard or admin actions',
  );

  // An older server refuses to attach a policy twice: fine when the user already has it.
  await t.notThrowsAsync(
    run('sh', [INIT_MINIO], {
      env: { ...env, MC_ATTACH_FAILS: '1', MC_USER_INFO: 'PolicyName: shardsnap-archives' },
    }),
  );
  await t.throwsAsync(
    run('sh', [INIT_MINIO], {
      env: { ...env, MC_ATTACH_FAILS: '1', MC_USER_INFO: 'PolicyName: ' },
    }),
  );
});
