import * as fs from 'node:fs/promises';
import * as path from 'node:path';

/**
 * Replaces `file` with `data` so that a crash at any point leaves either the old content
 * or the new: the data is fsynced under a temp name, renamed over the file, and the
 * directory fsynced so that the rename itself is durable.
 */
export async function writeFileDurably(file: string, data: string): Promise<void> {
  const temp = `${file}.tmp`;
  const handle = await fs.open(temp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(temp, file);
  } catch (error) {
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw error;
  }
  const dir = await fs.open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
