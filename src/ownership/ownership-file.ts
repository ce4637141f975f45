import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { MAX_SLOT, type SlotRange, dataLoss, validateSlotRange } from '../core';
import { writeFileDurably } from './durable-write';
import { failedPrecondition } from './errors';
import { normalizeRanges, rangesOf, setRanges } from './slot-bitmap';
import {
  type ImportRecord,
  MAX_TRANSFERS,
  type OwnershipState,
  type TransferRecord,
  initialState,
} from './state';

export const OWNERSHIP_FILE = 'ownership.json';
const VERSION = 1;

interface OwnershipDoc {
  version: number;
  owned: SlotRange[];
  owners: Array<{ address: string; slots: SlotRange[] }>;
  imports: ImportRecord[];
  transfers: TransferRecord[];
  pendingCleanup: SlotRange[];
}

export function ownershipFile(dataDir: string): string {
  return path.join(dataDir, OWNERSHIP_FILE);
}

/** The persisted state, or undefined when the node has none yet. */
export async function readOwnershipFile(file: string): Promise<OwnershipState | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw failedPrecondition(
      `cannot read the slot ownership of this node from ${file}: ${(error as Error).message}`,
      error,
    );
  }
  try {
    return fromDoc(JSON.parse(text) as unknown);
  } catch (error) {
    // Starting with a guess would let two nodes serve the same slots: refuse instead.
    throw failedPrecondition(
      `the slot ownership file ${file} is corrupt (${(error as Error).message}); ` +
        'restore it, or remove it and start the node with --slots',
      error,
    );
  }
}

export function writeOwnershipFile(file: string, state: OwnershipState): Promise<void> {
  return writeFileDurably(file, `${JSON.stringify(toDoc(state), null, 2)}\n`);
}

function toDoc(state: OwnershipState): OwnershipDoc {
  return {
    version: VERSION,
    owned: rangesOf(state.owned),
    owners: ownerRuns(state.owners),
    imports: state.imports,
    transfers: state.transfers,
    pendingCleanup: rangesOf(state.cleanup),
  };
}

/** Owner hints grouped by address, each as ranges. */
function ownerRuns(owners: ReadonlyArray<string | undefined>): OwnershipDoc['owners'] {
  const byAddress = new Map<string, SlotRange[]>();
  let slot = 0;
  while (slot <= MAX_SLOT) {
    const address = owners[slot];
    const start = slot;
    while (slot <= MAX_SLOT && owners[slot] === address) slot++;
    if (address === undefined) continue;
    const ranges = byAddress.get(address) ?? [];
    ranges.push({ start, end: slot - 1 });
    byAddress.set(address, ranges);
  }
  return [...byAddress].map(([address, slots]) => ({ address, slots }));
}

function fromDoc(doc: unknown): OwnershipState {
  const root = object(doc, 'the document');
  if (root.version !== VERSION) {
    throw dataLoss(`unsupported version ${JSON.stringify(root.version)} (expected ${VERSION})`);
  }
  const state = initialState(ranges(root.owned, 'owned'));
  for (const [i, entry] of array(root.owners, 'owners').entries()) {
    const owner = object(entry, `owners[${i}]`);
    const address = text(owner.address, `owners[${i}].address`);
    for (const r of ranges(owner.slots, `owners[${i}].slots`)) {
      state.owners.fill(address, r.start, r.end + 1);
    }
  }
  const ids = new Set<string>();
  for (const [i, entry] of array(root.imports, 'imports').entries()) {
    const record = object(entry, `imports[${i}]`);
    const id = text(record.id, `imports[${i}].id`);
    if (ids.has(id)) throw dataLoss(`import ${id} is recorded twice`);
    ids.add(id);
    const phase = record.phase;
    if (phase !== 'importing' && phase !== 'committing') {
      throw dataLoss(`imports[${i}].phase is ${JSON.stringify(phase)}`);
    }
    state.imports.push({
      id,
      slots: ranges(record.slots, `imports[${i}].slots`),
      source: text(record.source, `imports[${i}].source`),
      phase,
    });
  }
  for (const [i, entry] of array(root.transfers, 'transfers').entries()) {
    const record = object(entry, `transfers[${i}]`);
    state.transfers.push({
      id: text(record.id, `transfers[${i}].id`),
      slots: ranges(record.slots, `transfers[${i}].slots`),
      to: text(record.to, `transfers[${i}].to`),
    });
  }
  state.transfers = state.transfers.slice(-MAX_TRANSFERS);
  setRanges(state.cleanup, ranges(root.pendingCleanup, 'pendingCleanup'), true);
  return state;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw dataLoss(`${where} is not an object`);
  }
  return value as Record<string, unknown>;
}

function array(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw dataLoss(`${where} is not a list`);
  return value;
}

function text(value: unknown, where: string): string {
  if (typeof value !== 'string' || value === '')
    throw dataLoss(`${where} is not a non-empty string`);
  return value;
}

function ranges(value: unknown, where: string): SlotRange[] {
  const list = array(value, where).map((entry, i) => {
    const r = object(entry, `${where}[${i}]`);
    try {
      return validateSlotRange({ start: r.start as number, end: r.end as number });
    } catch (error) {
      throw dataLoss(`${where}[${i}]: ${(error as Error).message}`, error);
    }
  });
  return normalizeRanges(list);
}
