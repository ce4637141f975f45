import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { nodeFor } from './helpers/harness';
import { s3For } from './helpers/s3';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const MiB = 1 << 20;
const PART = 5 * MiB;
const QUEUE = 1;

test('archiving holds memory bounded by the upload parts, not by the artifact', async (t) => {
  const s3 = await s3For(t, { partSizeBytes: PART, queueSize: QUEUE });
  const node = await nodeFor(t, { s3: s3.settings });
  // A 64 MiB artifact of incompressible values, about thirteen parts.
  for (let i = 0; i < 16; i++) {
    await node.node.store.write(
      Array.from({ length: 4 }, (_, j) => ({
        op: 'set' as const,
        key: Buffer.from(`blob:${i}:${j}`),
        value: randomBytes(MiB),
        expireAtMs: 0,
      })),
    );
  }
  const created = await node.client.createSnapshot();
  const snapshot = await node.client.waitReady({ snapshotId: created.id });
  const size = Number(snapshot.sizeBytes);
  t.true(size > 12 * PART);

  // Buffers the upload let go of are collected before each sample, so a sample shows
  // what is held, not what the GC has yet to free (a full GC per sample slows the upload,
  // hence the coarse interval).
  gc();
  const base = process.memoryUsage();
  let peakArrayBuffers = 0;
  let peakRss = 0;
  let samples = 0;
  const sample = (): void => {
    gc();
    // V8 frees array buffer memory on a background sweeper after a GC: read after it ran.
    setImmediate(() => {
      gc();
      const m = process.memoryUsage();
      peakArrayBuffers = Math.max(peakArrayBuffers, m.arrayBuffers - base.arrayBuffers);
      peakRss = Math.max(peakRss, m.rss - base.rss);
      samples++;
    });
  };
  const sampler = setInterval(sample, 100);
  let uploaded = 0;
  try {
    for await (const progress of node.client.archive({
      snapshotId: snapshot.id,
      bucket: s3.bucket,
    }))
      uploaded = Number(progress.bytesUploaded);
  } finally {
    clearInterval(sampler);
  }
  t.is(uploaded, size);
  t.log(
    `artifact ${(size / MiB).toFixed(1)} MiB; peak growth while uploading (${samples} samples): ` +
      `arrayBuffers ${(peakArrayBuffers / MiB).toFixed(1)} MiB held; rss ${(peakRss / MiB).toFixed(1)} MiB ` +
      '(RSS also counts freed memory not yet returned to the OS, so it is only reported)',
  );
  t.true(samples >= 10);
  // Parts in flight, the part being assembled (its pieces and their concatenation), one
  // just sent and the reader's few pieces ahead: a few parts, whatever the artifact's size.
  t.true(peakArrayBuffers < (QUEUE + 3) * PART + 8 * MiB, 'bounded by the parts');
  t.true(peakArrayBuffers < size / 2, 'buffers held stay well below the artifact size');
});
