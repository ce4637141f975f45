/**
 * Property-based fuzzing of what a hostile client controls: artifact bytes (records and
 * files), chunks and install headers. Every input must either decode or be refused with
 * a ShardsnapError (never a TypeError, a RangeError or a hang). A fixed seed and a bounded
 * number of runs in `make test`; `make fuzz` runs many more (FUZZ_RUNS, FUZZ_SEED).
 */
import test from 'ava';
import fc from 'fast-check';
import { ShardsnapError } from '../src/core';
import {
  FilesDecoder,
  MAGIC,
  RecordsDecoder,
  decodeChunk,
  encodeHeader,
  tryDecodeHeader,
} from '../src/snapshot';
import { buildArtifact } from './helpers/artifacts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
const SEED = Number(process.env.FUZZ_SEED ?? 20261202);
const params = { numRuns: RUNS, seed: SEED };

/** Runs `body`; a ShardsnapError is a refusal, anything else thrown fails the property. */
function refusesCleanly(body: () => void): void {
  try {
    body();
  } catch (error) {
    if (!(error instanceof ShardsnapError)) throw error;
  }
}

async function refusesCleanlyAsync(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (error) {
    if (!(error instanceof ShardsnapError)) throw error;
  }
}

let artifact: Promise<Buffer> | undefined;

/** A small valid records artifact (mixed types), built once. */
function validArtifact(): Promise<Buffer> {
  artifact ??= buildArtifact(60, 24, 5).then(async (built) => {
    await built.cleanup();
    return built.buf;
  });
  return artifact;
}

/** A mutation of a byte string: flips, overwrites, cuts and insertions. */
const mutation: fc.Arbitrary<ByteChange> = fc.oneof(
  fc.record({
    kind: fc.constant('flip' as const),
    at: fc.nat(),
    mask: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({
    kind: fc.constant('insert' as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ maxLength: 16 }),
  }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.nat() }),
);

type ByteChange =
  | { kind: 'flip'; at: number; mask: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'u32'; at: number; value: number };

function mutate(base: Buffer, changes: readonly ByteChange[]): Buffer {
  let bytes = Buffer.from(base);
  for (const change of changes) {
    const at = bytes.length === 0 ? 0 : change.at % bytes.length;
    if (change.kind === 'flip') bytes[at] = (bytes[at] ?? 0) ^ change.mask;
    else if (change.kind === 'cut') bytes = bytes.subarray(0, at);
    else if (change.kind === 'insert')
      bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(change.bytes), bytes.subarray(at)]);
    else if (at + 4 <= bytes.length) bytes.writeUInt32LE(change.value >>> 0, at);
  }
  return bytes;
}

test('records decoder: mutated artifacts in any piece sizes decode or are refused with a domain error', async (t) => {
  const base = await validArtifact();
  fc.assert(
    fc.property(
      fc.array(mutation, { minLength: 1, maxLength: 4 }),
      fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 8 }),
      (changes, sizes) => {
        const bytes = mutate(base, changes);
        refusesCleanly(() => {
          const decoder = new RecordsDecoder({ verifyInnerDigest: true });
          let offset = 0;
          for (let i = 0; offset < bytes.length; i++) {
            const size = sizes[i % sizes.length] ?? 1;
            decoder.push(bytes.subarray(offset, offset + size));
            offset += size;
          }
          decoder.finish();
        });
      },
    ),
    params,
  );
  t.pass();
});

test('records decoder: random bytes after a valid header are refused with a domain error', (t) => {
  const header = encodeHeader({
    format_version: 1,
    kind: 'records',
    snapshot_id: 'fuzz',
    node_id: 'n',
    backend: 'memory',
    strategy: 'memory-scan',
    seq: 0,
    slots: [{ start: 0, end: 16383 }],
    full: true,
    created_at_ms: 0,
  });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2048 }), (tail) => {
      refusesCleanly(() => {
        const decoder = new RecordsDecoder();
        decoder.push(Buffer.concat([header, Buffer.from(tail)]));
        decoder.finish();
      });
    }),
    params,
  );
  t.pass();
});

test('install header: any JSON after the magic is a valid header or a domain error', (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.boolean(), (value, asHeaderShape) => {
      const json = asHeaderShape
        ? {
            format_version: 1,
            kind: 'records',
            seq: 0,
            slots: [{ start: 0, end: 16383 }],
            full: true,
            ...(typeof value === 'object' && value !== null && !Array.isArray(value)
              ? value
              : { extra: value }),
          }
        : value;
      const body = Buffer.from(JSON.stringify(json) ?? 'null');
      const length = Buffer.alloc(4);
      length.writeUInt32LE(body.length);
      refusesCleanly(() => {
        const parsed = tryDecodeHeader(Buffer.concat([MAGIC, length, body]));
        if (parsed) {
          // What passes has what an install relies on.
          const { slots, full } = parsed.header;
          if (!Array.isArray(slots) || (slots.length === 0 && full !== true))
            throw new Error('a header without slots was accepted');
          if (!Number.isSafeInteger(parsed.header.seq) || parsed.header.seq < 0)
            throw new Error('a header with a bad seq was accepted');
        }
      });
    }),
    params,
  );
  t.pass();
});

test('chunk decoder: any data, length, CRC and compression decode to raw_length bytes or are refused', (t) => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 4096 }),
      fc.integer({ min: -2, max: 1 << 25 }),
      fc.nat(),
      fc.constantFrom('none' as const, 'zstd' as const),
      (data, rawLength, crc, compression) => {
        refusesCleanly(() => {
          const raw = decodeChunk(
            { offset: 0, data: Buffer.from(data), crc32c: crc, compression, rawLength },
            'fuzz',
          );
          if (raw.length !== rawLength) throw new Error('raw length not enforced');
        });
      },
    ),
    params,
  );
  t.pass();
});

test('files decoder: random bytes after a files header are refused with a domain error', async (t) => {
  const header = encodeHeader({
    format_version: 1,
    kind: 'files',
    snapshot_id: 'fuzz',
    node_id: 'n',
    backend: 'rocksdb',
    strategy: 'rocksdb-checkpoint',
    seq: 0,
    slots: [{ start: 0, end: 16383 }],
    full: true,
    created_at_ms: 0,
    files: [
      { name: 'CURRENT', size: 16 },
      { name: '000001.sst', size: 64 },
    ],
  } as Parameters<typeof encodeHeader>[0]);
  await fc.assert(
    fc.asyncProperty(
      fc.uint8Array({ maxLength: 512 }),
      fc.integer({ min: 1, max: 64 }),
      async (tail, size) => {
        await refusesCleanlyAsync(async () => {
          const decoder = new FilesDecoder(() => Promise.resolve());
          const bytes = Buffer.concat([header, Buffer.from(tail)]);
          for (let offset = 0; offset < bytes.length; offset += size) {
            await decoder.push(bytes.subarray(offset, offset + size));
          }
          decoder.finish();
        });
      },
    ),
    params,
  );
  t.pass();
});
