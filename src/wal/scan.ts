import { open, readdir, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { walDataLoss } from './errors';
import {
  SEGMENT_HEADER_BYTES,
  decodeSegmentHeader,
  isTornHeader,
  parseSegmentFileName,
} from './format';
import { SegmentReader } from './segment-reader';
import { syncDirectory } from './segment-writer';
import type { SegmentInfo, WalOpenReport } from './types';

export interface ScannedLog {
  /** Segments holding records, oldest first; the last one is appended to next. */
  segments: SegmentInfo[];
  report: WalOpenReport;
}

interface Cut {
  bytes: number;
  reason: string;
}

/**
 * Checks every segment of `dir` and repairs the one thing a crash may leave behind: a torn
 * or corrupt tail of the last segment (cut off, or the whole segment removed when nothing
 * whole is left). Anything wrong before that is DATA_LOSS: records acknowledged long ago
 * are never dropped silently.
 */
export async function scanLog(dir: string): Promise<ScannedLog> {
  const files = (await readdir(dir))
    .map((name) => ({ name, firstSeq: parseSegmentFileName(name) }))
    .filter((file): file is { name: string; firstSeq: number } => file.firstSeq !== undefined)
    .sort((a, b) => a.firstSeq - b.firstSeq);
  const segments: SegmentInfo[] = [];
  let cut: Cut | undefined;
  for (const [index, file] of files.entries()) {
    const isLast = index === files.length - 1;
    const path = join(dir, file.name);
    const previous = segments.at(-1);
    const scanned = await scanSegment(path, file.firstSeq, previous, isLast);
    cut = scanned.cut;
    if (scanned.info) {
      segments.push(scanned.info);
    } else {
      // A last segment with nothing whole in it: created just before a crash or a failure.
      await unlink(path);
      await syncDirectory(dir);
    }
  }
  const report: WalOpenReport = {
    truncatedBytes: cut?.bytes ?? 0,
    segments: segments.length,
    firstSeq: segments[0]?.firstSeq,
    lastSeq: segments.at(-1)?.lastSeq,
  };
  if (cut) report.truncatedReason = cut.reason;
  return { segments, report };
}

async function scanSegment(
  path: string,
  firstSeq: number,
  previous: SegmentInfo | undefined,
  isLast: boolean,
): Promise<{ info: SegmentInfo | undefined; cut: Cut | undefined }> {
  const handle = await open(path, isLast ? 'r+' : 'r');
  try {
    const size = (await handle.stat()).size;
    const header = Buffer.alloc(Math.min(size, SEGMENT_HEADER_BYTES));
    await handle.read(header, 0, header.length, 0);
    if (isLast && isTornHeader(header)) {
      const cut =
        size === 0
          ? undefined
          : { bytes: size, reason: `${basename(path)}: segment header cut short` };
      return { info: undefined, cut };
    }
    const decoded = decodeSegmentHeader(header);
    if ('problem' in decoded) throw walDataLoss(path, 0, decoded.problem);
    checkContinuity(path, decoded.previousSeq, previous, firstSeq);

    const reader = new SegmentReader(handle, SEGMENT_HEADER_BYTES, size);
    let lastSeq: number | undefined;
    let end = SEGMENT_HEADER_BYTES;
    for (let record = await reader.next(); record; record = await reader.next()) {
      if (lastSeq === undefined && record.seq !== firstSeq) {
        throw walDataLoss(
          path,
          record.offset,
          `first record has seq ${record.seq}, the file name says ${firstSeq}`,
        );
      }
      if (lastSeq !== undefined && record.seq < lastSeq) {
        throw walDataLoss(path, record.offset, `seq ${record.seq} follows seq ${lastSeq}`);
      }
      lastSeq = record.seq;
      end = record.end;
    }
    let cut: Cut | undefined;
    const problem = reader.problem;
    if (problem) {
      if (!isLast) throw walDataLoss(path, problem.offset, problem.reason);
      // Only the last segment can hold a write that a crash interrupted.
      await handle.truncate(end);
      await handle.datasync();
      cut = {
        bytes: size - end,
        reason: `record at offset ${problem.offset} of ${basename(path)}: ${problem.reason}`,
      };
    }
    if (lastSeq === undefined) {
      if (!isLast) throw walDataLoss(path, SEGMENT_HEADER_BYTES, 'segment holds no records');
      return { info: undefined, cut };
    }
    return { info: { path, firstSeq, lastSeq, bytes: end }, cut };
  } finally {
    await handle.close();
  }
}

/** The header names the seq written just before the segment: the previous segment's last. */
function checkContinuity(
  path: string,
  previousSeq: number | undefined,
  previous: SegmentInfo | undefined,
  firstSeq: number,
): void {
  if (previousSeq !== undefined && previousSeq > firstSeq) {
    throw walDataLoss(path, 8, `previous seq ${previousSeq} is past the first seq ${firstSeq}`);
  }
  // The first segment on disk may follow segments deleted by truncateBefore.
  if (!previous) return;
  if (previousSeq === undefined) {
    throw walDataLoss(
      path,
      8,
      `segment claims to start the log but follows ${basename(previous.path)}`,
    );
  }
  if (previousSeq > previous.lastSeq) {
    throw walDataLoss(
      path,
      0,
      `records after seq ${previous.lastSeq} through seq ${previousSeq} are missing (a segment between ${basename(previous.path)} and ${basename(path)} is gone)`,
      { missing_after_seq: previous.lastSeq, missing_through_seq: previousSeq },
    );
  }
  if (previousSeq < previous.lastSeq) {
    throw walDataLoss(
      path,
      8,
      `segment follows seq ${previousSeq} but ${basename(previous.path)} ends at seq ${previous.lastSeq}`,
    );
  }
}
