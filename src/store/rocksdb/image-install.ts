import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { dataLoss, failedPrecondition } from '../../core';
import type { ImageFile, StagedImage } from '../store';

/**
 * A checkpoint being received into `<staging>/image-<id>/db`, one file after another.
 * `commit` fsyncs the files and hands the directory to the store, which swaps it in.
 */
export class RocksDbStagedImage implements StagedImage {
  private current: { index: number; file: fs.FileHandle; written: number } | undefined;
  private state: 'open' | 'committed' | 'aborted' = 'open';

  private constructor(
    readonly dir: string,
    private readonly files: readonly ImageFile[],
    private readonly swapIn: (dir: string) => Promise<{ seq: number; keysInstalled: number }>,
    private readonly assertStoreOpen: () => void,
  ) {}

  static async create(
    stagingRoot: string,
    files: readonly ImageFile[],
    swapIn: (dir: string) => Promise<{ seq: number; keysInstalled: number }>,
    /** Throws STORE_CLOSED once the store closed: the install answers as the store does. */
    assertStoreOpen: () => void = () => undefined,
  ): Promise<RocksDbStagedImage> {
    const dir = path.join(
      stagingRoot,
      `image-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`,
      'db',
    );
    await fs.mkdir(dir, { recursive: true });
    // Empty files get no data pieces: create every file up front.
    for (const file of files)
      if (file.size === 0) await fs.writeFile(path.join(dir, file.name), '');
    return new RocksDbStagedImage(dir, files, swapIn, assertStoreOpen);
  }

  async write(file: ImageFile, index: number, data: Buffer): Promise<void> {
    this.assertOpen();
    if (this.current?.index !== index) {
      await this.closeCurrent();
      this.current = {
        index,
        file: await fs.open(path.join(this.dir, file.name), 'wx'),
        written: 0,
      };
    }
    const current = this.current;
    if (current.written + data.length > file.size)
      throw dataLoss(`file ${file.name} is longer than announced`);
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await current.file.write(
        data,
        done,
        data.length - done,
        current.written + done,
      );
      done += bytesWritten;
    }
    current.written += data.length;
  }

  private async closeCurrent(): Promise<void> {
    const current = this.current;
    this.current = undefined;
    if (!current) return;
    try {
      await current.file.sync();
    } finally {
      await current.file.close();
    }
  }

  async commit(): Promise<{ seq: number; keysInstalled: number }> {
    this.assertOpen();
    await this.closeCurrent();
    for (const file of this.files) {
      const size = (await fs.stat(path.join(this.dir, file.name))).size;
      if (size !== file.size)
        throw dataLoss(`file ${file.name} has ${size} bytes, expected ${file.size}`);
    }
    await syncDir(this.dir);
    const result = await this.swapIn(this.dir);
    this.state = 'committed';
    await fs.rm(path.dirname(this.dir), { recursive: true, force: true });
    return result;
  }

  private assertOpen(): void {
    this.assertStoreOpen();
    if (this.state !== 'open') throw failedPrecondition(`image install already ${this.state}`);
  }

  async abort(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'aborted';
    await this.closeCurrent().catch(() => undefined);
    await fs.rm(path.dirname(this.dir), { recursive: true, force: true });
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await fs.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
