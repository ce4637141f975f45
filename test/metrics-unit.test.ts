import test, { type ExecutionContext } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import type { Mutation } from '../src/core';
import { NodeMetrics, REJECT_REASONS } from '../src/server/metrics';
import { serveMetrics } from '../src/server/metrics-http';
import { type Store, openStore } from '../src/store';

type Family = parsePrometheusTextFormat.MetricFamily;
type Sample = parsePrometheusTextFormat.Sample;

const ROCKSDB_GAUGES = [
  'shardsnap_rocksdb_estimate_num_keys',
  'shardsnap_rocksdb_live_sst_bytes',
  'shardsnap_rocksdb_l0_files',
  'shardsnap_rocksdb_pending_compaction_bytes',
  'shardsnap_rocksdb_memtable_bytes',
];

const set = (key: string, value: string): Mutation => ({
  op: 'set',
  key: Buffer.from(key),
  value: Buffer.from(value),
  expireAtMs: 0,
});

async function openTestStore(t: ExecutionContext, backend: string): Promise<Store> {
  const dataDir = await mkdtemp(join(tmpdir(), 'shardsnap-metrics-'));
  const store = await openStore(backend, { dataDir });
  t.teardown(async () => {
    await store.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return store;
}

function metricsFor(
  t: ExecutionContext,
  store: Store,
  nodeId: string,
  levels: { spoolBytes?: number; stored?: number; changeLogBytes?: number } = {},
): NodeMetrics {
  const metrics = new NodeMetrics({
    nodeId,
    store,
    catalogStats: () => ({ spoolBytes: levels.spoolBytes ?? 0, stored: levels.stored ?? 0 }),
    changeLogBytes: () => levels.changeLogBytes ?? 0,
  });
  t.teardown(() => metrics.close());
  return metrics;
}

function parseFamilies(text: string): Map<string, Family> {
  return new Map(parsePrometheusTextFormat(text).map((family) => [family.name, family]));
}

async function scrape(metrics: NodeMetrics): Promise<Map<string, Family>> {
  return parseFamilies(await metrics.text());
}

function hasLabels(sample: { labels?: Record<string, string> }, labels: Record<string, string>) {
  return Object.entries(labels).every(([name, value]) => sample.labels?.[name] === value);
}

/** The value of the one sample of `name` carrying `labels` (and maybe others). */
function value(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matches = (families.get(name)?.metrics ?? []).filter((s) => hasLabels(s, labels));
  if (matches.length !== 1) return undefined;
  return Number((matches[0] as Sample).value);
}

/**
 * Every series by name, histograms untyped: the `_bucket`, `_sum` and `_count` series of
 * each label set become families of their own, merged here by name.
 */
function untypedSeries(text: string): Map<string, Family> {
  const series = new Map<string, Family>();
  for (const family of parsePrometheusTextFormat(text.replace(/^# TYPE \S+ histogram$/gm, ''))) {
    const seen = series.get(family.name);
    if (seen) seen.metrics.push(...family.metrics);
    else series.set(family.name, family);
  }
  return series;
}

interface HistogramSeries {
  count: number | undefined;
  sum: number | undefined;
  /** The cumulative count of the bucket with upper bound `le`. */
  bucket(le: string): number | undefined;
}

/**
 * The series of one labelled histogram. The parser folds the samples of a histogram into a
 * single unlabelled one, so the `_bucket`, `_sum` and `_count` series are read from a parse
 * that leaves histograms untyped (each series then is a family of its own); the type is
 * checked on the regular parse.
 */
function histogram(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): HistogramSeries | undefined {
  const typed = parsePrometheusTextFormat(text).find((family) => family.name === name);
  if (typed?.type !== 'HISTOGRAM') return undefined;
  const series = untypedSeries(text);
  const count = value(series, `${name}_count`, labels);
  if (count === undefined) return undefined;
  return {
    count,
    sum: value(series, `${name}_sum`, labels),
    bucket: (le) => value(series, `${name}_bucket`, { ...labels, le }),
  };
}

function record(metrics: NodeMetrics): void {
  metrics.snapshotFinished('memory-scan', 'full', 'ready', 0.2);
  metrics.snapshotFinished('memory-scan', 'full', 'ready', 3);
  metrics.snapshotFinished('memory-scan', 'slots', 'failed', 1);
  metrics.snapshotFinished('memory-scan', 'slots', 'cancelled', 0.5);
  metrics.transferred('send', 1000);
  metrics.transferred('send', 24);
  metrics.transferred('recv', 4096);
  metrics.throttled('recv', 0.25);
  metrics.installedKeys(42);
  metrics.writePause(0.003);
  metrics.writeLatency(0.00007);
  metrics.writeLatency(0.002);
  metrics.rateLimit('send', 1_048_576);
  metrics.rateLimit('recv', undefined);
  metrics.rejected('spool_full');
  metrics.rejected('unauthenticated');
  metrics.rejected('unauthenticated');
}

test('the memory store: recorded events, levels read at scrape, node label, no RocksDB', async (t) => {
  const store = await openTestStore(t, 'memory');
  await store.write([set('a', 'xx'), set('b', 'yyyy'), set('c', 'z')]);
  const metrics = metricsFor(t, store, 'mem-1', {
    spoolBytes: 5000,
    stored: 2,
    changeLogBytes: 777,
  });
  record(metrics);
  const text = await metrics.text();
  const scraped = parseFamilies(text);
  const stats = await store.stats();

  t.is(scraped.get('shardsnap_snapshots_total')?.type, 'COUNTER');
  t.is(value(scraped, 'shardsnap_snapshots_total', { kind: 'full', status: 'ready' }), 2);
  t.is(value(scraped, 'shardsnap_snapshots_total', { kind: 'slots', status: 'failed' }), 1);
  t.is(value(scraped, 'shardsnap_snapshots_total', { kind: 'slots', status: 'cancelled' }), 1);
  const build = histogram(text, 'shardsnap_snapshot_build_seconds', {
    strategy: 'memory-scan',
    kind: 'full',
  });
  t.is(build?.count, 2, 'ready builds are observed');
  t.is(build?.sum, 3.2);
  t.is(build?.bucket('0.1'), 0);
  t.is(build?.bucket('0.25'), 1);
  t.is(build?.bucket('+Inf'), 2);
  t.is(
    histogram(text, 'shardsnap_snapshot_build_seconds', { kind: 'slots' }),
    undefined,
    'failed and cancelled builds are not',
  );

  t.is(value(scraped, 'shardsnap_transfer_bytes_total', { direction: 'send' }), 1024);
  t.is(value(scraped, 'shardsnap_transfer_bytes_total', { direction: 'recv' }), 4096);
  t.is(value(scraped, 'shardsnap_transfer_throttled_seconds_total', { direction: 'recv' }), 0.25);
  t.is(value(scraped, 'shardsnap_transfer_throttled_seconds_total', { direction: 'send' }), 0);
  t.is(value(scraped, 'shardsnap_install_keys_total'), 42);
  const pause = histogram(text, 'shardsnap_write_pause_seconds');
  t.is(pause?.count, 1);
  t.is(pause?.bucket('0.001'), 0);
  t.is(pause?.bucket('0.0025'), 0);
  t.is(pause?.bucket('0.005'), 1);
  t.is(pause?.bucket('10'), 1);
  const writes = histogram(text, 'shardsnap_write_seconds');
  t.is(writes?.count, 2);
  t.is(writes?.bucket('0.00005'), 0);
  t.is(writes?.bucket('0.0001'), 1, 'sub-millisecond writes land in their own buckets');
  t.is(writes?.bucket('0.0025'), 2);
  t.is(writes?.bucket('5'), 2);
  t.is(value(scraped, 'shardsnap_transfer_rate_limit_bytes', { direction: 'send' }), 1_048_576);
  t.is(value(scraped, 'shardsnap_transfer_rate_limit_bytes', { direction: 'recv' }), 0);
  t.is(value(scraped, 'shardsnap_rejected_total', { reason: 'unauthenticated' }), 2);
  t.is(value(scraped, 'shardsnap_rejected_total', { reason: 'spool_full' }), 1);
  for (const reason of REJECT_REASONS) {
    t.not(value(scraped, 'shardsnap_rejected_total', { reason }), undefined, reason);
  }

  t.is(scraped.get('shardsnap_keys')?.type, 'GAUGE');
  t.is(value(scraped, 'shardsnap_keys'), 3);
  t.is(value(scraped, 'shardsnap_data_bytes'), stats.dataBytes);
  t.true(stats.dataBytes > 0);
  t.is(value(scraped, 'shardsnap_spool_bytes'), 5000);
  t.is(value(scraped, 'shardsnap_stored_snapshots'), 2);
  t.is(value(scraped, 'shardsnap_change_log_bytes'), 777);
  for (const name of ROCKSDB_GAUGES) t.false(scraped.has(name), name);

  // Every series, the process's included, names its node.
  t.true(scraped.has('process_cpu_user_seconds_total'));
  t.true(scraped.has('nodejs_heap_size_used_bytes'));
  for (const family of untypedSeries(text).values()) {
    for (const sample of family.metrics) t.is(sample.labels?.node, 'mem-1', family.name);
  }

  // Levels are read again at each scrape.
  await store.write([set('d', 'w')]);
  t.is(value(await scrape(metrics), 'shardsnap_keys'), 4);
});

test('the RocksDB store: its properties become gauges', async (t) => {
  const store = await openTestStore(t, 'rocksdb');
  const properties = store.properties?.();
  t.deepEqual(Object.keys(properties ?? {}).sort(), [
    'rocksdb.cur-size-all-mem-tables',
    'rocksdb.estimate-num-keys',
    'rocksdb.estimate-pending-compaction-bytes',
    'rocksdb.live-sst-files-size',
    'rocksdb.num-files-at-level0',
  ]);
  const mutations = Array.from({ length: 50 }, (_, i) => set(`key-${i}`, 'v'.repeat(100)));
  await store.write(mutations);
  const metrics = metricsFor(t, store, 'rocks-1');
  metrics.installedKeys(50);
  const families = await scrape(metrics);

  t.is(value(families, 'shardsnap_keys'), 50);
  t.is(value(families, 'shardsnap_install_keys_total'), 50);
  for (const name of ROCKSDB_GAUGES) {
    t.is(families.get(name)?.type, 'GAUGE', name);
    const gauge = value(families, name, { node: 'rocks-1' });
    t.true(gauge !== undefined && Number.isFinite(gauge) && gauge >= 0, name);
  }
  t.true((value(families, 'shardsnap_rocksdb_memtable_bytes') ?? 0) > 0);
  t.true((value(families, 'shardsnap_rocksdb_estimate_num_keys') ?? 0) >= 50);
});

test('a closed RocksDB store reports no properties and does not fail a scrape', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'shardsnap-metrics-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const store = await openStore('rocksdb', { dataDir });
  const metrics = metricsFor(t, store, 'rocks-closed');
  await store.close();
  t.deepEqual(store.properties?.(), {});
  const families = await scrape(metrics);
  t.is(value(families, 'shardsnap_rocksdb_l0_files'), 0);
});

test('two nodes in one process keep separate registries', async (t) => {
  const [storeA, storeB] = await Promise.all([
    openTestStore(t, 'memory'),
    openTestStore(t, 'memory'),
  ]);
  await storeA.write([set('only-a', '1')]);
  const a = metricsFor(t, storeA, 'node-a');
  const b = metricsFor(t, storeB, 'node-b');
  a.transferred('send', 10);
  b.transferred('send', 7);
  b.rejected('peer_not_allowed');
  const [fa, fb] = await Promise.all([scrape(a), scrape(b)]);
  t.is(value(fa, 'shardsnap_transfer_bytes_total', { direction: 'send', node: 'node-a' }), 10);
  t.is(value(fb, 'shardsnap_transfer_bytes_total', { direction: 'send', node: 'node-b' }), 7);
  t.is(value(fa, 'shardsnap_rejected_total', { reason: 'peer_not_allowed' }), 0);
  t.is(value(fb, 'shardsnap_rejected_total', { reason: 'peer_not_allowed' }), 1);
  t.is(value(fa, 'shardsnap_keys'), 1);
  t.is(value(fb, 'shardsnap_keys'), 0);
  t.true(fb.has('process_resident_memory_bytes') || fb.has('nodejs_heap_size_total_bytes'));

  // A third node after one closed: no name clashes, nothing of the closed one left.
  a.close();
  t.is(await a.text(), '');
  const c = metricsFor(t, storeA, 'node-c');
  t.is(value(await scrape(c), 'shardsnap_transfer_bytes_total', { direction: 'send' }), 0);
  t.is(value(await scrape(b), 'shardsnap_transfer_bytes_total', { direction: 'send' }), 7);
});

test('transfers in progress, their durations, and values that are dropped', async (t) => {
  const metrics = metricsFor(t, await openTestStore(t, 'memory'), 'n');
  const endSend = metrics.transferStarted('send');
  const endRecv = metrics.transferStarted('recv');
  metrics.transferStarted('recv');
  let families = await scrape(metrics);
  t.is(value(families, 'shardsnap_transfers_in_progress', { direction: 'send' }), 1);
  t.is(value(families, 'shardsnap_transfers_in_progress', { direction: 'recv' }), 2);

  endSend();
  endSend();
  endRecv();
  metrics.transferred('send', -5);
  metrics.transferred('send', Number.NaN);
  metrics.throttled('send', Number.POSITIVE_INFINITY);
  metrics.installedKeys(0);
  metrics.writeLatency(-1);
  metrics.rateLimit('send', Number.POSITIVE_INFINITY);
  const text = await metrics.text();
  families = parseFamilies(text);
  t.is(value(families, 'shardsnap_transfers_in_progress', { direction: 'send' }), 0);
  t.is(value(families, 'shardsnap_transfers_in_progress', { direction: 'recv' }), 1);
  t.is(histogram(text, 'shardsnap_transfer_seconds', { direction: 'send' })?.count, 1);
  t.is(histogram(text, 'shardsnap_transfer_seconds', { direction: 'recv' })?.count, 1);
  t.is(value(families, 'shardsnap_transfer_bytes_total', { direction: 'send' }), 0);
  t.is(value(families, 'shardsnap_transfer_throttled_seconds_total', { direction: 'send' }), 0);
  t.is(value(families, 'shardsnap_install_keys_total'), 0);
  t.is(histogram(text, 'shardsnap_write_seconds')?.count, 0);
  t.is(value(families, 'shardsnap_transfer_rate_limit_bytes', { direction: 'send' }), 0);
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(address: string, path: string, method = 'GET', agent?: http.Agent) {
  return new Promise<Reply>((resolve, reject) => {
    const req = http.request(`http://${address}${path}`, { method, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: Buffer.concat(chunks).toString(),
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

test('serveMetrics answers /metrics, 404 elsewhere, and closes with open connections', async (t) => {
  const metrics = metricsFor(t, await openTestStore(t, 'memory'), 'http-1');
  metrics.transferred('recv', 99);
  const endpoint = await serveMetrics('127.0.0.1:0', metrics);
  t.teardown(() => endpoint.close());
  t.regex(endpoint.address, /^127\.0\.0\.1:\d+$/);
  t.not(endpoint.address, '127.0.0.1:0');

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  const ok = await request(endpoint.address, '/metrics', 'GET', agent);
  t.is(ok.status, 200);
  t.is(ok.headers['content-type'], metrics.contentType);
  t.regex(ok.headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
  const families = parseFamilies(ok.body);
  t.is(value(families, 'shardsnap_transfer_bytes_total', { direction: 'recv' }), 99);

  const withQuery = await request(endpoint.address, '/metrics?x=1', 'GET', agent);
  t.is(withQuery.status, 200);
  const head = await request(endpoint.address, '/metrics', 'HEAD', agent);
  t.is(head.status, 200);
  t.is(head.body, '');
  t.is(Number(head.headers['content-length']) > 0, true);
  t.is((await request(endpoint.address, '/', 'GET', agent)).status, 404);
  t.is((await request(endpoint.address, '/metricsx', 'GET', agent)).status, 404);
  const post = await request(endpoint.address, '/metrics', 'POST', agent);
  t.is(post.status, 405);
  t.is(post.headers.allow, 'GET, HEAD');

  // An idle keep-alive connection (in the agent) and one stuck mid-request.
  const stuck = net.connect(Number(endpoint.address.split(':')[1]), '127.0.0.1');
  await new Promise<void>((resolve) => stuck.once('connect', resolve));
  stuck.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
  const stuckClosed = new Promise<void>((resolve) => stuck.once('close', () => resolve()));
  stuck.on('error', () => undefined);

  await within(2000, endpoint.close(), 'close()');
  await within(2000, stuckClosed, 'closing a connection mid-request');
  await endpoint.close();
  await t.throwsAsync(request(endpoint.address, '/metrics'));
});

test('serveMetrics answers 500 and reports when the exposition fails', async (t) => {
  const errors: unknown[] = [];
  const endpoint = await serveMetrics(
    '127.0.0.1:0',
    {
      contentType: 'text/plain; version=0.0.4; charset=utf-8',
      text: () => Promise.reject(new Error('stats unavailable')),
    },
    (err) => errors.push(err),
  );
  t.teardown(() => endpoint.close());
  const reply = await request(endpoint.address, '/metrics');
  t.is(reply.status, 500);
  t.is(reply.body, 'metrics unavailable\n');
  t.is(errors.length, 1);
  t.is((errors[0] as Error).message, 'stats unavailable');
});

test('serveMetrics rejects an address it cannot bind', async (t) => {
  const empty = { contentType: 'text/plain', text: () => Promise.resolve('') };
  const first = await serveMetrics('127.0.0.1:0', empty);
  t.teardown(() => first.close());
  await t.throwsAsync(serveMetrics(first.address, empty), { code: 'EADDRINUSE' });
  await t.throwsAsync(serveMetrics('nonsense', empty));
});

test('a scrape fails when the store cannot report its stats', async (t) => {
  const store = await openTestStore(t, 'memory');
  const failing: Store = Object.create(store) as Store;
  failing.stats = () => Promise.reject(new Error('stats unavailable'));
  const metrics = metricsFor(t, failing, 'failing');
  await t.throwsAsync(metrics.text(), { message: 'stats unavailable' });
  // The next scrape asks again rather than repeating the failure.
  failing.stats = () => store.stats();
  t.is(value(await scrape(metrics), 'shardsnap_keys'), 0);
});
