import {
  type StoreRecord,
  dataLoss,
  failedPrecondition,
  slotMask,
  slotOf,
  storeClosed,
} from '../../core';
import type { DeltaTarget, StagedDelta } from '../delta';

/** What the store applies at commit, in one synchronous step. */
export interface DeltaChanges {
  upserts: readonly StoreRecord[];
  deletes: readonly Buffer[];
}

/**
 * A delta staged outside the keyspace: an incremental artifact is small by design, so its
 * records wait as decoded values (copies, never views of a chunk) and are applied over
 * the live data at commit. Nothing is visible before; a refused commit changes nothing.
 */
export class MemoryStagedDelta implements StagedDelta {
  private readonly mask: Uint8Array;
  private readonly upserts = new Map<string, StoreRecord>();
  private readonly deletes = new Map<string, Buffer>();
  private state: 'open' | 'committed' | 'aborted' = 'open';

  constructor(
    readonly target: DeltaTarget,
    private readonly isOpen: () => boolean,
    /** `durable`: the change's log record, when the store keeps a log (awaited by commit). */
    private readonly apply: (
      target: DeltaTarget,
      changes: DeltaChanges,
    ) => { seq: number; durable?: Promise<void> | undefined },
  ) {
    this.mask = slotMask(target.slots);
  }

  get recordCount(): number {
    return this.upserts.size + this.deletes.size;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that failures reject
  async add(records: StoreRecord[]): Promise<void> {
    this.assertOpen();
    for (const record of records)
      this.put(record.key, () => this.upserts.set(name(record.key), record));
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async delete(keys: readonly Buffer[]): Promise<void> {
    this.assertOpen();
    for (const key of keys) this.put(key, () => this.deletes.set(name(key), key));
  }

  private put(key: Buffer, stage: () => void): void {
    const slot = slotOf(key);
    if (this.mask[slot] !== 1) {
      throw dataLoss(`key for slot ${slot} is outside the artifact's slot ranges`);
    }
    const id = name(key);
    if (this.upserts.has(id) || this.deletes.has(id)) {
      throw dataLoss(`key "${key.toString('latin1')}" appears twice in the incremental artifact`);
    }
    stage();
  }

  async commit(): Promise<{ seq: number; keysInstalled: number }> {
    this.assertOpen();
    const { seq, durable } = this.apply(this.target, {
      upserts: [...this.upserts.values()],
      deletes: [...this.deletes.values()],
    });
    this.state = 'committed';
    const keysInstalled = this.recordCount;
    this.upserts.clear();
    this.deletes.clear();
    if (durable) await durable;
    return { seq, keysInstalled };
  }

  abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      this.upserts.clear();
      this.deletes.clear();
    }
    return Promise.resolve();
  }

  private assertOpen(): void {
    if (!this.isOpen()) throw storeClosed('memory store');
    if (this.state !== 'open') throw failedPrecondition(`install already ${this.state}`);
  }
}

const name = (key: Buffer): string => key.toString('latin1');
