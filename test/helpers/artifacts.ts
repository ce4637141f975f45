/** A small real records artifact, built from a memory store by the memory-scan strategy. */
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syntheticBatches } from '../../src/client/synthetic';
import { ArtifactWriter } from '../../src/snapshot';
import { MemoryStore } from '../../src/store';
import { memoryScan } from '../../src/strategies';
import { tempDir } from './nodes';

export async function buildArtifact(
  keys: number,
  valueSize = 40,
  seed = 9,
): Promise<{ path: string; buf: Buffer; sha256: string; cleanup: () => Promise<void> }> {
  const store = new MemoryStore();
  for (const batch of syntheticBatches({ keys, valueSize, types: 'mixed', seed }))
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
