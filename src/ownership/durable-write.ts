import * as fs from 'node:fs';
import * as path from 'node:path';
import { asError } from '../core';

/**
 * Replaces `file` with `data` so that a crash at any point leaves either the old content
 * or the new: the data is fsynced under a temp name, renamed over the file, and the
 * directory fsynced so that the rename itself is durable.
 *
 * Synchronous on purpose: the file is a few hundred bytes and a handoff waits for it
 * while writes are paused; done as one step it costs the fsyncs (about a millisecond
 * each), not a turn of a busy event loop per file operation.
 */
export function writeFileDurably(file: string, data: string): Promise<void> {
  const temp = `${file}.tmp`;
  try {
    const fd = fs.openSync(temp, 'w');
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.renameSync(temp, file);
    } catch (error) {
      fs.rmSync(temp, { force: true });
      throw error;
    }
    const dir = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
    return Promise.resolve();
  } catch (error) {
    return Promise.reject(asError(error));
  }
}
