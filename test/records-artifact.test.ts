import test from 'ava';
import { isShardsnapError } from '../src/core';
import { RecordsDecoder, verifyArtifactFile } from '../src/snapshot';
import { buildArtifact } from './helpers/artifacts';

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
