import {
  type StoreRecord,
  dataLoss,
  failedPrecondition,
  slotMask,
  slotOf,
  storeClosed,
} from '../../core';
import type { InstallTarget, StagedInstall } from '../store';
import { type Keyspace, hashKey } from './keyspace';
import type { SlotTable } from './slot-table';

/** Slot tables of records built beside the live ones; committing swaps them in. */
export interface StagedSlots {
  tables: Map<number, SlotTable>;
}

/**
 * An install staged in the keyspace's arena: its records exist but are in no live
 * table until `commit` swaps the staged tables in; `abort` frees them.
 */
export class MemoryStagedInstall implements StagedInstall {
  private readonly mask: Uint8Array;
  private readonly staged: StagedSlots = { tables: new Map() };
  private count = 0;
  private state: 'open' | 'committed' | 'aborted' = 'open';
  private readonly generation: number;
  /** Keys and values are copied into the arena by `add`. */
  readonly copiesRecords = true;

  constructor(
    private readonly keyspace: Keyspace,
    readonly target: InstallTarget,
    private readonly swapIn: (target: InstallTarget, staged: StagedSlots) => { seq: number },
  ) {
    this.mask = slotMask(target.slots);
    this.generation = keyspace.generation;
  }

  get recordCount(): number {
    return this.count;
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- async so that failures reject
  async add(records: StoreRecord[]): Promise<void> {
    this.assertOpen();
    const keyspace = this.keyspace;
    for (const { key, entry } of records) {
      const slot = slotOf(key);
      if (this.mask[slot] !== 1) {
        throw dataLoss(`record for slot ${slot} is outside the artifact's slot ranges`);
      }
      let table = this.staged.tables.get(slot);
      if (!table) {
        table = keyspace.newTable();
        this.staged.tables.set(slot, table);
      }
      // Records may be views into the install's chunk (copiesRecords): the key and value
      // bytes are copied into the arena, or into the object kept for a large collection.
      const id = keyspace.create(key, hashKey(key), slot, entry, true);
      if (!keyspace.stage(table, id)) {
        keyspace.free(id);
        throw dataLoss(`duplicate key "${key.toString('latin1')}" in artifact`);
      }
      this.count++;
    }
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async commit(): Promise<{ seq: number; keysInstalled: number }> {
    this.assertOpen();
    const { seq } = this.swapIn(this.target, this.staged);
    this.state = 'committed';
    return { seq, keysInstalled: this.count };
  }

  abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      // A closed store dropped the staged records with everything else.
      if (this.keyspace.generation === this.generation)
        for (const table of this.staged.tables.values()) {
          for (const id of table.ids()) this.keyspace.free(id);
        }
      this.staged.tables.clear();
    }
    return Promise.resolve();
  }

  private assertOpen(): void {
    // A closed store cleared the keyspace (a new generation), staged records included.
    if (this.keyspace.generation !== this.generation) throw storeClosed('memory store');
    if (this.state !== 'open') throw failedPrecondition(`install already ${this.state}`);
  }
}
