import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import {
  ErrorCodes,
  type SlotRange,
  type StoreRecord,
  ShardsnapError,
  dataLoss,
  encodeValue,
  formatSlotRanges,
  normalizeSlotRanges,
  slotMask,
  slotOf,
  valueBytes,
} from '../../core';
import type { InstallTarget, StagedInstall } from '../store';
import { storeClosed, withContext } from './errors';
import { InstallSorter } from './install-sorter';
import {
  SEQ_KEY,
  SLOT_PREFIX_BYTES,
  counterKey,
  counterRangeBounds,
  dataKey,
  describeKey,
  slotRangeBounds,
} from './keys';
import { type SlotCount, encodeSlotCount, encodeU64 } from './meta';
import { type SstWriter, type SstWriterOptions, createSstWriter } from './native';
import { SerialQueue } from './write-queue';

/** What the store does at commit: in its write queue, seal the file for the next seq and ingest it. */
export interface InstallCommitter {
  commitInstall(install: RocksDbStagedInstall): Promise<number>;
  forget(install: RocksDbStagedInstall): void;
}

interface Staged {
  dkey: Buffer;
  value: Buffer;
}

const byKey = (a: Staged, b: Staged): number => Buffer.compare(a.dkey, b.dkey);

/**
 * An install staged as one SST file under `<dataDir>/staging/<id>/`.
 *
 * Records normally arrive in ascending slot order (as views yield them), unsorted within
 * a slot: each slot is buffered, sorted and streamed to the file. If a record's slot goes
 * backwards, what was streamed moves into a scratch sorter (install-sorter.ts) that takes
 * the rest and is drained in key order into a new file at commit.
 *
 * At commit the file gets a range tombstone over every target slot range (data and
 * counters), the new per-slot counters and the new seq, and is ingested in one step:
 * ingested keys share one global seqno, so the tombstone deletes the old keys of the
 * ranges and none of the file's own. Readers see all of it or none of it.
 */
export class RocksDbStagedInstall implements StagedInstall {
  readonly ranges: readonly SlotRange[];
  /** Key count and payload bytes of every staged slot. */
  readonly counts = new Map<number, SlotCount>();
  private readonly mask: Uint8Array;
  private readonly queue = new SerialQueue();
  private state: 'open' | 'committed' | 'aborted' | 'failed' = 'open';
  /** Aborted because the store closed: later calls answer as the store does. */
  private storeGone = false;
  private count = 0;
  /** Records handed to the current writer. */
  private written = 0;
  private slot = -1;
  private slotRecords: Staged[] = [];
  private pendingKeys: Buffer[] = [];
  private pendingValues: Buffer[] = [];
  private pendingBytes = 0;
  private sorter: InstallSorter | undefined;

  private constructor(
    readonly target: InstallTarget,
    readonly dir: string,
    private file: string,
    private writer: SstWriter,
    private readonly writerOptions: SstWriterOptions,
    private readonly flushBytes: number,
    private readonly committer: InstallCommitter,
  ) {
    // As in the memory store: records must lie in `slots`; a full install replaces every slot.
    this.ranges = normalizeSlotRanges(target.full ? [] : target.slots);
    this.mask = slotMask(normalizeSlotRanges(target.slots));
  }

  static async create(
    target: InstallTarget,
    stagingRoot: string,
    writerOptions: SstWriterOptions,
    flushBytes: number,
    committer: InstallCommitter,
  ): Promise<RocksDbStagedInstall> {
    const dir = path.join(stagingRoot, `${Date.now()}-${randomBytes(6).toString('hex')}`);
    const file = path.join(dir, 'install.sst');
    return withContext({ op: 'install.begin', dir }, async () => {
      await fs.mkdir(dir, { recursive: true });
      try {
        const writer = await createSstWriter(file, writerOptions);
        return new RocksDbStagedInstall(
          target,
          dir,
          file,
          writer,
          writerOptions,
          flushBytes,
          committer,
        );
      } catch (error) {
        await fs.rm(dir, { recursive: true, force: true });
        throw error;
      }
    });
  }

  get recordCount(): number {
    return this.count;
  }

  get full(): boolean {
    return this.target.full;
  }

  add(records: StoreRecord[]): Promise<void> {
    return this.queue.run(async () => {
      this.assertOpen();
      try {
        await withContext({ op: 'install.add', dir: this.dir }, () => this.stage(records));
      } catch (error) {
        await this.discard('failed');
        throw error;
      }
    });
  }

  private async stage(records: StoreRecord[]): Promise<void> {
    let sorted: Staged[] = [];
    for (const { key, entry } of records) {
      const slot = slotOf(key);
      if (this.mask[slot] !== 1) {
        throw dataLoss(
          `record for slot ${slot} is outside the artifact's slot ranges ${formatSlotRanges(this.target.slots)}`,
        );
      }
      const staged = { dkey: dataKey(slot, key), value: encodeValue(entry) };
      const count = this.counts.get(slot) ?? { keys: 0, bytes: 0 };
      count.keys++;
      count.bytes += key.length + valueBytes(entry.value);
      this.counts.set(slot, count);
      this.count++;
      if (!this.sorter && slot < this.slot) await this.startSorting();
      if (this.sorter) {
        sorted.push(staged);
        if (sorted.length >= 4096) {
          await this.sortIn(sorted);
          sorted = [];
        }
        continue;
      }
      if (slot > this.slot) {
        await this.endSlot();
        this.slot = slot;
      }
      this.slotRecords.push(staged);
    }
    if (sorted.length > 0) await this.sortIn(sorted);
  }

  private sortIn(records: Staged[]): Promise<void> {
    return (this.sorter as InstallSorter).add(
      records.map((r) => r.dkey),
      records.map((r) => r.value),
    );
  }

  /** Slot order broke: moves what was staged so far into a scratch sorter. */
  private async startSorting(): Promise<void> {
    const sorter = await InstallSorter.open(path.join(this.dir, 'sort'));
    this.sorter = sorter;
    await this.endSlot();
    await this.flushPending();
    if (this.written > 0) {
      await this.writer.finish();
      await sorter.ingestSorted(this.file);
    } else {
      await this.writer.abandon();
    }
    this.written = 0;
  }

  /** Sorts the current slot's records and queues them for the writer. */
  private async endSlot(): Promise<void> {
    if (this.slotRecords.length === 0) return;
    const records = this.slotRecords.sort(byKey);
    this.slotRecords = [];
    for (let i = 0; i < records.length; i++) {
      const { dkey, value } = records[i] as Staged;
      if (i > 0 && dkey.equals((records[i - 1] as Staged).dkey)) {
        throw dataLoss(
          `duplicate key ${describeKey(dkey.subarray(SLOT_PREFIX_BYTES))} in artifact`,
        );
      }
      this.pendingKeys.push(dkey);
      this.pendingValues.push(value);
      this.pendingBytes += dkey.length + value.length;
    }
    if (this.pendingBytes >= this.flushBytes) await this.flushPending();
  }

  private async flushPending(): Promise<void> {
    if (this.pendingKeys.length === 0) return;
    const keys = this.pendingKeys;
    const values = this.pendingValues;
    this.pendingKeys = [];
    this.pendingValues = [];
    this.pendingBytes = 0;
    await this.writer.putBatch(keys, values);
    this.written += keys.length;
  }

  /** Everything staged is in the writer (in key order); only the commit entries are missing. */
  private async drain(): Promise<void> {
    if (!this.sorter) {
      await this.endSlot();
      await this.flushPending();
      return;
    }
    this.file = path.join(this.dir, 'install-sorted.sst');
    this.writer = await createSstWriter(this.file, this.writerOptions);
    await this.sorter.drainTo(this.writer, this.flushBytes);
    await this.sorter.close();
    this.sorter = undefined;
  }

  /**
   * Called by the store inside its write queue: completes the file with the tombstones,
   * counters and `seq`, and returns its path.
   */
  async seal(seq: number): Promise<string> {
    for (const range of this.ranges) {
      const data = slotRangeBounds(range);
      const counters = counterRangeBounds(range);
      this.writer.deleteRange(data.gte, data.lt);
      this.writer.deleteRange(counters.gte, counters.lt);
    }
    const keys: Buffer[] = [];
    const values: Buffer[] = [];
    for (const slot of [...this.counts.keys()].sort((a, b) => a - b)) {
      keys.push(counterKey(slot));
      values.push(encodeSlotCount(this.counts.get(slot) as SlotCount));
    }
    keys.push(SEQ_KEY);
    values.push(encodeU64(seq));
    await this.writer.putBatch(keys, values);
    await this.writer.finish();
    return this.file;
  }

  commit(): Promise<{ seq: number; keysInstalled: number }> {
    return this.queue.run(async () => {
      this.assertOpen();
      try {
        await withContext({ op: 'install.stage', dir: this.dir }, () => this.drain());
        const seq = await this.committer.commitInstall(this);
        this.state = 'committed';
        return { seq, keysInstalled: this.count };
      } catch (error) {
        this.state = 'failed';
        throw error;
      } finally {
        await this.cleanup();
      }
    });
  }

  abort(): Promise<void> {
    return this.queue.run(() =>
      this.state === 'open' ? this.discard('aborted') : Promise.resolve(),
    );
  }

  /** The store is closing: drops what is staged; `add` and `commit` then say STORE_CLOSED. */
  closeWithStore(): Promise<void> {
    this.storeGone = true;
    return this.abort();
  }

  private async discard(state: 'aborted' | 'failed'): Promise<void> {
    this.state = state;
    this.slotRecords = [];
    this.pendingKeys = [];
    this.pendingValues = [];
    await this.cleanup();
  }

  /** Drops the writer, the sorter and the staging dir; never throws. */
  private async cleanup(): Promise<void> {
    this.committer.forget(this);
    await this.writer.abandon().catch(() => undefined);
    await this.sorter?.close().catch(() => undefined);
    this.sorter = undefined;
    await fs.rm(this.dir, { recursive: true, force: true }).catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.storeGone) throw storeClosed('install');
    if (this.state !== 'open') {
      throw new ShardsnapError(ErrorCodes.failedPrecondition, `install already ${this.state}`);
    }
  }
}
