import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {
  ALL_SLOTS,
  type Entry,
  ErrorCodes,
  type Mutation,
  type SlotRange,
  ShardsnapError,
  dataLoss,
  decodeValue,
  formatSlotRanges,
  invalidArgument,
  isExpired,
  normalizeSlotRanges,
  slotOf,
} from '../../core';
import { ChangeListeners } from '../change-listeners';
import type {
  ChangeListener,
  ImageFile,
  ImageInstallTarget,
  InstallTarget,
  StagedImage,
  StagedInstall,
  StoreStats,
  StoreView,
  WriteOptions,
} from '../store';
import { RocksDbStagedImage, syncDir } from './image-install';
import { storeClosed, storeError, withContext } from './errors';
import { dataKey, describeKey } from './keys';
import { SlotCounters, checkFormat, countKeysAt, readSeq, seqPut, slotCountOp } from './meta';
import { type Db, openDb } from './native';
import {
  type ResolvedOptions,
  type RocksDbStoreOptions,
  openOptions,
  resolveOptions,
  sstOptions,
} from './options';
import { type InstallCommitter, RocksDbStagedInstall } from './staged-install';
import { RocksDbView } from './view';
import { planBatch, touchedKeys } from './write-batch';
import { SerialQueue } from './write-queue';
import { writeClock } from '../write-clock';

/** RocksDB properties (integers) that `properties()` reports, for gauges of the node's metrics. */
const METRIC_PROPERTIES = [
  'rocksdb.estimate-num-keys',
  'rocksdb.live-sst-files-size',
  'rocksdb.num-files-at-level0',
  'rocksdb.estimate-pending-compaction-bytes',
  'rocksdb.cur-size-all-mem-tables',
] as const;

/**
 * The RocksDB backend. One RocksDB value per Redis key under a 2-byte slot prefix; the
 * store seq and per-slot counters live under a meta prefix and change in the same
 * WriteBatch (or ingested file) as the data. Write batches and install commits run one
 * at a time through a queue, so read-modify-write never interleaves; reads and views
 * are not queued and see each batch or install entirely or not at all.
 */
export class RocksDbStore implements ImageInstallTarget {
  readonly backend = 'rocksdb';
  private readonly queue = new SerialQueue();
  private readonly views = new Set<RocksDbView>();
  private readonly installs = new Set<RocksDbStagedInstall>();
  private readonly committer: InstallCommitter;
  private readonly listeners = new ChangeListeners();
  private closed = false;
  private closing: Promise<void> | undefined;

  private constructor(
    private db: Db,
    readonly dataDir: string,
    private seq: number,
    private readonly counters: SlotCounters,
    private readonly options: ResolvedOptions,
  ) {
    this.committer = {
      commitInstall: (install) => this.commitInstall(install),
      forget: (install) => this.installs.delete(install),
    };
  }

  /** Opens (creating if needed) the store of `dataDir`; the db lives in `<dataDir>/db`. */
  static async open(dataDir: string, options: RocksDbStoreOptions = {}): Promise<RocksDbStore> {
    const resolved = resolveOptions(options);
    const dbDir = path.join(dataDir, 'db');
    try {
      await recoverSwap(dbDir);
      // Checkpoints are taken for one build each; a crashed process leaves them behind.
      await fs.rm(checkpointsRoot(dataDir), { recursive: true, force: true });
      await fs.mkdir(dbDir, { recursive: true });
      await fs.access(dbDir, fs.constants.W_OK);
    } catch (error) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `cannot use ${dbDir} for the rocksdb store: ${(error as Error).message} [op=open]`,
        { cause: error },
      );
    }
    const db = await withContext({ op: 'open', path: dbDir }, () =>
      openDb(dbDir, openOptions(resolved)),
    );
    try {
      return await withContext({ op: 'open', path: dbDir }, async () => {
        await checkFormat(db, dbDir);
        // Whatever a crashed process left staged can never be committed.
        await fs.rm(stagingRoot(dataDir), { recursive: true, force: true });
        const [seq, counters] = await Promise.all([readSeq(db), SlotCounters.load(db)]);
        return new RocksDbStore(db, dataDir, seq, counters, resolved);
      });
    } catch (error) {
      await db.close().catch(() => undefined);
      throw error;
    }
  }

  write(mutations: readonly Mutation[], options?: WriteOptions): Promise<{ seq: number }> {
    if (this.closed) return Promise.reject(storeClosed('write'));
    return this.queue.run(async () => {
      const first = mutations[0]?.key;
      const context = {
        op: 'write',
        mutations: mutations.length,
        ...(first ? { key: describeKey(first) } : {}),
      };
      // Accepted before close(): runs to the end (close waits for the queue).
      return withContext(context, async () => {
        const keys = touchedKeys(mutations);
        const stored =
          keys.size > 0 ? await this.db.multiGet([...keys.values()].map((k) => k.dkey)) : [];
        const clock = writeClock(options, mutations.length, this.options.now);
        const { ops, deltas } = planBatch(mutations, keys, stored, clock);
        const seq = this.seq + 1;
        const counts = new Map<number, { keys: number; bytes: number }>();
        for (const [slot, delta] of deltas) {
          const current = this.counters.get(slot);
          const next = { keys: current.keys + delta.keys, bytes: current.bytes + delta.bytes };
          counts.set(slot, next);
          ops.push(slotCountOp(slot, next));
        }
        ops.push(seqPut(seq));
        await this.db.write(ops, { sync: this.options.syncWrites });
        for (const [slot, count] of counts) this.counters.set(slot, count);
        this.seq = seq;
        this.listeners.emit({
          kind: 'write',
          seq,
          mutations,
          atMs: clock(Math.max(0, mutations.length - 1)),
        });
        return { seq };
      });
    });
  }

  async read(keys: readonly Buffer[]): Promise<Array<Entry | undefined>> {
    this.assertOpen('read');
    if (keys.length === 0) return [];
    const context = { op: 'read', keys: keys.length, key: describeKey(keys[0] as Buffer) };
    return withContext(context, async () => {
      // One multiGet: all keys at one point in time.
      const raws = await this.db.multiGet(keys.map((key) => dataKey(slotOf(key), key)));
      const now = this.options.now();
      return raws.map((raw) => {
        if (raw === undefined) return undefined;
        const entry = decodeValue(raw);
        return isExpired(entry, now) ? undefined : entry;
      });
    });
  }

  stats(): Promise<StoreStats> {
    if (this.closed) return Promise.reject(storeClosed('stats'));
    return Promise.resolve({
      keyCount: this.counters.keyCount,
      seq: this.seq,
      dataBytes: this.counters.dataBytes,
      openViews: this.views.size,
    });
  }

  /**
   * The RocksDB properties that metrics report (see `METRIC_PROPERTIES`), by property
   * name; one RocksDB does not know (or that is not a number) is left out. `{}` once the
   * store is closed, and while an image install has the database closed for its swap.
   */
  properties(): Record<string, number> {
    const values: Record<string, number> = {};
    if (this.closed || this.db.closed) return values;
    try {
      for (const name of METRIC_PROPERTIES) {
        const value = intProperty(this.db, name);
        if (value !== undefined) values[name] = value;
      }
    } catch {
      // A database that is closing refuses reads; a scrape must not fail for it.
      return {};
    }
    return values;
  }

  async openView(slots: readonly SlotRange[]): Promise<StoreView> {
    this.assertOpen('openView');
    const ranges = normalizeSlotRanges(slots);
    return withContext({ op: 'openView', slots: formatSlotRanges(ranges) }, async () => {
      const snapshot = this.db.getSnapshot();
      try {
        const [seq, keyCountHint] = await Promise.all([
          readSeq(this.db, snapshot),
          countKeysAt(this.db, ranges, snapshot),
        ]);
        this.assertOpen('openView');
        const view = new RocksDbView(this.db, snapshot, seq, ranges, keyCountHint, (v) =>
          this.views.delete(v),
        );
        this.views.add(view);
        return view;
      } catch (error) {
        snapshot.release();
        throw error;
      }
    });
  }

  async beginInstall(target: InstallTarget): Promise<StagedInstall> {
    this.assertOpen('beginInstall');
    if (target.full && !(Number.isSafeInteger(target.seq) && target.seq >= 0)) {
      throw invalidArgument(`install seq ${target.seq} is not a non-negative integer`);
    }
    const install = await RocksDbStagedInstall.create(
      target,
      stagingRoot(this.dataDir),
      sstOptions(this.options),
      this.options.installFlushBytes,
      this.committer,
    );
    if (this.closed) {
      await install.abort();
      throw storeClosed('beginInstall');
    }
    this.installs.add(install);
    return install;
  }

  /** In the write queue: the install's file is sealed for the next seq and ingested. */
  private commitInstall(install: RocksDbStagedInstall): Promise<number> {
    return this.queue.run(() =>
      withContext(
        {
          op: 'install.commit',
          slots: formatSlotRanges(install.ranges),
          full: String(install.full),
        },
        async () => {
          const seq = install.full ? install.target.seq : this.seq + 1;
          const file = await install.seal(seq);
          await this.db.ingest([file], {
            moveFiles: true,
            snapshotConsistency: true,
            allowGlobalSeqNo: true,
          });
          this.counters.replaceRanges(install.ranges, install.counts);
          this.seq = seq;
          this.listeners.emit({ kind: 'replace', seq, slots: install.ranges });
          return seq;
        },
      ),
    );
  }

  /**
   * A checkpoint of the whole store in `dir` (hard links to the live SST files plus a
   * copy of the WAL; no walk of the data). Taken in the write queue, so its seq and key
   * count are exact; writes wait only for the links to be made.
   */
  createCheckpoint(dir: string): Promise<{ seq: number; keyCount: number }> {
    if (this.closed) return Promise.reject(storeClosed('checkpoint'));
    return this.queue.run(() =>
      withContext({ op: 'checkpoint', path: dir }, async () => {
        await fs.mkdir(path.dirname(dir), { recursive: true });
        await this.db.createCheckpoint(dir, Number.MAX_SAFE_INTEGER);
        return { seq: this.seq, keyCount: this.counters.keyCount };
      }),
    );
  }

  async beginImageInstall(image: {
    seq: number;
    files: readonly ImageFile[];
  }): Promise<StagedImage> {
    this.assertOpen('beginImageInstall');
    return RocksDbStagedImage.create(
      stagingRoot(this.dataDir),
      image.files,
      (dir) => this.swapDatabase(dir, image.seq),
      () => this.assertOpen('install.image'),
    );
  }

  /**
   * Replaces the database with the one in `stagedDir`, which is checked first (format,
   * seq). The old directory is renamed aside before the new one takes its place, and
   * `recoverSwap` finishes or rolls back a swap cut short by a crash: after a restart the
   * store holds the old data or the new, never a mix. Open views are closed.
   */
  private swapDatabase(
    stagedDir: string,
    expectedSeq: number,
  ): Promise<{ seq: number; keysInstalled: number }> {
    return this.queue.run(() =>
      withContext({ op: 'install.image', path: stagedDir }, async () => {
        const staged = await openDb(stagedDir, {
          ...openOptions(this.options),
          createIfMissing: false,
        });
        try {
          await checkFormat(staged, stagedDir);
          const seq = await readSeq(staged);
          if (seq !== expectedSeq) {
            throw dataLoss(`checkpoint holds seq ${seq}, but its artifact says ${expectedSeq}`);
          }
        } finally {
          await staged.close();
        }
        this.assertOpen('install.image');
        for (const view of [...this.views]) view.close();
        const dbDir = path.join(this.dataDir, 'db');
        await this.db.close();
        await fs.rm(`${dbDir}.old`, { recursive: true, force: true });
        await fs.rename(dbDir, `${dbDir}.old`);
        await fs.rename(stagedDir, dbDir);
        await syncDir(this.dataDir);
        this.db = await openDb(dbDir, openOptions(this.options));
        await fs.rm(`${dbDir}.old`, { recursive: true, force: true });
        const [newSeq, counters] = await Promise.all([
          readSeq(this.db),
          SlotCounters.load(this.db),
        ]);
        this.seq = newSeq;
        this.counters.adopt(counters);
        this.listeners.emit({ kind: 'replace', seq: newSeq, slots: ALL_SLOTS });
        return { seq: newSeq, keysInstalled: counters.keyCount };
      }),
    );
  }

  onChange(listener: ChangeListener): () => void {
    return this.listeners.add(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const view of [...this.views]) view.closeWithStore();
    await Promise.all([...this.installs].map((install) => install.closeWithStore()));
    await this.queue.idle();
    try {
      await this.db.close();
    } catch (error) {
      throw storeError(error, { op: 'close', path: path.join(this.dataDir, 'db') });
    }
  }

  private assertOpen(op: string): void {
    if (this.closed) throw storeClosed(op);
  }
}

function intProperty(db: Db, name: string): number | undefined {
  const value = db.getIntProperty(name);
  if (value !== undefined) return value;
  // Some counts (the files at a level) are string properties only.
  const text = db.getProperty(name)?.trim();
  return text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined;
}

export function stagingRoot(dataDir: string): string {
  return path.join(dataDir, 'staging');
}

export function checkpointsRoot(dataDir: string): string {
  return path.join(dataDir, 'checkpoints');
}

/**
 * Finishes what an interrupted database swap left: `db.old` beside a complete `db` means
 * the swap happened (drop the old one); `db.old` without `db` means it did not (put the
 * old one back).
 */
export async function recoverSwap(dbDir: string): Promise<void> {
  const exists = (p: string): Promise<boolean> =>
    fs.access(p).then(
      () => true,
      () => false,
    );
  if (!(await exists(`${dbDir}.old`))) return;
  if (await exists(dbDir)) await fs.rm(`${dbDir}.old`, { recursive: true, force: true });
  else await fs.rename(`${dbDir}.old`, dbDir);
}
