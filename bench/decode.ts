/**
 * Section `decode` (row 31): the records decoder on single large frames, fed in 1 MiB
 * pieces as an install receives them. Time and memory must grow linearly with the frame:
 * joining the pieces received so far at each push made a 150 MiB frame take ~56 s.
 */
import { performance } from 'node:perf_hooks';
import { encodeRecord } from '../src/core';
import { RecordsDecoder, encodeHeader } from '../src/snapshot';
import type { Row } from './report';
import { verdict } from './report';
import { MiB, log } from './util';

type Attempt = (n: number, body: () => Promise<Row>) => Promise<void>;

export const DECODE_ROWS: Record<number, [string, string]> = {
  31: [
    'decode: one record frame of 25/50/100/200 MiB in 1 MiB pieces',
    '200 MiB time per MiB ≤ 2 × 25 MiB time per MiB',
  ],
};

const SIZES_MIB = [25, 50, 100, 200];
const PIECE = MiB;

function artifactWithOneFrame(mib: number): Buffer {
  const header = encodeHeader({
    format_version: 1,
    kind: 'records',
    snapshot_id: 'bench',
    node_id: 'bench',
    backend: 'memory',
    strategy: 'memory-scan',
    seq: 0,
    slots: [{ start: 0, end: 16383 }],
    full: true,
    created_at_ms: 0,
  });
  const record = encodeRecord(Buffer.from('big'), {
    value: { type: 'string', value: Buffer.alloc(mib * MiB, 7) },
    expireAtMs: 0,
  });
  const length = Buffer.alloc(4);
  length.writeUInt32LE(record.length);
  return Buffer.concat([header, length, record]);
}

/** Decodes `bytes` in pieces; the time and how far the process's external memory rose. */
function decode(bytes: Buffer): { ms: number; peakExtraMiB: number } {
  global.gc?.();
  const base = process.memoryUsage().arrayBuffers;
  let peak = base;
  const decoder = new RecordsDecoder({ views: true });
  const started = performance.now();
  for (let offset = 0; offset < bytes.length; offset += PIECE) {
    decoder.push(bytes.subarray(offset, offset + PIECE));
    peak = Math.max(peak, process.memoryUsage().arrayBuffers);
  }
  return { ms: performance.now() - started, peakExtraMiB: (peak - base) / MiB };
}

export async function decodeSuite(attempt: Attempt): Promise<void> {
  await attempt(31, () => {
    const results = SIZES_MIB.map((mib) => {
      const bytes = artifactWithOneFrame(mib);
      decode(bytes); // warm-up: first touch of the pages
      const runs = [decode(bytes), decode(bytes), decode(bytes)].sort((a, b) => a.ms - b.ms);
      const median = runs[1] ?? runs[0];
      if (!median) throw new Error('no run');
      log(
        `  ${mib} MiB frame: ${median.ms.toFixed(1)} ms (${(median.ms / mib).toFixed(2)} ms/MiB), ` +
          `external memory +${median.peakExtraMiB.toFixed(0)} MiB`,
      );
      return { mib, ms: median.ms, peakExtraMiB: median.peakExtraMiB };
    });
    const first = results[0];
    const last = results[results.length - 1];
    if (!first || !last) throw new Error('no sizes');
    const perMiBFirst = first.ms / first.mib;
    const perMiBLast = last.ms / last.mib;
    const ratio = perMiBLast / perMiBFirst;
    const [name, target] = DECODE_ROWS[31] ?? ['', ''];
    return Promise.resolve({
      n: 31,
      name,
      value: perMiBLast,
      valueText: `${perMiBLast.toFixed(2)} ms/MiB`,
      baseline: perMiBFirst,
      baselineText: `${perMiBFirst.toFixed(2)} ms/MiB`,
      ratio,
      ratioText: ratio.toFixed(2),
      target,
      verdict: verdict(ratio <= 2),
      note: results
        .map(
          (r) =>
            `${r.mib} MiB: ${r.ms.toFixed(0)} ms, +${r.peakExtraMiB.toFixed(0)} MiB external memory`,
        )
        .join('; '),
      details: { results },
    });
  });
}
