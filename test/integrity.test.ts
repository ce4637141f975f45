import test, { type ExecutionContext } from 'ava';
import { crc32c } from '@node-rs/crc32';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { compress } from 'zstd-napi';
import { ShardsnapClient, loadSynthetic } from '../src/client';
import { NodeFetch } from '../src/transfer';
import { ErrorCodes, encodeRecord, isShardsnapError } from '../src/core';
import type { SnapshotChunk } from '../src/generated/shardsnap/v1/SnapshotChunk';
import { RecordsDecoder, verifyArtifactFile } from '../src/snapshot';
import { TcpProxy, b, flipByte, nodeFor, rawInstall, sha256, tempDirFor } from './helpers/harness';
import type { TestNode } from './helpers/nodes';

const CHUNK = 4096;

/** Plain chunks of an artifact as InstallSnapshot messages, last one with the SHA-256. */
function chunksOf(artifact: Buffer, chunkSize = CHUNK): SnapshotChunk[] {
  const chunks: SnapshotChunk[] = [];
  for (let offset = 0; offset < artifact.length; offset += chunkSize) {
    const data = artifact.subarray(offset, Math.min(artifact.length, offset + chunkSize));
    const last = offset + data.length === artifact.length;
    chunks.push({
      snapshotId: 'raw-install',
      offset,
      data,
      crc32c: crc32c(data),
      compression: 'COMPRESSION_NONE',
      rawLength: data.length,
      last,
      sha256: last ? sha256(artifact) : '',
    });
  }
  return chunks;
}

interface Fixture {
  source: TestNode;
  target: TestNode;
  artifact: Buffer;
  /** The target's digest and key count before any install attempt. */
  before: { digest: string; keyCount: number; seq: number };
}

async function fixture(t: ExecutionContext, keys = 800): Promise<Fixture> {
  const source = await nodeFor(t);
  const target = await nodeFor(t);
  await loadSynthetic(source.client, { keys, valueSize: 80, types: 'mixed', seed: 21 });
  // The target has other data, which a failed install must leave as it is.
  await loadSynthetic(target.client, { keys: 300, valueSize: 50, types: 'mixed', seed: 99 });
  await target.client.write({
    mutations: [{ op: 'set', key: b('target-only'), value: b('keep me'), expireAtMs: 0 }],
  });
  const dir = await tempDirFor(t);
  const out = join(dir, 'a.snap');
  await source.client.fetchToFile({ out });
  const artifact = await readFile(out);
  const d = await target.client.digest();
  return {
    source,
    target,
    artifact,
    before: { digest: d.digest, keyCount: Number(d.keyCount), seq: Number(d.seq) },
  };
}

async function assertUnchanged(t: ExecutionContext, f: Fixture): Promise<void> {
  const d = await f.target.client.digest();
  t.is(d.digest, f.before.digest, 'target digest unchanged');
  t.is(Number(d.keyCount), f.before.keyCount, 'target key count unchanged');
  t.is(Number(d.seq), f.before.seq, 'target seq unchanged');
  t.true((await f.target.client.read({ keys: [b('target-only')] }))[0]!.found);
}

test('the raw install path works with well-formed chunks (control)', async (t) => {
  const f = await fixture(t);
  const result = await rawInstall(f.target.client.connection, chunksOf(f.artifact));
  t.is(result.error, undefined);
  t.is((await f.target.client.digest()).digest, (await f.source.client.digest()).digest);
});

test('a flipped byte under the original CRC32C fails with DATA_LOSS and changes nothing', async (t) => {
  const f = await fixture(t);
  const chunks = chunksOf(f.artifact);
  t.true(chunks.length > 6);
  for (const index of [0, 3, chunks.length - 1]) {
    const tampered = chunks.map((c) => ({ ...c }));
    const data = Buffer.from(tampered[index]!.data as Buffer);
    flipByte(data, Math.floor(data.length / 2), 0x01);
    tampered[index]!.data = data;
    const { error } = await rawInstall(f.target.client.connection, tampered);
    t.is(error?.code, status.DATA_LOSS, `flip in chunk ${index}: ${error?.details}`);
    await assertUnchanged(t, f);
  }
});

test('correct CRCs but a wrong final SHA-256 fails with DATA_LOSS and changes nothing', async (t) => {
  const f = await fixture(t);
  const chunks = chunksOf(f.artifact);
  const last = chunks[chunks.length - 1]!;
  last.sha256 = sha256(Buffer.from('something else'));
  const { error } = await rawInstall(f.target.client.connection, chunks);
  t.is(error?.code, status.DATA_LOSS, error?.details);
  await assertUnchanged(t, f);

  // Corrupt bytes whose CRC32C was recomputed (a sender-side corruption) are caught as well.
  for (const at of [
    f.artifact.length >> 2,
    f.artifact.length >> 1,
    f.artifact.length - 40,
    f.artifact.length - 5,
  ]) {
    const corrupt = Buffer.from(f.artifact);
    flipByte(corrupt, at, 0x20);
    const tampered = chunksOf(corrupt).map((c) => ({
      ...c,
      sha256: c.last ? sha256(f.artifact) : '',
    }));
    const result = await rawInstall(f.target.client.connection, tampered);
    t.is(result.error?.code, status.DATA_LOSS, `byte ${at}: ${result.error?.details}`);
    await assertUnchanged(t, f);
  }
});

test('a truncated artifact presented as complete (with its own SHA-256) is refused', async (t) => {
  const f = await fixture(t);
  const truncated = f.artifact.subarray(0, f.artifact.length - 3 * CHUNK - 7);
  const cut = await rawInstall(f.target.client.connection, chunksOf(truncated));
  t.is(cut.error?.code, status.DATA_LOSS, cut.error?.details);
  await assertUnchanged(t, f);
  // Cut just before the trailer's inner digest, too.
  const noDigest = f.artifact.subarray(0, f.artifact.length - 32);
  const r2 = await rawInstall(f.target.client.connection, chunksOf(noDigest));
  t.is(r2.error?.code, status.DATA_LOSS, r2.error?.details);
  await assertUnchanged(t, f);
});

// installFile computes the whole-file SHA-256 from the file itself, so it must check the
// artifact's inner SHA-256 before it sends the last chunk.
test('installing a file corrupted at rest (a flipped value byte) is refused and changes nothing', async (t) => {
  const f = await fixture(t);
  // A value whose bytes are known, so the flip leaves the structure intact.
  const canary = Buffer.from('CANARY-VALUE-'.repeat(8));
  await f.source.client.write({
    mutations: [{ op: 'set', key: b('canary'), value: canary, expireAtMs: 0 }],
  });
  const dir = await tempDirFor(t);
  const out = join(dir, 'c.snap');
  await f.source.client.fetchToFile({ out });
  const corrupt = await readFile(out);
  const at = corrupt.indexOf(canary) + 20;
  t.true(at > 20);
  flipByte(corrupt, at, 0x01);
  await writeFile(out, corrupt);
  // The file itself is caught by verify…
  const verifyError = await t.throwsAsync(verifyArtifactFile(out));
  t.is((verifyError as { code?: string }).code, 'data_loss');
  // …and must be refused by an install as well.
  const error = await t.throwsAsync(f.target.client.installFile({ path: out }));
  t.is((error as { code?: string }).code, 'data_loss');
  await assertUnchanged(t, f);
});

test('a stream that ends without its last chunk fails and changes nothing', async (t) => {
  const f = await fixture(t);
  const chunks = chunksOf(f.artifact);
  // Everything but the last chunk.
  const withoutLast = await rawInstall(f.target.client.connection, chunks.slice(0, -1));
  t.truthy(withoutLast.error);
  t.not(withoutLast.error?.code, status.OK);
  await assertUnchanged(t, f);
  // Every byte, but the last chunk is not flagged as last.
  const unflagged = chunks.map((c) => ({ ...c, last: false, sha256: '' }));
  const r2 = await rawInstall(f.target.client.connection, unflagged);
  t.truthy(r2.error);
  await assertUnchanged(t, f);
  // An empty stream.
  const r3 = await rawInstall(f.target.client.connection, []);
  t.truthy(r3.error);
  await assertUnchanged(t, f);
  // The last chunk without its SHA-256.
  const noSha = chunks.map((c) => ({ ...c, sha256: '' }));
  const r4 = await rawInstall(f.target.client.connection, noSha);
  t.truthy(r4.error);
  await assertUnchanged(t, f);
});

test('chunks out of order, with a gap or overlapping fail and change nothing', async (t) => {
  const f = await fixture(t);
  const chunks = chunksOf(f.artifact);
  const swapped = [chunks[0]!, chunks[2]!, chunks[1]!, ...chunks.slice(3)];
  const gap = [chunks[0]!, ...chunks.slice(2)];
  const repeated = [chunks[0]!, chunks[1]!, chunks[1]!, ...chunks.slice(2)];
  const notFromZero = chunks.slice(1);
  for (const [name, messages] of Object.entries({ swapped, gap, repeated, notFromZero })) {
    const { error } = await rawInstall(f.target.client.connection, messages);
    t.truthy(error, name);
    t.not(error?.code, status.OK, name);
    await assertUnchanged(t, f);
  }
});

test('a bad compressed chunk or a wrong raw_length fails with DATA_LOSS', async (t) => {
  const f = await fixture(t);
  const chunks = chunksOf(f.artifact);
  const garbage = chunks.map((c, i) =>
    i === 2
      ? { ...c, compression: 'COMPRESSION_ZSTD' as const, data: Buffer.from('not zstd at all') }
      : c,
  );
  const r1 = await rawInstall(f.target.client.connection, garbage);
  t.is(r1.error?.code, status.DATA_LOSS, r1.error?.details);
  await assertUnchanged(t, f);

  // A valid zstd frame of the wrong bytes.
  const wrong = chunks.map((c, i) => {
    if (i !== 1) return c;
    const other = Buffer.from(c.data as Buffer);
    flipByte(other, 0, 1);
    return { ...c, compression: 'COMPRESSION_ZSTD' as const, data: compress(other) };
  });
  const r2 = await rawInstall(f.target.client.connection, wrong);
  t.is(r2.error?.code, status.DATA_LOSS, r2.error?.details);
  await assertUnchanged(t, f);

  const badLength = chunks.map((c, i) =>
    i === 1 ? { ...c, rawLength: (c.rawLength as number) + 1 } : c,
  );
  const r3 = await rawInstall(f.target.client.connection, badLength);
  t.is(r3.error?.code, status.DATA_LOSS, r3.error?.details);
  await assertUnchanged(t, f);

  // The same artifact, zstd-compressed correctly, installs (control for the compressed path).
  const good = chunks.map((c) => ({
    ...c,
    compression: 'COMPRESSION_ZSTD' as const,
    data: compress(c.data as Buffer),
  }));
  const ok = await rawInstall(f.target.client.connection, good);
  t.is(ok.error, undefined);
  t.is((await f.target.client.digest()).digest, (await f.source.client.digest()).digest);
});

test('verifyArtifactFile rejects a file with any one flipped byte as data_loss', async (t) => {
  const source = await nodeFor(t);
  await loadSynthetic(source.client, { keys: 120, valueSize: 40, types: 'mixed', seed: 4 });
  const dir = await tempDirFor(t);
  const out = join(dir, 'v.snap');
  const fetched = await source.client.fetchToFile({ out });
  const artifact = await readFile(out);
  const ok = await verifyArtifactFile(out);
  t.is(ok.sha256, fetched.sha256);

  const bad = join(dir, 'bad.snap');
  // Every byte of the header and trailer, and a spread of record bytes; without the
  // expected SHA-256, so only the artifact's own structure can catch it.
  const headerEnd = 12 + artifact.readUInt32LE(8);
  const positions = new Set<number>();
  for (let i = 0; i < headerEnd + 8; i++) positions.add(i);
  for (let i = artifact.length - 44; i < artifact.length; i++) positions.add(i);
  for (let i = 0; i < 60; i++)
    positions.add(headerEnd + Math.floor(((artifact.length - headerEnd - 44) * i) / 60));
  const failures: string[] = [];
  for (const at of positions) {
    for (const mask of [0x01, 0x80]) {
      const corrupt = Buffer.from(artifact);
      flipByte(corrupt, at, mask);
      await writeFile(bad, corrupt);
      try {
        await verifyArtifactFile(bad);
        failures.push(`byte ${at}^${mask}: accepted`);
      } catch (error) {
        if (!isShardsnapError(error, ErrorCodes.dataLoss)) {
          failures.push(`byte ${at}^${mask}: ${(error as Error).name} ${(error as Error).message}`);
        }
      }
    }
  }
  t.deepEqual(failures, [], 'every single flipped byte is a data_loss error');

  // With the expected SHA-256, too.
  const corrupt = Buffer.from(artifact);
  flipByte(corrupt, artifact.length >> 1, 0x10);
  await writeFile(bad, corrupt);
  const error = await t.throwsAsync(verifyArtifactFile(bad, fetched.sha256));
  t.is((error as { code?: string }).code, 'data_loss');
  // A truncated file.
  await writeFile(bad, artifact.subarray(0, artifact.length - 1));
  const truncated = await t.throwsAsync(verifyArtifactFile(bad));
  t.is((truncated as { code?: string }).code, 'data_loss');
});

test('a chunk corrupted in transit is detected by its CRC32C and fetched again', async (t) => {
  const source = await nodeFor(t);
  await loadSynthetic(source.client, { keys: 1500, valueSize: 150, types: 'string', seed: 8 });
  const info = await source.client.waitReady({
    snapshotId: (await source.client.createSnapshot()).id,
  });
  const dir = await tempDirFor(t);
  const artifact = await readFile(
    (await source.client.fetchToFile({ out: join(dir, 'clean.snap'), snapshotId: info.id })).path,
  );
  // 12 bytes from the middle of the artifact: found in the gRPC stream inside a chunk's data.
  const needle = artifact.subarray(artifact.length >> 1, (artifact.length >> 1) + 12);
  t.is(artifact.indexOf(needle), artifact.length >> 1, 'the needle is unique');

  // A node source through a corrupting proxy: one retry, caused by a data_loss.
  const proxy = await TcpProxy.start(source.node.address, { corruptOnce: needle });
  t.teardown(() => proxy.close());
  const client = new ShardsnapClient(proxy.address);
  t.teardown(() => client.close());
  const received: Buffer[] = [];
  const retries: Array<{ code: string; offset: number }> = [];
  const result = new NodeFetch(client.connection, {
    snapshotId: info.id,
    chunkSize: 16384,
    retryDelayMs: 10,
    onRetry: (error, offset) => retries.push({ code: error.code, offset }),
  });
  for await (const chunk of result.chunks()) received.push(chunk.data);
  t.is(result.expectedSha256(), info.sha256);
  t.is(proxy.corrupted, 1);
  t.is(result.resumes, 1);
  t.is(retries.length, 1);
  t.is(retries[0]!.code, 'data_loss');
  t.true(
    retries[0]!.offset > 0 && retries[0]!.offset <= artifact.length >> 1,
    'resumed from the last good chunk',
  );
  t.is(sha256(Buffer.concat(received)), info.sha256);

  // With no retries allowed, fetchToFile fails with data_loss and keeps only verified bytes.
  const proxy2 = await TcpProxy.start(source.node.address, { corruptOnce: needle });
  t.teardown(() => proxy2.close());
  const client2 = new ShardsnapClient(proxy2.address);
  t.teardown(() => client2.close());
  const out = join(dir, 'noretry.snap');
  const error = await t.throwsAsync(
    client2.fetchToFile({ out, snapshotId: info.id, chunkSize: 16384, maxRetries: 0 }),
  );
  t.is((error as { code?: string }).code, 'data_loss');
  t.false(existsSync(out));
  const part = await readFile(`${out}.part`);
  t.true(
    part.length > 0 && part.equals(artifact.subarray(0, part.length)),
    'the part file holds only good bytes',
  );
  // Running again resumes from the part file and gets the whole artifact.
  const resumed = await source.client.fetchToFile({ out, chunkSize: 16384 });
  t.is(resumed.resumedFrom, part.length);
  t.is(resumed.sha256, info.sha256);
  await verifyArtifactFile(out, info.sha256);
});

test('RecordsDecoder gives the same records whatever the sizes of the pieces it is fed', async (t) => {
  const source = await nodeFor(t);
  await loadSynthetic(source.client, { keys: 400, valueSize: 300, types: 'mixed', seed: 12 });
  const dir = await tempDirFor(t);
  const artifact = await readFile(
    (await source.client.fetchToFile({ out: join(dir, 'p.snap') })).path,
  );
  const decode = (pieceSize: number): string[] => {
    const decoder = new RecordsDecoder();
    const keys: string[] = [];
    for (let offset = 0; offset < artifact.length; offset += pieceSize) {
      for (const r of decoder.push(artifact.subarray(offset, offset + pieceSize))) {
        keys.push(`${r.key.toString('hex')}:${encodeRecord(r.key, r.entry).toString('hex')}`);
      }
    }
    t.is(decoder.finish().keyCount, 400, `piece size ${pieceSize}`);
    return keys;
  };
  const whole = decode(artifact.length);
  t.is(whole.length, 400);
  for (const size of [1, 3, 4, 5, 11, 64, 1000, 4096, 7777, 65536]) {
    t.deepEqual(decode(size), whole, `piece size ${size}`);
  }
});
