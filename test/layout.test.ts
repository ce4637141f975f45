import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { ESLint } from 'eslint';
import {
  AFTER_SERIALIZE,
  type OutgoingChunk,
  chunkSerializer,
} from '../src/server/chunk-serializer';
import { loadProto } from '../src/wire';

const ROOT = join(__dirname, '..');
const ONLY_LAYOUT_RULES = { 'import-x/no-cycle': 'error', 'import-x/no-restricted-paths': 'error' };

async function layoutProblems(files: string[]): Promise<string[]> {
  const results = await new ESLint({ cwd: ROOT }).lintFiles(files);
  return results.flatMap((r) =>
    r.messages
      .filter((m) => m.ruleId !== null && m.ruleId in ONLY_LAYOUT_RULES)
      .map((m) => `${r.filePath}:${m.line} ${m.ruleId}: ${m.message}`),
  );
}

test.serial('src/ has no import cycles and its folders import one way only', async (t) => {
  t.timeout(110_000);
  t.deepEqual(await layoutProblems(['src']), []);
});

// Serial: the probe file must not be seen by the test above.
test.serial(
  'the layout rules catch an import against the layers, type-only ones included',
  async (t) => {
    t.timeout(60_000);
    const probe = join(ROOT, 'src', 'snapshot', 'layout-probe.ts');
    await writeFile(
      probe,
      "import type { BuildSpec } from '../build';\nexport type Probe = BuildSpec;\n",
    );
    let problems: string[];
    try {
      problems = await layoutProblems([probe]);
    } finally {
      await rm(probe, { force: true });
    }
    t.is(problems.length, 1);
    t.regex(problems[0] ?? '', /no-restricted-paths/);
  },
);

function chunk(fields: Partial<OutgoingChunk>): OutgoingChunk {
  return {
    snapshotId: 'mx1-abc',
    offset: 0,
    data: Buffer.alloc(0),
    crc32c: 0,
    compression: 'COMPRESSION_NONE',
    rawLength: 0,
    last: false,
    sha256: '',
    info: null,
    ...fields,
  };
}

test('the hand-written SnapshotChunk encoder writes the same bytes as the protobuf library', (t) => {
  const general = loadProto().shardsnap.v1.Snapshots.service.FetchSnapshot.responseSerialize;
  const encode = chunkSerializer(general);
  const data = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 251));
  const cases: OutgoingChunk[] = [
    chunk({}),
    chunk({ snapshotId: '', data: Buffer.from([1, 2, 3]), rawLength: 3, crc32c: 1 }),
    chunk({ offset: 1, data, rawLength: data.length, crc32c: 0xffffffff }),
    chunk({ offset: 2 ** 40 + 5, data: data.subarray(0, 1), rawLength: 1, crc32c: 127 }),
    chunk({ offset: Number.MAX_SAFE_INTEGER, crc32c: 128, rawLength: 16 << 20 }),
    chunk({
      compression: 'COMPRESSION_ZSTD',
      data: data.subarray(0, 300),
      rawLength: 1 << 20,
      crc32c: 0x80000000,
      last: true,
      sha256: 'a'.repeat(64),
    }),
    chunk({ snapshotId: 'é-ü-✓', last: true, sha256: 'f'.repeat(64) }),
  ];
  for (const [i, c] of cases.entries()) {
    const expected = Buffer.from(general(c));
    const actual = Buffer.from(encode({ ...c }));
    t.deepEqual(actual, expected, `case ${i}`);
  }
  let released = 0;
  encode({ ...chunk({ data }), [AFTER_SERIALIZE]: () => released++ });
  t.is(released, 1, 'the chunk buffer is released once its bytes are copied');
});
