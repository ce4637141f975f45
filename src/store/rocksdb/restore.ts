import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { ErrorCodes, ShardsnapError } from '../../core';
import { syncDir } from './image-install';
import { recoverSwap, stagingRoot } from './rocksdb-store';

/**
 * Makes a copy of the RocksDB checkpoint in `fromDir` the database of `dataDir`, before
 * the store opens: copied beside the current database, then swapped in by rename (an
 * interrupted swap is finished or rolled back at the next open).
 */
export async function restoreDatabaseDir(dataDir: string, fromDir: string): Promise<void> {
  const names = await fs.readdir(fromDir).catch((error: Error) => {
    throw new ShardsnapError(
      ErrorCodes.invalidArgument,
      `cannot read checkpoint ${fromDir}: ${error.message}`,
      { cause: error },
    );
  });
  if (!names.includes('CURRENT')) {
    throw new ShardsnapError(
      ErrorCodes.invalidArgument,
      `${fromDir} is not a RocksDB checkpoint (no CURRENT file)`,
    );
  }
  const dbDir = path.join(dataDir, 'db');
  const staged = path.join(stagingRoot(dataDir), 'restore', 'db');
  await fs.rm(path.dirname(staged), { recursive: true, force: true });
  await fs.mkdir(staged, { recursive: true });
  for (const name of names) {
    const from = path.join(fromDir, name);
    if ((await fs.stat(from)).isFile()) await fs.copyFile(from, path.join(staged, name));
  }
  await syncDir(staged);
  await recoverSwap(dbDir);
  const hadDb = await fs.access(dbDir).then(
    () => true,
    () => false,
  );
  if (hadDb) await fs.rename(dbDir, `${dbDir}.old`);
  await fs.rename(staged, dbDir);
  await syncDir(dataDir);
  await fs.rm(`${dbDir}.old`, { recursive: true, force: true });
  await fs.rm(path.dirname(staged), { recursive: true, force: true });
}
