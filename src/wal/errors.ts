import { basename } from 'node:path';
import {
  ErrorCodes,
  ShardsnapError,
  internal,
  isNoSpace,
  isShardsnapError,
  noSpace,
} from '../core';

/** A log that cannot be trusted as a whole: names the segment file and the offset. */
export function walDataLoss(
  path: string,
  offset: number,
  problem: string,
  metadata: Record<string, string | number> = {},
): ShardsnapError {
  const file = basename(path);
  return new ShardsnapError(
    ErrorCodes.dataLoss,
    `write-ahead log ${file} at offset ${offset}: ${problem}`,
    {
      metadata: { file, offset, ...metadata },
    },
  );
}

/** The error a failed write, fsync or open leaves the log in (a full disk is NO_SPACE). */
export function writeFailure(error: unknown, path: string): ShardsnapError {
  if (isNoSpace(error)) {
    return noSpace(`write-ahead log: no space left on the device for ${path}`, path, error);
  }
  if (isShardsnapError(error)) return error;
  const message = error instanceof Error ? error.message : String(error);
  return internal(`write-ahead log: I/O on ${path} failed: ${message}`, error);
}
