import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ShardsnapClient, loadSynthetic } from '../../client';
import { type SlotRange, formatSlotRanges, internal } from '../../core';
import { verifyArtifactFile } from '../../snapshot';
import { action, globals, positiveInt } from '../common';
import { emit, formatBytes, mibPerSecond, table } from '../output';
import { progressBar } from '../progress';
import { describeSplit, splitStep } from './demo-split';

interface Step {
  step: string;
  keys: number;
  bytes: number;
  ms: number;
}

/**
 * The main job end to end on two local nodes: load mixed data, fetch a full snapshot to
 * a file, verify it, install it into a second node, keep writing, pull a slot range,
 * compare digests, then split half the slots off to a fourth node under writes.
 */
/** Series of a node's metrics worth a look after the demo's transfers. */
const EXCERPT =
  /^shardsnap_(transfer_bytes_total|transfer_seconds_count|snapshots_total|write_seconds_count|write_pause_seconds_count|keys|spool_bytes)[{ ]/;

/** A few lines of what the node's metrics endpoint serves, scraped over HTTP. */
async function metricsExcerpt(address: string | undefined): Promise<string[]> {
  if (!address) return ['  (no metrics endpoint)'];
  try {
    const response = await fetch(`http://${address}/metrics`);
    const text = await response.text();
    return text
      .split('\n')
      .filter((line) => EXCERPT.test(line))
      .map((line) => `  ${line}`);
  } catch (error) {
    return [`  (metrics unavailable: ${(error as Error).message})`];
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'local nodes: load, full fetch to a file, install, slot-range pull, digests, split under writes',
    )
    .option('--keys <n>', 'keys to load', positiveInt, 200_000)
    .option('--value-size <bytes>', 'bytes per value', positiveInt, 512)
    .option('--keep', 'keep the demo data dir')
    .action(
      action(
        async (options: { keys: number; valueSize: number; keep?: boolean }, command: Command) => {
          const json = globals(command).json ?? false;
          const say = (line: string): void => {
            if (!json) process.stderr.write(`${line}\n`);
          };
          const dir = await mkdtemp(join(tmpdir(), 'shardsnap-demo-'));
          // Loaded here, not at start-up: the node's modules cost every other command ~0.1 s.
          const { ShardNode } = await import('../../server/node');
          const { default: pino } = await import('pino');
          const logger = pino({ level: 'warn' }, pino.destination(2));
          const source = await ShardNode.start({
            listen: '127.0.0.1:0',
            dataDir: join(dir, 'node-a'),
            nodeId: 'node-a',
            metricsListen: '127.0.0.1:0',
            logger,
          });
          const target = await ShardNode.start({
            listen: '127.0.0.1:0',
            dataDir: join(dir, 'node-b'),
            nodeId: 'node-b',
            logger,
          });
          const rocks = await ShardNode.start({
            listen: '127.0.0.1:0',
            backend: 'rocksdb',
            dataDir: join(dir, 'node-c'),
            nodeId: 'node-c',
            logger,
          });
          const a = new ShardsnapClient(source.address);
          const b = new ShardsnapClient(target.address);
          const c = new ShardsnapClient(rocks.address);
          const steps: Step[] = [];
          const timed = async <T>(
            step: string,
            body: () => Promise<T>,
            size: (r: T) => { keys: number; bytes: number },
          ): Promise<T> => {
            const started = performance.now();
            const result = await body();
            steps.push({ step, ...size(result), ms: performance.now() - started });
            return result;
          };
          try {
            say(
              `node A (memory) on ${source.address}, node B (memory) on ${target.address}, ` +
                `node C (rocksdb) on ${rocks.address}, data in ${dir}`,
            );
            const loadBar = progressBar('load', !json, 'keys');
            const loaded = await timed(
              'load mixed data into A',
              () =>
                loadSynthetic(a, {
                  keys: options.keys,
                  valueSize: options.valueSize,
                  types: 'mixed',
                  seed: 42,
                  onProgress: (done) => loadBar.update(done, options.keys),
                }),
              (r) => ({ keys: r.keys, bytes: r.bytes }),
            );
            loadBar.stop();

            const out = join(dir, 'full.snap');
            const fetchBar = progressBar('fetch', !json);
            const fetched = await timed(
              'full snapshot A → file',
              () => a.fetchToFile({ out, onProgress: (r, t) => fetchBar.update(r, t) }),
              (r) => ({ keys: Number(r.info.keyCount), bytes: r.bytes }),
            );
            fetchBar.stop();
            say(`snapshot ${fetched.info.id} at seq ${fetched.info.seq}: ${out}`);

            const verified = await timed(
              'verify file',
              () => verifyArtifactFile(out, fetched.sha256),
              (r) => ({ keys: r.keyCount, bytes: r.bytes }),
            );
            const installBar = progressBar('install', !json);
            const installed = await timed(
              'install file → B',
              () => b.installFile({ path: out, onProgress: (s, t) => installBar.update(s, t) }),
              (r) => ({ keys: Number(r.keysInstalled), bytes: Number(r.bytes) }),
            );
            installBar.stop();
            const fullA = await a.digest();
            const fullB = await b.digest();

            // A keeps taking writes; B catches up on one slot range by pulling it.
            await loadSynthetic(a, {
              keys: Math.ceil(options.keys / 10),
              valueSize: options.valueSize,
              types: 'mixed',
              seed: 7,
            });
            const range: SlotRange[] = [{ start: 0, end: 4095 }];
            const pullBar = progressBar('pull', !json);
            const pulled = await timed(
              `pull slots ${formatSlotRanges(range)} A → B`,
              async () => {
                for await (const p of b.pull({ source: source.address, slots: range })) {
                  pullBar.update(Number(p.bytesReceived), Number(p.totalBytes));
                  if (p.done && p.result) return p.result;
                }
                throw internal('pull ended without a result');
              },
              (r) => ({ keys: Number(r.keysInstalled), bytes: Number(r.bytes) }),
            );
            pullBar.stop();
            const rangeA = await a.digest({ slots: range });
            const rangeB = await b.digest({ slots: range });

            // RocksDB: C pulls all of A (records → one ingested SST), then C's own full
            // snapshot is a checkpoint, fetched to a file like any artifact.
            const rocksBar = progressBar('pull', !json);
            await timed(
              'pull all A → C (rocksdb, SST ingest)',
              async () => {
                for await (const p of c.pull({ source: source.address })) {
                  rocksBar.update(Number(p.bytesReceived), Number(p.totalBytes));
                  if (p.done && p.result) return p.result;
                }
                throw internal('pull ended without a result');
              },
              (r) => ({ keys: Number(r.keysInstalled), bytes: Number(r.bytes) }),
            );
            rocksBar.stop();
            const checkpointOut = join(dir, 'checkpoint.snap');
            const checkpointBar = progressBar('fetch', !json);
            const checkpoint = await timed(
              'checkpoint C → file',
              () =>
                c.fetchToFile({
                  out: checkpointOut,
                  onProgress: (r, t) => checkpointBar.update(r, t),
                }),
              (r) => ({ keys: Number(r.info.keyCount), bytes: r.bytes }),
            );
            checkpointBar.stop();
            const allA = await a.digest();
            const allC = await c.digest();
            const rocksMatch = allA.digest === allC.digest;

            // A splits: slots 8192-16383 move to a new node D while a writer adds keys there.
            const splitRange: SlotRange[] = [{ start: 8192, end: 16383 }];
            const split = await timed(
              `split slots ${formatSlotRanges(splitRange)} A → D under writes`,
              () => splitStep(source.address, splitRange, dir, logger, !json),
              (r) => ({ keys: r.status.keys, bytes: r.status.bytes }),
            );

            const fullMatch = fullA.digest === fullB.digest;
            const rangeMatch = rangeA.digest === rangeB.digest;
            const summary = {
              ok: fullMatch && rangeMatch && rocksMatch && split.ok,
              keysLoaded: loaded.keys,
              snapshot: {
                id: fetched.info.id,
                seq: fetched.info.seq,
                bytes: fetched.bytes,
                sha256: fetched.sha256,
              },
              verifiedKeys: verified.keyCount,
              installedKeys: installed.keysInstalled,
              pulled: { slots: range, keys: pulled.keysInstalled, bytes: pulled.bytes },
              digests: {
                full: { a: fullA.digest, b: fullB.digest, match: fullMatch },
                range: { a: rangeA.digest, b: rangeB.digest, match: rangeMatch },
                rocksdb: { a: allA.digest, c: allC.digest, match: rocksMatch },
              },
              split: {
                slots: splitRange,
                writePauseMs: split.status.writePauseMs,
                writesDuringSplit: split.writesDuringSplit,
                writesFound: split.writesFound,
                match: split.ok,
              },
              checkpoint: {
                id: checkpoint.info.id,
                strategy: checkpoint.info.strategy,
                bytes: checkpoint.bytes,
              },
              steps: steps.map(({ ms, ...step }) => ({ ...step, elapsedMs: ms })),
            };
            const excerpt = json ? [] : await metricsExcerpt(source.metricsAddress);
            emit(globals(command), summary, () => [
              '',
              table([
                ['step', 'keys', 'size', 'time', 'MiB/s', 'keys/s'],
                ...steps.map((s) => [
                  s.step,
                  String(s.keys),
                  formatBytes(s.bytes),
                  `${(s.ms / 1000).toFixed(2)} s`,
                  mibPerSecond(s.bytes, s.ms).toFixed(1),
                  String(Math.round(s.keys / (s.ms / 1000))),
                ]),
              ]),
              '',
              `full digest   A ${fullA.digest.slice(0, 16)}…  B ${fullB.digest.slice(0, 16)}…  ${fullMatch ? 'MATCH' : 'DIFFER'} (${fullA.keyCount} keys)`,
              `slots ${formatSlotRanges(range)}  A ${rangeA.digest.slice(0, 16)}…  B ${rangeB.digest.slice(0, 16)}…  ${rangeMatch ? 'MATCH' : 'DIFFER'} (${rangeA.keyCount} keys)`,
              `rocksdb       A ${allA.digest.slice(0, 16)}…  C ${allC.digest.slice(0, 16)}…  ${rocksMatch ? 'MATCH' : 'DIFFER'} (${allC.keyCount} keys; checkpoint ${checkpoint.info.strategy}, ${formatBytes(checkpoint.bytes)})`,
              describeSplit(split),
              '',
              `metrics of A (excerpt of http://${source.metricsAddress ?? '?'}/metrics):`,
              ...excerpt,
            ]);
            if (!fullMatch || !rangeMatch || !rocksMatch || !split.ok) process.exitCode = 1;
          } finally {
            a.close();
            b.close();
            c.close();
            await source.stop(500);
            await target.stop(500);
            await rocks.stop(500);
            if (!options.keep) await rm(dir, { recursive: true, force: true });
          }
        },
      ),
    );
}
