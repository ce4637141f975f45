/**
 * The write-ahead log on real files: round trips across segments, recovery from torn and
 * corrupt tails, DATA_LOSS for damage it must not paper over, group commit and the fsync
 * policies (through the log's own write/fsync counters), a full disk on a small tmpfs, and
 * a property test of recovery at random cut points.
 */
import { execFileSync } from 'node:child_process';
import {
  cp,
  mkdtemp,
  readFile,
  readdir,
  rename,
  rm,
  stat,
  truncate,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import fc from 'fast-check';
import { ErrorCodes, ErrorReasons, type ShardsnapError, isShardsnapError } from '../src/core';
import { type FsyncPolicy, Wal, type WalOptions, type WalRecord } from '../src/wal';
import { flipByte, sleep, tempDirFor } from './helpers/harness';

const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const SEED = Number(process.env.FUZZ_SEED ?? 20261202);

const HEADER_BYTES = 16;
const OVERHEAD_BYTES = 17;

function record(seq: number, text = `value-${seq}`, kind = seq % 7): WalRecord {
  return { seq, kind, payload: Buffer.from(text) };
}

function plain(records: readonly WalRecord[]): { seq: number; kind: number; payload: string }[] {
  return records.map((r) => ({ seq: r.seq, kind: r.kind, payload: r.payload.toString('hex') }));
}

async function collect(source: AsyncIterable<WalRecord>): Promise<WalRecord[]> {
  const out: WalRecord[] = [];
  for await (const item of source) out.push(item);
  return out;
}

/** Opens a log closed when the test ends. */
async function openFor(t: ExecutionContext, options: WalOptions): ReturnType<typeof Wal.open> {
  const opened = await Wal.open(options);
  t.teardown(() => opened.wal.close().catch(() => undefined));
  return opened;
}

/** Writes `records` (one batch per `perTurn`), closes the log. */
async function writeLog(
  dir: string,
  records: readonly WalRecord[],
  segmentBytes: number,
  perTurn = 1,
): Promise<void> {
  const { wal } = await Wal.open({ dir, fsync: 'never', segmentBytes });
  for (let i = 0; i < records.length; i += perTurn) {
    await Promise.all(records.slice(i, i + perTurn).map((r) => wal.append(r)));
  }
  await wal.close();
}

async function segmentFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((name) => /^wal-\d{20}\.log$/.test(name)).sort();
}

async function dataLossOf(dir: string): Promise<ShardsnapError> {
  const error = await Wal.open({ dir, fsync: 'never' }).then(
    async ({ wal }) => {
      await wal.close();
      return undefined;
    },
    (e: unknown) => e,
  );
  if (!isShardsnapError(error, ErrorCodes.dataLoss)) {
    throw new Error(`expected DATA_LOSS, got ${String(error)}`);
  }
  return error;
}

/** The records of each segment file, found by walking encoded sizes (records in log order). */
async function layout(
  dir: string,
  records: readonly WalRecord[],
): Promise<{ name: string; size: number; records: { record: WalRecord; end: number }[] }[]> {
  const out = [];
  let next = 0;
  for (const name of await segmentFiles(dir)) {
    const size = (await stat(join(dir, name))).size;
    const inSegment = [];
    let at = HEADER_BYTES;
    while (at < size) {
      const r = records[next++];
      if (!r) throw new Error('layout: more bytes than records');
      at += OVERHEAD_BYTES + r.payload.length;
      inSegment.push({ record: r, end: at });
    }
    out.push({ name, size, records: inSegment });
  }
  return out;
}

test('records round-trip across many segments, and again after a reopen', async (t) => {
  const dir = join(await tempDirFor(t, 'wal-'), 'wal');
  const records = Array.from({ length: 300 }, (_, i) => record(i + 1, 'x'.repeat(i % 50)));
  const { wal, report } = await openFor(t, { dir, fsync: 'never', segmentBytes: 512 });
  t.deepEqual(report, { truncatedBytes: 0, segments: 0, firstSeq: undefined, lastSeq: undefined });
  for (let i = 0; i < records.length; i += 10) {
    await Promise.all(records.slice(i, i + 10).map((r) => wal.append(r)));
  }
  t.is(wal.firstSeq, 1);
  t.is(wal.lastSeq, 300);
  t.deepEqual(plain(await collect(wal.read(0))), plain(records));
  const files = await segmentFiles(dir);
  t.true(files.length > 10, `${files.length} segments`);
  t.is(files[0], 'wal-00000000000000000001.log');
  let onDisk = 0;
  for (const name of files) onDisk += (await stat(join(dir, name))).size;
  t.is(wal.bytes, onDisk);
  await wal.close();
  await wal.close();

  const reopened = await openFor(t, { dir, fsync: 'never', segmentBytes: 512 });
  t.deepEqual(reopened.report, {
    truncatedBytes: 0,
    segments: files.length,
    firstSeq: 1,
    lastSeq: 300,
  });
  t.is(reopened.wal.bytes, onDisk);
  t.deepEqual(plain(await collect(reopened.wal.read(0))), plain(records));
  // Appends go on where the log ended.
  await reopened.wal.append(record(301));
  t.deepEqual(plain(await collect(reopened.wal.read(300))), plain([records[299]!, record(301)]));
});

test('read starts at a seq in the middle, equal seqs included', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const records: WalRecord[] = [];
  for (let seq = 1; seq <= 40; seq++) {
    records.push(record(seq, `a${seq}`), record(seq, `b${seq}`));
  }
  const { wal } = await openFor(t, { dir, fsync: 'never', segmentBytes: 200 });
  for (const r of records) void wal.append(r);
  t.deepEqual(plain(await collect(wal.read(17))), plain(records.filter((r) => r.seq >= 17)));
  t.deepEqual(plain(await collect(wal.read(40))), plain(records.slice(-2)));
  t.deepEqual(await collect(wal.read(41)), []);
});

test('read includes what was appended before the call and can be aborted', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'never', segmentBytes: 300 });
  for (let seq = 1; seq <= 50; seq++) void wal.append(record(seq));
  const reading = wal.read(1);
  for (let seq = 51; seq <= 60; seq++) void wal.append(record(seq));
  const seen = (await collect(reading)).map((r) => r.seq);
  t.deepEqual(
    seen.slice(0, 50),
    Array.from({ length: 50 }, (_, i) => i + 1),
  );

  const controller = new AbortController();
  const error = await t.throwsAsync(async () => {
    for await (const r of wal.read(1, { signal: controller.signal })) {
      if (r.seq === 10) controller.abort();
    }
  });
  t.true(isShardsnapError(error, ErrorCodes.cancelled), String(error));
});

test('truncateBefore deletes only the segments wholly below the seq', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 100 }, (_, i) => record(i + 1, 'y'.repeat(20)));
  const { wal } = await openFor(t, { dir, fsync: 'never', segmentBytes: 150 });
  for (const r of records) await wal.append(r);
  const before = await layout(dir, records);
  t.true(before.length > 5);
  const bytesBefore = wal.bytes;

  // A seq inside the fourth segment: the first three go, the fourth stays.
  const fourth = before[3]!;
  const cutSeq = fourth.records[1]!.record.seq;
  await wal.truncateBefore(cutSeq);
  const after = await segmentFiles(dir);
  t.deepEqual(
    after,
    before.slice(3).map((s) => s.name),
  );
  t.is(wal.firstSeq, fourth.records[0]!.record.seq);
  t.is(wal.bytes, bytesBefore - before.slice(0, 3).reduce((sum, s) => sum + s.size, 0));
  t.deepEqual(
    plain(await collect(wal.read(0))),
    plain(records.filter((r) => r.seq >= wal.firstSeq!)),
  );

  // Past the end: everything but the segment being appended to.
  await wal.truncateBefore(1_000);
  t.deepEqual(await segmentFiles(dir), [before.at(-1)!.name]);
  await wal.append(record(101));
  await wal.close();
  const reopened = await openFor(t, { dir, fsync: 'never' });
  t.is(reopened.report.firstSeq, before.at(-1)!.records[0]!.record.seq);
  t.is(reopened.report.lastSeq, 101);
});

test('a running read keeps the segments it still needs from truncateBefore', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 60 }, (_, i) => record(i + 1, 'z'.repeat(30)));
  const { wal } = await openFor(t, { dir, fsync: 'never', segmentBytes: 200 });
  for (const r of records) void wal.append(r);
  const seen: number[] = [];
  for await (const r of wal.read(0)) {
    seen.push(r.seq);
    if (r.seq === 3) await wal.truncateBefore(1_000);
  }
  t.deepEqual(
    seen,
    records.map((r) => r.seq),
  );
  // Once the read is done, the covered segments can go.
  await wal.truncateBefore(1_000);
  t.is((await segmentFiles(dir)).length, 1);
});

test('a torn last record: every cut point keeps every whole record', async (t) => {
  const root = await tempDirFor(t, 'wal-');
  const source = join(root, 'source');
  const records = Array.from({ length: 10 }, (_, i) => record(i + 1, `payload-${i}`));
  await writeLog(source, records, 100);
  const segments = await layout(source, records);
  const last = segments.at(-1)!;
  t.true(segments.length >= 3 && last.records.length >= 2, 'the last record shares a segment');
  const lastEnd = last.size;
  const lastStart = lastEnd - OVERHEAD_BYTES - records.at(-1)!.payload.length;
  for (let cut = lastStart; cut < lastEnd; cut++) {
    const dir = join(root, `cut-${cut}`);
    await cp(source, dir, { recursive: true });
    await truncate(join(dir, last.name), cut);
    const { wal, report } = await Wal.open({ dir, fsync: 'never' });
    t.is(report.truncatedBytes, cut - lastStart, `cut at ${cut}`);
    if (cut > lastStart) t.regex(report.truncatedReason ?? '', /record at offset \d+ of wal-/);
    t.is(report.lastSeq, 9);
    t.deepEqual(plain(await collect(wal.read(0))), plain(records.slice(0, -1)), `cut at ${cut}`);
    // The log goes on after the cut as if the torn record had never been written.
    await wal.append(record(10, 'again'));
    await wal.close();
    t.is((await stat(join(dir, last.name))).size, lastStart + OVERHEAD_BYTES + 5);
    await rm(dir, { recursive: true });
  }
});

test('a last segment with nothing whole in it is removed at open', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 5 }, (_, i) => record(i + 1));
  await writeLog(dir, records, 60);
  const last = (await layout(dir, records)).at(-1)!;
  t.is(last.records.length, 1);
  const cases = [
    { size: HEADER_BYTES + 5, truncated: 5 },
    { size: HEADER_BYTES, truncated: 0 },
    { size: 11, truncated: 11 },
    { size: 3, truncated: 3 },
    { size: 0, truncated: 0 },
  ];
  for (const { size, truncated } of cases) {
    await truncate(join(dir, last.name), size);
    const { wal, report } = await Wal.open({ dir, fsync: 'never', segmentBytes: 60 });
    t.is(report.truncatedBytes, truncated, `size ${size}`);
    t.is(report.lastSeq, 4);
    t.false((await segmentFiles(dir)).includes(last.name));
    t.deepEqual(plain(await collect(wal.read(0))), plain(records.slice(0, 4)));
    // The previous segment is full: the record starts the same segment again.
    await wal.append(records[4]!);
    await wal.close();
    t.true((await segmentFiles(dir)).includes(last.name));
  }
});

test('a flipped byte in the last record is cut off; in an earlier segment it is DATA_LOSS', async (t) => {
  const root = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 30 }, (_, i) => record(i + 1, `v${i}`.repeat(4)));

  const tail = join(root, 'tail');
  await writeLog(tail, records, 150);
  const segments = await layout(tail, records);
  const last = segments.at(-1)!;
  const lastPath = join(tail, last.name);
  const bytes = await readFile(lastPath);
  flipByte(bytes, bytes.length - 2);
  await writeFile(lastPath, bytes);
  const { wal, report } = await Wal.open({ dir: tail, fsync: 'never' });
  const lastRecordBytes = OVERHEAD_BYTES + records.at(-1)!.payload.length;
  t.is(report.truncatedBytes, lastRecordBytes);
  t.regex(report.truncatedReason ?? '', /CRC32C mismatch/);
  t.deepEqual(plain(await collect(wal.read(0))), plain(records.slice(0, -1)));
  await wal.close();

  const middle = join(root, 'middle');
  await writeLog(middle, records, 150);
  const second = (await layout(middle, records))[1]!;
  const secondPath = join(middle, second.name);
  const secondBytes = await readFile(secondPath);
  const offset = second.records[1]!.end - 3;
  flipByte(secondBytes, offset);
  await writeFile(secondPath, secondBytes);
  const error = await dataLossOf(middle);
  t.is(error.metadata.file, second.name);
  t.is(error.metadata.offset, String(second.records[0]!.end));
  t.regex(error.message, /CRC32C mismatch/);
  // Nothing was cut: the damaged segment is still whole on disk.
  t.is((await stat(secondPath)).size, second.size);
});

test('a missing middle segment is DATA_LOSS naming the missing seqs', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 30 }, (_, i) => record(i + 1, 'm'.repeat(20)));
  await writeLog(dir, records, 120);
  const segments = await layout(dir, records);
  t.true(segments.length >= 4);
  const gone = segments[2]!;
  await unlink(join(dir, gone.name));
  const error = await dataLossOf(dir);
  const missingFrom = segments[1]!.records.at(-1)!.record.seq;
  const missingTo = gone.records.at(-1)!.record.seq;
  t.is(error.metadata.file, segments[3]!.name);
  t.is(error.metadata.missing_after_seq, String(missingFrom));
  t.is(error.metadata.missing_through_seq, String(missingTo));
  t.regex(
    error.message,
    new RegExp(`after seq ${missingFrom} through seq ${missingTo} are missing`),
  );
});

test('a segment not matching its name, or with a bad magic, is DATA_LOSS', async (t) => {
  const root = await tempDirFor(t, 'wal-');
  const records = Array.from({ length: 20 }, (_, i) => record(i + 1, 'n'.repeat(20)));

  const renamed = join(root, 'renamed');
  await writeLog(renamed, records, 120);
  const first = (await segmentFiles(renamed))[0]!;
  await rename(join(renamed, first), join(renamed, 'wal-00000000000000000000.log'));
  const nameError = await dataLossOf(renamed);
  t.regex(nameError.message, /first record has seq 1, the file name says 0/);
  t.is(nameError.metadata.file, 'wal-00000000000000000000.log');

  for (const which of ['first', 'last'] as const) {
    const dir = join(root, `magic-${which}`);
    await writeLog(dir, records, 120);
    const files = await segmentFiles(dir);
    const path = join(dir, which === 'first' ? files[0]! : files.at(-1)!);
    const bytes = await readFile(path);
    bytes[0] = 0x58;
    await writeFile(path, bytes);
    const error = await dataLossOf(dir);
    t.regex(error.message, /bad magic/);
    t.is(error.metadata.offset, '0');
  }
});

test("'always' resolves an append only after the fsync that covers it", async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'always' });
  const before = wal.fsyncs;
  const seenAtResolve: number[] = [];
  const appends = Array.from({ length: 50 }, (_, i) =>
    wal.append(record(i + 1)).then(() => seenAtResolve.push(wal.fsyncs)),
  );
  t.is(wal.fsyncs, before);
  await Promise.all(appends);
  // One batch, one fsync, and every append saw it done.
  t.deepEqual(seenAtResolve, Array<number>(50).fill(before + 1));
  for (let seq = 51; seq <= 55; seq++) {
    await wal.append(record(seq));
    t.is(wal.fsyncs, before + 1 + (seq - 50));
  }
});

test("'never' fsyncs only at rotation and close; 'everysec' once a second when written", async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const never = (await Wal.open({ dir: join(dir, 'never'), fsync: 'never', segmentBytes: 100 }))
    .wal;
  for (let seq = 1; seq <= 3; seq++) await never.append(record(seq, 'p'.repeat(40)));
  const files = (await segmentFiles(join(dir, 'never'))).length;
  t.is(never.fsyncs, files - 1, 'one per rotation');
  await never.close();
  t.is(never.fsyncs, files);

  const { wal } = await openFor(t, { dir: join(dir, 'everysec'), fsync: 'everysec' });
  await wal.append(record(1));
  t.is(wal.fsyncs, 0);
  await sleep(1_300);
  t.is(wal.fsyncs, 1);
  await sleep(1_100);
  t.is(wal.fsyncs, 1, 'nothing written: no fsync');
  await wal.append(record(2));
  await sleep(1_100);
  t.is(wal.fsyncs, 2);
});

test('group commit: appends of one turn go out in one write', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'always' });
  const before = { writes: wal.writes, fsyncs: wal.fsyncs };
  const appends = [];
  for (let seq = 1; seq <= 1000; seq++) appends.push(wal.append(record(seq)));
  await Promise.all(appends);
  // The segment's header and the batch.
  t.is(wal.writes - before.writes, 2);
  t.is(wal.fsyncs - before.fsyncs, 1);

  // Appends made while a flush is in flight form the next batch.
  const first = wal.append(record(1001));
  await new Promise((resolve) => setImmediate(resolve));
  const during = Array.from({ length: 100 }, (_, i) => wal.append(record(1002 + i)));
  await Promise.all([first, ...during]);
  t.true(wal.writes - before.writes <= 4, `${wal.writes - before.writes} writes`);
  t.deepEqual(
    (await collect(wal.read(0))).map((r) => r.seq),
    Array.from({ length: 1101 }, (_, i) => i + 1),
  );
});

test('bad records are refused without failing the log; a closed log refuses appends', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'never' });
  await wal.append(record(5));
  for (const bad of [
    record(4),
    record(-1),
    record(1.5),
    { seq: 6, kind: 256, payload: Buffer.alloc(0) },
    { seq: 6, kind: -1, payload: Buffer.alloc(0) },
  ]) {
    const error = await t.throwsAsync(wal.append(bad));
    t.true(isShardsnapError(error, ErrorCodes.invalidArgument), String(error));
  }
  t.is(wal.failure, undefined);
  await wal.append(record(6));
  t.is(wal.lastSeq, 6);
  await wal.close();
  const closed = await t.throwsAsync(wal.append(record(7)));
  t.true(isShardsnapError(closed) && closed.reason === ErrorReasons.storeClosed, String(closed));
});

test('a payload is released once, after it was copied into the write or when refused', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'never' });
  const released: number[] = [];
  const owned = (seq: number, bytes: number): WalRecord => {
    const payload = Buffer.alloc(bytes, seq % 251);
    return {
      seq,
      kind: 1,
      payload,
      release: () => {
        released.push(seq);
        // The owner reuses its buffer at once: the log must already have copied it.
        payload.fill(0xee);
      },
    };
  };
  // Batches of every size: small, several in one turn, and one past the kept encode buffer.
  const sizes = [10, 100_000, 3_000_000, 9_000_000, 20, 1];
  const appends = sizes.map((bytes, i) => wal.append(owned(i + 1, bytes)));
  t.deepEqual(released, [], 'nothing released before the batch is encoded');
  await Promise.all(appends);
  await wal.append(owned(7, 2_000_000));
  t.deepEqual(
    released.sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7],
  );
  const refused = await t.throwsAsync(wal.append(owned(3, 5)));
  t.true(isShardsnapError(refused, ErrorCodes.invalidArgument), String(refused));
  t.is(released.filter((seq) => seq === 3).length, 2, 'a refused record is released too');
  await wal.close();
  const back = await collect((await openFor(t, { dir, fsync: 'never' })).wal.read(0));
  t.deepEqual(
    back.map((r) => [r.seq, r.payload.length, r.payload.every((b) => b === r.seq % 251)]),
    [...sizes, 2_000_000].map((bytes, i) => [i + 1, bytes, true]),
    'every record reads back as appended, not as its reused buffer',
  );
});

test('bytesSinceCheckpoint counts appended bytes until markCheckpoint', async (t) => {
  const dir = await tempDirFor(t, 'wal-');
  const { wal } = await openFor(t, { dir, fsync: 'never' });
  void wal.append(record(1, 'abc'));
  t.is(wal.bytesSinceCheckpoint, OVERHEAD_BYTES + 3);
  wal.markCheckpoint();
  t.is(wal.bytesSinceCheckpoint, 0);
  await wal.append(record(2, 'abcdef'));
  t.is(wal.bytesSinceCheckpoint, OVERHEAD_BYTES + 6);
});

for (const fsync of ['never', 'always'] as const) {
  test(`a full disk fails the log with NO_SPACE; acknowledged records survive a reopen (${fsync})`, async (t) => {
    t.timeout(60_000);
    const mountPoint = await mkdtemp(join(tmpdir(), 'shardsnap-wal-full-'));
    try {
      // A 1 MiB file system: needs root and the right to mount, as on the CI machines.
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], {
        stdio: 'ignore',
      });
    } catch {
      await rm(mountPoint, { recursive: true, force: true });
      t.log('cannot mount a small file system here: not checked');
      t.pass();
      return;
    }
    t.teardown(async () => {
      execFileSync('umount', [mountPoint]);
      await rm(mountPoint, { recursive: true, force: true });
    });
    const filler = join(mountPoint, 'filler');
    await writeFile(filler, Buffer.alloc(256 * 1024));
    const dir = join(mountPoint, 'wal');
    const reported: ShardsnapError[] = [];
    const { wal } = await Wal.open({
      dir,
      fsync,
      segmentBytes: 128 * 1024,
      onError: (error) => reported.push(error),
    });
    const acked: WalRecord[] = [];
    let failure: unknown;
    let seq = 0;
    while (failure === undefined && seq < 10_000) {
      const turn = Array.from({ length: 7 }, () => record(++seq, `${seq}:`.padEnd(3000, 'f')));
      const outcomes = await Promise.allSettled(turn.map((r) => wal.append(r)));
      outcomes.forEach((outcome, i) => {
        if (outcome.status === 'fulfilled') acked.push(turn[i]!);
        else failure ??= outcome.reason;
      });
    }
    t.true(isShardsnapError(failure, ErrorCodes.resourceExhausted), String(failure));
    t.is((failure as ShardsnapError).reason, ErrorReasons.noSpace);
    t.is(wal.failure, failure as ShardsnapError);
    // The hook is for failures nobody awaits: with 'always' the append itself says so.
    t.deepEqual(reported, fsync === 'always' ? [] : [failure as ShardsnapError]);
    t.true(acked.length > 100, `${acked.length} acknowledged`);

    // Later appends are refused at once, without touching the disk.
    const writes = wal.writes;
    const later = await t.throwsAsync(wal.append(record(++seq)));
    t.is(later, failure as ShardsnapError);
    t.is(wal.writes, writes);

    t.deepEqual(plain(await collect(wal.read(0))), plain(acked));
    await wal.close();

    await unlink(filler);
    const reopened = await Wal.open({ dir, fsync: 'never', segmentBytes: 128 * 1024 });
    t.is(reopened.report.lastSeq, acked.at(-1)!.seq);
    t.deepEqual(plain(await collect(reopened.wal.read(0))), plain(acked));
    await reopened.wal.append(record(++seq));
    t.is(reopened.wal.lastSeq, seq);
    await reopened.wal.close();
  });
}

test('property: after a cut anywhere in the log, open keeps exactly the whole records before it', async (t) => {
  const root = await tempDirFor(t, 'wal-prop-');
  let run = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          step: fc.integer({ min: 0, max: 3 }),
          kind: fc.integer({ min: 0, max: 255 }),
          payload: fc.uint8Array({ maxLength: 80 }),
        }),
        { minLength: 1, maxLength: 40 },
      ),
      fc.integer({ min: 40, max: 400 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 1, max: 5 }),
      async (specs, segmentBytes, where, perTurn) => {
        const dir = join(root, `run-${run++}`);
        let seq = 0;
        const records = specs.map((s) => ({
          seq: (seq += s.step),
          kind: s.kind,
          payload: Buffer.from(s.payload),
        }));
        await writeLog(dir, records, segmentBytes, perTurn);
        const segments = await layout(dir, records);
        const total = segments.reduce((sum, s) => sum + s.size, 0);
        // A cut at a global position: later segments gone, the one holding it shortened.
        let cut = Math.floor(where * total);
        let index = 0;
        while (index < segments.length - 1 && cut >= segments[index]!.size) {
          cut -= segments[index]!.size;
          index++;
        }
        const cutSegment = segments[index]!;
        for (const later of segments.slice(index + 1)) await unlink(join(dir, later.name));
        cut = Math.min(cut, cutSegment.size);
        await truncate(join(dir, cutSegment.name), cut);

        const kept = [
          ...segments.slice(0, index).flatMap((s) => s.records.map((r) => r.record)),
          ...cutSegment.records.filter((r) => r.end <= cut).map((r) => r.record),
        ];
        const wholeEnd = cutSegment.records.filter((r) => r.end <= cut).at(-1)?.end ?? HEADER_BYTES;
        const { wal, report } = await Wal.open({ dir, fsync: 'never' });
        try {
          t.deepEqual(plain(await collect(wal.read(0))), plain(kept));
          t.is(report.lastSeq, kept.at(-1)?.seq);
          t.is(report.truncatedBytes, cut < HEADER_BYTES ? cut : cut - wholeEnd);
        } finally {
          await wal.close();
          await rm(dir, { recursive: true });
        }
      },
    ),
    { numRuns: RUNS, seed: SEED },
  );
});

test.serial('micro-benchmark: 200k appends of ~100 bytes per fsync policy', async (t) => {
  t.timeout(110_000);
  const root = await tempDirFor(t, 'wal-bench-');
  const payload = Buffer.alloc(100, 0x61);
  const count = 200_000;
  const perTurn = 1_000;
  for (const fsync of ['never', 'everysec', 'always'] as FsyncPolicy[]) {
    const { wal } = await Wal.open({ dir: join(root, fsync), fsync });
    const started = process.hrtime.bigint();
    for (let seq = 0; seq < count; seq += perTurn) {
      let last: Promise<void> | undefined;
      for (let i = 0; i < perTurn; i++) last = wal.append({ seq: seq + i, kind: 1, payload });
      await last;
    }
    await wal.close();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    t.log(
      `${fsync}: ${Math.round(count / seconds).toLocaleString('en')} records/s ` +
        `(${wal.writes} writes, ${wal.fsyncs} fsyncs, ${(wal.bytes / 2 ** 20).toFixed(1)} MiB)`,
    );
    t.is(wal.lastSeq, count - 1);
  }
  // The worst case for batching: one append per turn, each awaited.
  for (const fsync of ['never', 'everysec'] as FsyncPolicy[]) {
    const { wal } = await Wal.open({ dir: join(root, `${fsync}-one-by-one`), fsync });
    const started = process.hrtime.bigint();
    for (let seq = 0; seq < count / 10; seq++) await wal.append({ seq, kind: 1, payload });
    await wal.close();
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    t.log(
      `${fsync}, one append per turn: ${Math.round(count / 10 / seconds).toLocaleString('en')} records/s`,
    );
  }
});
