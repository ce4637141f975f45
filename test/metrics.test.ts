import { stat } from 'node:fs/promises';
import * as http from 'node:http';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import test, { type ExecutionContext } from 'ava';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import pino from 'pino';
import { ShardsnapClient, migrateSlots } from '../src/client';
import { type ErrorCode, ErrorCodes, type SlotRange, isShardsnapError } from '../src/core';
import type { PullProgress__Output } from '../src/generated/shardsnap/v1/PullProgress';
import type { TestNode } from './helpers/nodes';
import { nodeFor, tempDirFor, waitFor } from './helpers/harness';
import { mixedData, tagsIn } from './helpers/split';
import { TOKENS, writeTokenFile } from './helpers/tls';

type Family = parsePrometheusTextFormat.MetricFamily;
type Sample = parsePrometheusTextFormat.Sample;

const MOVING: SlotRange = { start: 0, end: 8191 };
const STAYING: SlotRange = { start: 8192, end: 16383 };
const METRICS = '127.0.0.1:0';

/** One scrape of a node's endpoint: the exposition text, parsed two ways on demand. */
class Scrape {
  readonly families: Map<string, Family>;
  /** Every series by name, histograms untyped (their `_bucket`, `_sum`, `_count` apart). */
  readonly series = new Map<string, Family>();

  constructor(readonly text: string) {
    this.families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
    // The parser folds a histogram's labelled series into one unlabelled sample; without
    // their TYPE line each series becomes a family of its own and keeps its labels.
    const untyped = parsePrometheusTextFormat(text.replace(/^# TYPE \S+ histogram$/gm, ''));
    for (const family of untyped) {
      const seen = this.series.get(family.name);
      if (seen) seen.metrics.push(...family.metrics);
      else this.series.set(family.name, family);
    }
  }

  /** The samples of `name` (a counter, gauge or histogram series) carrying `labels`. */
  samples(name: string, labels: Record<string, string> = {}): Sample[] {
    const all = (this.series.get(name)?.metrics ?? []) as Sample[];
    return all.filter((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  }

  /** The value of the one sample of `name` with `labels`; undefined if none or several. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const matches = this.samples(name, labels);
    return matches.length === 1 ? Number(matches[0]!.value) : undefined;
  }

  /** The sum over every sample of `name` with `labels` (0 when there is none). */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.samples(name, labels).reduce((total, s) => total + Number(s.value), 0);
  }

  /** The `_count` of a histogram (checked to be one) with `labels`. */
  histogramCount(name: string, labels: Record<string, string> = {}): number | undefined {
    if (this.families.get(name)?.type !== 'HISTOGRAM') return undefined;
    return this.value(`${name}_count`, labels);
  }

  /** Names of series whose `node` label is not `nodeId` (or missing). */
  unlabelled(nodeId: string): string[] {
    const wrong: string[] = [];
    for (const family of this.series.values()) {
      for (const sample of family.metrics) {
        if (sample.labels?.node !== nodeId) wrong.push(family.name);
      }
    }
    return wrong;
  }
}

function get(address: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(`http://${address}${path}`, { timeout: 10_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
      );
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`GET ${path} timed out`)));
    request.on('error', reject);
  });
}

async function scrape(node: TestNode): Promise<Scrape> {
  const address = node.node.metricsAddress;
  if (!address) throw new Error(`node ${node.node.config.nodeId} serves no metrics`);
  const reply = await get(address, '/metrics');
  if (reply.status !== 200) throw new Error(`/metrics answered ${reply.status}: ${reply.body}`);
  return new Scrape(reply.body);
}

/** Scrapes until no transfer is in progress (bounded); returns the last scrape. */
async function settledScrape(node: TestNode): Promise<Scrape> {
  let last = await scrape(node);
  await waitFor(async () => {
    last = await scrape(node);
    return (
      last.value('shardsnap_transfers_in_progress', { direction: 'send' }) === 0 &&
      last.value('shardsnap_transfers_in_progress', { direction: 'recv' }) === 0
    );
  }, 5_000);
  return last;
}

function metricsNode(
  t: ExecutionContext,
  nodeId: string,
  options: Parameters<typeof nodeFor>[1] = {},
): Promise<TestNode> {
  return nodeFor(t, { nodeId, metricsListen: METRICS, ...options });
}

/** Store levels and the `node` label, compared with what the node reports itself. */
async function checkLevels(t: ExecutionContext, node: TestNode, scraped: Scrape): Promise<void> {
  const id = node.node.config.nodeId;
  const stats = await node.client.stats();
  t.is(scraped.value('shardsnap_keys'), Number(stats.keyCount), `${id}: keys`);
  t.is(scraped.value('shardsnap_data_bytes'), Number(stats.dataBytes), `${id}: data bytes`);
  t.is(
    scraped.value('shardsnap_stored_snapshots'),
    Number(stats.storedSnapshots),
    `${id}: stored snapshots`,
  );
  t.deepEqual(scraped.unlabelled(id), [], `${id}: every series carries node="${id}"`);
}

test('a fetch, a pull and a split are counted on the nodes that send and receive them', async (t) => {
  t.timeout(90_000);
  const source = await metricsNode(t, 'metrics-source');
  const puller = await metricsNode(t, 'metrics-puller');
  const splitTarget = await metricsNode(t, 'metrics-split-target', { slots: [] });
  for (const node of [source, puller, splitTarget]) {
    t.regex(node.node.metricsAddress ?? '', /^127\.0\.0\.1:\d+$/);
    t.not(node.node.metricsAddress, METRICS, 'the bound port is reported');
  }

  // Nothing counted yet: every series the checks below read starts at 0.
  const fresh = await scrape(source);
  t.is(fresh.value('shardsnap_transfer_bytes_total', { direction: 'send' }), 0);
  t.is(fresh.value('shardsnap_transfer_bytes_total', { direction: 'recv' }), 0);
  t.is(fresh.histogramCount('shardsnap_transfer_seconds', { direction: 'send' }), 0);
  t.is(fresh.histogramCount('shardsnap_write_seconds'), 0);
  t.is(fresh.histogramCount('shardsnap_write_pause_seconds'), 0);
  t.is(fresh.value('shardsnap_install_keys_total'), 0);
  t.is(fresh.sum('shardsnap_snapshots_total'), 0);
  t.is(fresh.value('shardsnap_keys'), 0);

  // Keys in both halves of the slot space, one Write call per tag.
  const batches = mixedData([...tagsIn(MOVING, 6), ...tagsIn(STAYING, 6)], 40);
  for (const batch of batches) await source.client.write({ mutations: batch });
  const totalKeys = batches.reduce((n, batch) => n + batch.length, 0);
  const movingKeys = batches.slice(0, 6).reduce((n, batch) => n + batch.length, 0);

  // A fetch into a file.
  const out = join(await tempDirFor(t), 'full.snap');
  const fetched = await source.client.fetchToFile({ out });
  t.true(fetched.bytes > 0);
  t.is((await stat(out)).size, fetched.bytes);

  // A pull of everything into a node that owns every slot.
  let pulled: PullProgress__Output | undefined;
  for await (const progress of puller.client.pull({ source: source.node.address })) {
    pulled = progress;
  }
  t.true(pulled?.done, 'the pull finished');
  const pulledBytes = Number(pulled?.bytesReceived);
  const pulledKeys = Number(pulled?.keysInstalled);
  t.true(pulledBytes > 0);
  t.is(pulledKeys, totalKeys);

  // A split of the lower half into a node that owns nothing.
  const split = await migrateSlots(splitTarget.client.connection, {
    source: source.node.address,
    slots: [MOVING],
    maxPauseMs: 1000,
  });
  t.is(split.phase, 'DONE');
  t.is(split.snapshotAttempts, 1);
  t.true(split.bytes > 0);
  t.is(split.keys, movingKeys);

  // The source drops the moved keys in the background; the levels are read after that.
  const cleaned = await waitFor(
    async () => Number((await source.client.stats()).keyCount) === totalKeys - movingKeys,
    10_000,
  );
  t.true(cleaned, 'the source dropped the moved keys');
  await waitFor(() => source.node.catalog.list().length === 0, 5_000);

  // The source sent three artifacts, received none, and built three snapshots.
  const atSource = await settledScrape(source);
  t.is(
    atSource.value('shardsnap_transfer_bytes_total', { direction: 'send' }),
    fetched.bytes + pulledBytes + split.bytes,
    'bytes sent = the fetched file + the pulled artifact + the split artifact',
  );
  t.is(atSource.value('shardsnap_transfer_bytes_total', { direction: 'recv' }), 0);
  t.is(atSource.value('shardsnap_transfers_in_progress', { direction: 'send' }), 0);
  t.is(atSource.value('shardsnap_transfers_in_progress', { direction: 'recv' }), 0);
  t.is(atSource.histogramCount('shardsnap_transfer_seconds', { direction: 'send' }), 3);
  t.is(atSource.histogramCount('shardsnap_transfer_seconds', { direction: 'recv' }), 0);
  t.is(atSource.sum('shardsnap_snapshots_total', { status: 'ready' }), 3);
  t.is(atSource.sum('shardsnap_snapshots_total', { status: 'ready', kind: 'full' }), 2);
  t.is(atSource.sum('shardsnap_snapshots_total', { status: 'ready', kind: 'slots' }), 1);
  t.is(atSource.sum('shardsnap_snapshots_total', { status: 'failed' }), 0);
  t.is(atSource.sum('shardsnap_snapshots_total', { status: 'cancelled' }), 0);
  t.is(atSource.value('shardsnap_install_keys_total'), 0);
  t.is(atSource.histogramCount('shardsnap_write_seconds'), batches.length, 'one per Write call');
  const pauses = atSource.histogramCount('shardsnap_write_pause_seconds') ?? 0;
  t.true(pauses >= 1, `the handoff paused writes on the source (${pauses} pauses)`);
  t.is(atSource.value('shardsnap_rejected_total', { reason: 'unauthenticated' }), 0);
  await checkLevels(t, source, atSource);
  t.is(atSource.value('shardsnap_keys'), totalKeys - movingKeys);

  // The puller received the one artifact it installed.
  const atPuller = await settledScrape(puller);
  t.is(atPuller.value('shardsnap_transfer_bytes_total', { direction: 'recv' }), pulledBytes);
  t.is(atPuller.value('shardsnap_transfer_bytes_total', { direction: 'send' }), 0);
  t.is(atPuller.histogramCount('shardsnap_transfer_seconds', { direction: 'recv' }), 1);
  t.is(atPuller.histogramCount('shardsnap_transfer_seconds', { direction: 'send' }), 0);
  t.is(atPuller.value('shardsnap_install_keys_total'), pulledKeys);
  t.is(atPuller.sum('shardsnap_snapshots_total'), 0, 'the puller built nothing');
  t.is(atPuller.histogramCount('shardsnap_write_seconds'), 0);
  await checkLevels(t, puller, atPuller);
  t.is(atPuller.value('shardsnap_keys'), totalKeys);

  // The split target received the migration's artifact.
  const atTarget = await settledScrape(splitTarget);
  t.is(atTarget.value('shardsnap_transfer_bytes_total', { direction: 'recv' }), split.bytes);
  t.is(atTarget.value('shardsnap_transfer_bytes_total', { direction: 'send' }), 0);
  t.is(atTarget.histogramCount('shardsnap_transfer_seconds', { direction: 'recv' }), 1);
  t.is(atTarget.histogramCount('shardsnap_transfer_seconds', { direction: 'send' }), 0);
  t.is(atTarget.sum('shardsnap_snapshots_total'), 0, 'the split target built nothing');
  t.is(atTarget.histogramCount('shardsnap_write_pause_seconds'), 0);
  await checkLevels(t, splitTarget, atTarget);
  t.is(atTarget.value('shardsnap_keys'), movingKeys);
});

// A migration installs its snapshot through the migration job, not through the RPCs that
// count installs: its keys must be counted too.
test('a split counts the keys it installs on the target', async (t) => {
  t.timeout(60_000);
  const source = await metricsNode(t, 'split-keys-source');
  const target = await metricsNode(t, 'split-keys-target', { slots: [] });
  const batches = mixedData(tagsIn(MOVING, 4), 30);
  for (const batch of batches) await source.client.write({ mutations: batch });
  const split = await migrateSlots(target.client.connection, {
    source: source.node.address,
    slots: [MOVING],
    maxPauseMs: 1000,
  });
  t.is(split.keys, 120);
  const scraped = await settledScrape(target);
  t.is(
    scraped.value('shardsnap_install_keys_total'),
    split.keys,
    'keys a migration installs count like those of a pull',
  );
});

test('a RocksDB node exports its store properties, labelled with the node', async (t) => {
  t.timeout(60_000);
  const node = await metricsNode(t, 'metrics-rocks', { backend: 'rocksdb' });
  const batches = mixedData(tagsIn(MOVING, 5), 50);
  for (const batch of batches) await node.client.write({ mutations: batch });
  const scraped = await scrape(node);
  for (const name of [
    'shardsnap_rocksdb_estimate_num_keys',
    'shardsnap_rocksdb_live_sst_bytes',
    'shardsnap_rocksdb_l0_files',
    'shardsnap_rocksdb_pending_compaction_bytes',
    'shardsnap_rocksdb_memtable_bytes',
  ]) {
    t.is(scraped.families.get(name)?.type, 'GAUGE', name);
    const value = scraped.value(name, { node: 'metrics-rocks' });
    t.true(value !== undefined && Number.isFinite(value) && value >= 0, `${name} = ${value}`);
  }
  t.true((scraped.value('shardsnap_rocksdb_estimate_num_keys') ?? 0) >= 250);
  t.true((scraped.value('shardsnap_rocksdb_memtable_bytes') ?? 0) > 0);
  t.is(scraped.histogramCount('shardsnap_write_seconds'), batches.length);
  await checkLevels(t, node, scraped);
  t.is(scraped.value('shardsnap_keys'), 250);

  // A memory node has none of them.
  const memory = await metricsNode(t, 'metrics-memory');
  const plain = await scrape(memory);
  t.false([...plain.families.keys()].some((name) => name.startsWith('shardsnap_rocksdb_')));
});

test('calls without a valid token are counted as rejected', async (t) => {
  t.timeout(60_000);
  const dir = await tempDirFor(t);
  const node = await metricsNode(t, 'metrics-auth', {
    authTokensFile: await writeTokenFile(dir),
  });
  const rejected = async (reason: string): Promise<number | undefined> =>
    (await scrape(node)).value('shardsnap_rejected_total', { reason });
  t.is(await rejected('unauthenticated'), 0);
  t.is(await rejected('permission_denied'), 0);

  const refusedAs = async (client: ShardsnapClient, code: ErrorCode): Promise<void> => {
    const error = await t.throwsAsync(client.stats());
    t.true(isShardsnapError(error, code), `${String(error)}`);
  };
  // node.client carries no token.
  await refusedAs(node.client, ErrorCodes.unauthenticated);
  t.is(await rejected('unauthenticated'), 1);

  const wrong = new ShardsnapClient(node.node.address, {
    security: { token: 'wrong-token-0123456789abcdef' },
  });
  t.teardown(() => wrong.close());
  await refusedAs(wrong, ErrorCodes.unauthenticated);
  t.is(await rejected('unauthenticated'), 2);

  const reader = new ShardsnapClient(node.node.address, { security: { token: TOKENS.read } });
  t.teardown(() => reader.close());
  t.is(Number((await reader.stats()).keyCount), 0);
  const denied = await t.throwsAsync(
    reader.write({ mutations: mixedData(tagsIn(MOVING, 1), 1)[0]! }),
  );
  t.true(isShardsnapError(denied, ErrorCodes.permissionDenied), `${String(denied)}`);
  const scraped = await scrape(node);
  t.is(scraped.value('shardsnap_rejected_total', { reason: 'unauthenticated' }), 2);
  t.is(scraped.value('shardsnap_rejected_total', { reason: 'permission_denied' }), 1);
  t.is(scraped.histogramCount('shardsnap_write_seconds'), 0, 'a refused Write is not timed');
  t.deepEqual(scraped.unlabelled('metrics-auth'), []);
});

test('the node started line names the metrics endpoint, which serves only /metrics', async (t) => {
  let log = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      log += chunk.toString();
      callback();
    },
  });
  const node = await metricsNode(t, 'metrics-logged', { logger: pino({ level: 'info' }, sink) });
  const started = log
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as { msg: string; metrics?: string })
    .find((line) => line.msg === 'node started');
  t.is(started?.metrics, `http://${node.node.metricsAddress}/metrics`);
  const address = node.node.metricsAddress ?? '';
  t.is((await get(address, '/metrics')).status, 200);
  t.is((await get(address, '/')).status, 404);

  // A node without metricsListen serves none.
  const quiet = await nodeFor(t, { nodeId: 'metrics-off' });
  t.is(quiet.node.metricsAddress, undefined);
});
