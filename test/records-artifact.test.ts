import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { syntheticBatches } from '../src/client/synthetic';
import { isShardsnapError } from '../src/core';
import { ArtifactWriter, RecordsDecoder, verifyArtifactFile } from '../src/snapshot';
import { MemoryStore } from '../src/store';
import { memoryScan } from '../src/strategies';
import { tempDir } from './helpers/nodes';

async function buildArtifact(
  keys: number,
): Promise<{ path: string; buf: Buffer; sha256: string; cleanup: () => Promise<void> }> {
  const store = new MemoryStore();
  for (const batch of syntheticBatches({ keys, valueSize: 40, types: 'mixed', seed: 9 }))
    await store.write(batch);
  const dir = await tempDir();
  const path = join(dir, 'artifact.bin');
  const prepared = await memoryScan.prepare(store, {
    slots: [{ start: 0, end: 16383 }],
    full: true,
  });
  const writer = await ArtifactWriter.create(path, () => undefined);
  await prepared.write(
    writer,
    {
      format_version: 1,
      kind: 'records',
      snapshot_id: 'test',
      node_id: 'n',
      backend: 'memory',
      strategy: 'memory-scan',
      seq: prepared.seq,
      slots: [{ start: 0, end: 16383 }],
      full: true,
      created_at_ms: 0,
    },
    new AbortController().signal,
  );
  const { sha256 } = await writer.finish();
  await prepared.release();
  return {
    path,
    buf: await readFile(path),
    sha256,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

test('the decoder yields every record whatever the piece sizes', async (t) => {
  const { buf, cleanup } = await buildArtifact(2000);
  t.teardown(cleanup);
  let seed = 7;
  const random = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
  for (const max of [1, 3, 9, 64, 4096, 100_000]) {
    const decoder = new RecordsDecoder({ verifyInnerDigest: true });
    const keys = new Set<string>();
    for (let offset = 0; offset < buf.length;) {
      const length = 1 + Math.floor(random() * max);
      for (const r of decoder.push(buf.subarray(offset, offset + length)))
        keys.add(r.key.toString());
      offset += length;
    }
    t.is(decoder.finish().keyCount, 2000, `pieces up to ${max}`);
    t.is(keys.size, 2000);
  }
});

test('a flipped byte, a truncation or trailing bytes are detected', async (t) => {
  const { buf, path, sha256, cleanup } = await buildArtifact(500);
  t.teardown(cleanup);
  t.is((await verifyArtifactFile(path, sha256)).keyCount, 500);
  for (const position of [3, 20, Math.floor(buf.length / 2), buf.length - 40, buf.length - 1]) {
    const bad = Buffer.from(buf);
    bad[position] = (bad[position] as number) ^ 0x01;
    const error = t.throws(() => {
      const decoder = new RecordsDecoder({ verifyInnerDigest: true });
      decoder.push(bad);
      decoder.finish();
    });
    t.true(isShardsnapError(error, 'data_loss'), `flip at ${position}: ${error?.message}`);
  }
  t.throws(() => new RecordsDecoder().push(Buffer.concat([buf, Buffer.from([0])])));
  const truncated = new RecordsDecoder();
  truncated.push(buf.subarray(0, buf.length - 10));
  t.throws(() => truncated.finish());
});
