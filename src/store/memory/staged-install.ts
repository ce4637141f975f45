import {
  type StoreRecord,
  dataLoss,
  failedPrecondition,
  slotMask,
  slotOf,
  storeClosed,
} from '../../core';
import { randomBytes } from 'node:crypto';
import type { InstallTarget, StagedInstall } from '../store';
import type { MemoryJournal } from './journal';
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
  /** Random, so that parts an earlier run of the node logged never merge with this install. */
  private readonly installId = randomBytes(8).readBigUInt64LE(0);
  /** Parts logged; a failed one fails the commit. */
  private readonly logged: Array<Promise<void>> = [];

  constructor(
    private readonly keyspace: Keyspace,
    readonly target: InstallTarget,
    private readonly swapIn: (target: InstallTarget, staged: StagedSlots) => { seq: number },
    private readonly journal: () => MemoryJournal | undefined = () => undefined,
    /** Called once, when the install commits or aborts. */
    private readonly settled: () => void = () => undefined,
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
    const journal = this.journal();
    journal?.check();
    const keyspace = this.keyspace;
    let staged = 0;
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
      staged++;
    }
    // Logged once every record is known to stage (the whole part, or the install fails).
    if (journal && staged > 0) {
      const part = journal.installPart(this.installId, this.target, records);
      // Awaited by commit; a failure before then must not be an unhandled rejection.
      part.catch(() => undefined);
      this.logged.push(part);
    }
  }

  async commit(): Promise<{ seq: number; keysInstalled: number }> {
    this.assertOpen();
    const journal = this.journal();
    journal?.check();
    const { seq } = this.swapIn(this.target, this.staged);
    this.state = 'committed';
    this.settled();
    const durable = journal?.installCommit(this.installId, {
      target: this.target,
      recordCount: this.count,
      seq,
    });
    // The log keeps order: the commit being durable means its parts are too.
    await Promise.all([...this.logged, durable]);
    return { seq, keysInstalled: this.count };
  }

  abort(): Promise<void> {
    if (this.state === 'open') {
      this.state = 'aborted';
      this.settled();
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
