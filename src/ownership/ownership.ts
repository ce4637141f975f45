import {
  ALL_SLOTS,
  ErrorCodes,
  MAX_SLOT,
  ShardsnapError,
  type SlotRange,
  invalidArgument,
  notFound,
  slotOf,
  slotRangesOverlap,
} from '../core';
import { failedPrecondition, moved, notServed, tryAgain } from './errors';
import { InFlight } from './in-flight';
import { ownershipFile, readOwnershipFile, writeOwnershipFile } from './ownership-file';
import { PauseTable } from './pause-table';
import {
  describeRanges,
  hasAll,
  hasAny,
  intersect,
  normalizeRanges,
  rangesOf,
  setRanges,
} from './slot-bitmap';
import {
  type ImportRecord,
  MAX_TRANSFERS,
  type OwnershipState,
  cloneState,
  copyImport,
  copyRanges,
  initialState,
} from './state';

export type { ImportRecord } from './state';

/**
 * The slots a node serves, the nodes known to serve the others, and the handoffs in
 * progress. Every change is written to `<dataDir>/ownership.json` before it takes effect,
 * so a node never serves after a restart what it had given away.
 */
export class Ownership {
  private state: OwnershipState;
  private ownedRanges: SlotRange[];
  private readonly pauses = new PauseTable();
  private readonly inFlight = new InFlight();
  /** Mutations run one at a time, each on the state the previous one persisted. */
  private tail: Promise<unknown> = Promise.resolve();
  /** Pauses held for imports found committing at load, until they are completed or abandoned. */
  private readonly holds = new Map<string, () => void>();
  /** An install is seeding this node (see claimSeed). */
  private seeding = false;

  private constructor(
    private readonly file: string,
    state: OwnershipState,
    /** In a cluster, slots come from the topology: no seeding by a forced install. */
    private readonly inCluster = false,
  ) {
    this.state = state;
    this.ownedRanges = rangesOf(state.owned);
    // A crash between "committing" and "complete" leaves it open whether the source has
    // let go of the slots; until that is settled neither side may take writes for them.
    for (const record of state.imports) {
      if (record.phase === 'committing') this.holds.set(record.id, this.pause(record.slots));
    }
  }

  /**
   * Reads `<dataDir>/ownership.json`. Without the file, the node owns `initial` (default:
   * every slot) and the file is written. With the file, `initial` must agree with it:
   * ownership changes by handoffs, not by restarting a node with other flags.
   */
  static async load(
    dataDir: string,
    initial?: readonly SlotRange[],
    options: { inCluster?: boolean } = {},
  ): Promise<Ownership> {
    const inCluster = options.inCluster ?? false;
    const file = ownershipFile(dataDir);
    const wanted = initial === undefined ? undefined : normalizeRanges(initial);
    const stored = await readOwnershipFile(file);
    if (!stored) {
      // A node joining a cluster owns nothing until the topology gives it slots.
      const state = initialState(wanted ?? (inCluster ? [] : ALL_SLOTS));
      await persist(file, state);
      return new Ownership(file, state, inCluster);
    }
    const recorded = rangesOf(stored.owned);
    if (wanted && !sameRanges(wanted, recorded)) {
      throw failedPrecondition(
        `the slots asked for (${describeRanges(wanted)}) differ from the slots this node owns ` +
          `according to ${file} (${describeRanges(recorded)}); start it without --slots to keep them`,
      );
    }
    return new Ownership(file, stored, inCluster);
  }

  owned(): SlotRange[] {
    return copyRanges(this.ownedRanges);
  }

  ownsAll(slots: readonly SlotRange[]): boolean {
    return hasAll(this.state.owned, normalizeRanges(slots));
  }

  ownsAny(slots: readonly SlotRange[]): boolean {
    return hasAny(this.state.owned, normalizeRanges(slots));
  }

  ownerOf(slot: number): string | undefined {
    if (!Number.isInteger(slot) || slot < 0 || slot > MAX_SLOT) {
      throw invalidArgument(`slot ${slot} is outside 0..${MAX_SLOT}`);
    }
    return this.state.owned[slot] === 1 ? undefined : this.state.owners[slot];
  }

  /** Throws for the first key this node may not serve now: TRYAGAIN, MOVED or not served. */
  check(keys: Iterable<Buffer>): void {
    const { owned, owners } = this.state;
    for (const key of keys) {
      const slot = slotOf(key);
      // A paused slot is mid-handoff: its owner is about to change, so even an owned
      // slot must not take the call.
      if (this.pauses.isPaused(slot)) throw tryAgain(slot);
      if (owned[slot] !== 1) {
        const owner = owners[slot];
        throw owner === undefined ? notServed(slot) : moved(slot, owner);
      }
    }
  }

  /** Checks the keys, then runs the call, counted as in flight until it settles. */
  async admit<T>(keys: readonly Buffer[], run: () => Promise<T>): Promise<T> {
    // Checked and counted synchronously, before the caller's next step: a pause() or
    // drain() that follows sees this call.
    this.check(keys);
    return await this.inFlight.track(run());
  }

  /** Calls admitted and not settled yet. */
  get inFlightCount(): number {
    return this.inFlight.count;
  }

  pause(slots: readonly SlotRange[]): () => void {
    return this.pauses.pause(normalizeRanges(slots));
  }

  drain(): Promise<void> {
    return this.inFlight.drain();
  }

  async transfer(id: string, slots: readonly SlotRange[], to: string): Promise<void> {
    requireText(id, 'a transfer id');
    requireText(to, `the target of transfer ${id}`);
    const ranges = requireRanges(slots, `transfer ${id}`);
    await this.mutate((s) => {
      const known = s.transfers.find((t) => t.id === id);
      if (known) {
        if (known.to === to && sameRanges(known.slots, ranges)) return false;
        throw failedPrecondition(
          `transfer ${id} is already recorded, of slots ${describeRanges(known.slots)} to ${known.to}`,
        );
      }
      if (!hasAll(s.owned, ranges)) {
        throw failedPrecondition(
          `cannot transfer slots ${describeRanges(ranges)} to ${to}: this node owns ${describeRanges(rangesOf(s.owned))}`,
        );
      }
      setRanges(s.owned, ranges, false);
      setRanges(s.cleanup, ranges, true);
      fillOwners(s, ranges, to);
      s.transfers.push({ id, slots: ranges, to });
      s.transfers = s.transfers.slice(-MAX_TRANSFERS);
      return true;
    });
  }

  transferred(id: string): { slots: SlotRange[]; to: string } | undefined {
    const known = this.state.transfers.find((t) => t.id === id);
    return known && { slots: copyRanges(known.slots), to: known.to };
  }

  async beginImport(record: { id: string; slots: SlotRange[]; source: string }): Promise<void> {
    if (this.seeding) throw failedPrecondition('this node is being seeded by an install');
    const { id, source } = record;
    requireText(id, 'an import id');
    requireText(source, `the source of import ${id}`);
    const ranges = requireRanges(record.slots, `import ${id}`);
    await this.mutate((s) => {
      const known = s.imports.find((r) => r.id === id);
      if (known) {
        if (known.source === source && sameRanges(known.slots, ranges)) return false;
        throw failedPrecondition(
          `import ${id} is already recorded, of slots ${describeRanges(known.slots)} from ${known.source}`,
        );
      }
      const owned = intersect(s.owned, ranges);
      if (owned.length > 0) {
        throw failedPrecondition(
          `cannot import slots ${describeRanges(ranges)}: this node already owns ${describeRanges(owned)}`,
        );
      }
      const other = s.imports.find((r) => slotRangesOverlap(r.slots, ranges));
      if (other) {
        throw failedPrecondition(
          `cannot import slots ${describeRanges(ranges)}: import ${other.id} of slots ${describeRanges(other.slots)} is in progress`,
        );
      }
      // The keys left by an earlier transfer of these slots are being removed; removing
      // them after the import is installed would remove the imported keys.
      const unclean = intersect(s.cleanup, ranges);
      if (unclean.length > 0) {
        throw new ShardsnapError(
          ErrorCodes.unavailable,
          `cannot import slots ${describeRanges(ranges)} yet: the keys of slots ${describeRanges(unclean)} given away earlier are still being removed; retry shortly`,
        );
      }
      s.imports.push({ id, slots: ranges, source, phase: 'importing' });
      // Until the import completes the source serves the slots: send clients there.
      fillOwners(s, ranges, source);
      return true;
    });
  }

  async markCommitting(id: string): Promise<void> {
    await this.mutate((s) => {
      const record = findImport(s, id);
      if (record.phase === 'committing') return false;
      record.phase = 'committing';
      return true;
    });
  }

  async completeImport(id: string): Promise<void> {
    await this.mutate((s) => {
      const record = findImport(s, id);
      setRanges(s.owned, record.slots, true);
      setRanges(s.cleanup, record.slots, false);
      fillOwners(s, record.slots, undefined);
      s.imports = s.imports.filter((r) => r !== record);
      return true;
    });
    this.releaseHold(id);
  }

  /**
   * Reserves the seeding of this node for one install, from its header to its commit:
   * a second one (or an import) meanwhile would commit data the first then claims.
   * Returns the release; throws FAILED_PRECONDITION when the node owns slots, has an
   * import under way, or is being seeded already.
   */
  claimSeed(): () => void {
    if (this.inCluster) {
      throw failedPrecondition(
        "this node is in a cluster: its slots come from the cluster's topology (cluster init, move, rebalance), not from a forced install",
      );
    }
    const owned = rangesOf(this.state.owned);
    if (owned.length > 0 || this.state.imports.length > 0 || this.seeding) {
      throw failedPrecondition(
        owned.length > 0
          ? `only a node that owns no slots can be seeded; this one owns ${describeRanges(owned)}`
          : 'this node is being seeded or has an import under way',
      );
    }
    this.seeding = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.seeding = false;
    };
  }

  /**
   * Seeds a node that owns nothing: it owns `slots` from now on (a forced install put
   * their data here). Refused once the node owns any slot, or has an import under way:
   * from then on ownership moves by handoffs only.
   */
  async adopt(slots: readonly SlotRange[]): Promise<void> {
    const ranges = normalizeRanges(slots);
    await this.mutate((s) => {
      if (rangesOf(s.owned).length > 0 || s.imports.length > 0) {
        throw failedPrecondition(
          `only a node that owns no slots can be seeded; this one owns ${describeRanges(rangesOf(s.owned))}`,
        );
      }
      setRanges(s.owned, ranges, true);
      setRanges(s.cleanup, ranges, false);
      fillOwners(s, ranges, undefined);
      return true;
    });
  }

  /**
   * Takes `slots` if this node is blank (see isBlank), checked and changed in one step;
   * resolves whether it did. How a cluster node takes what the topology first gives it.
   */
  async adoptIfBlank(slots: readonly SlotRange[]): Promise<boolean> {
    const ranges = normalizeRanges(slots);
    let adopted = false;
    await this.mutate((s) => {
      if (this.seeding || !isBlankState(s) || ranges.length === 0) return false;
      setRanges(s.owned, ranges, true);
      fillOwners(s, ranges, undefined);
      adopted = true;
      return true;
    });
    return adopted;
  }

  /** Forgets an import (idempotent); the owner hints stay, the source still owns the slots. */
  async abandonImport(id: string): Promise<void> {
    await this.mutate((s) => {
      const before = s.imports.length;
      s.imports = s.imports.filter((r) => r.id !== id);
      return s.imports.length !== before;
    });
    this.releaseHold(id);
  }

  /**
   * True while this node has never owned or given away a slot: nothing owned, imported,
   * transferred or left to clean up. Only such a node may take slots from a cluster
   * topology without a handoff; one that gave its slots away owns nothing too, but the
   * topology may not have caught up with that yet.
   */
  isBlank(): boolean {
    return !this.seeding && isBlankState(this.state);
  }

  imports(): ImportRecord[] {
    return this.state.imports.map(copyImport);
  }

  pendingCleanup(): SlotRange[] {
    return rangesOf(this.state.cleanup);
  }

  async cleaned(slots: readonly SlotRange[]): Promise<void> {
    const ranges = normalizeRanges(slots);
    await this.mutate((s) => {
      if (!hasAny(s.cleanup, ranges)) return false;
      setRanges(s.cleanup, ranges, false);
      return true;
    });
  }

  async setOwner(slots: readonly SlotRange[], address: string | undefined): Promise<void> {
    const ranges = normalizeRanges(slots);
    if (address !== undefined) requireText(address, 'an owner address');
    await this.mutate((s) => {
      let changed = false;
      for (const r of ranges) {
        for (let slot = r.start; slot <= r.end && !changed; slot++) {
          changed = s.owners[slot] !== address;
        }
      }
      fillOwners(s, ranges, address);
      return changed;
    });
  }

  /**
   * Takes the owners of the slots this node does not own from the cluster topology
   * (`addresses[slot]`, undefined where unknown), for MOVED answers. Slots it owns are
   * not touched: ownership moves by handoffs only. Resolves whether anything changed.
   */
  async followTopology(addresses: ReadonlyArray<string | undefined>): Promise<boolean> {
    let changed = false;
    await this.mutate((s) => {
      for (let slot = 0; slot <= MAX_SLOT; slot++) {
        const address = addresses[slot];
        if (s.owned[slot] === 1 || address === undefined || s.owners[slot] === address) continue;
        // An import in progress keeps sending clients to its source until it completes.
        if (s.imports.some((r) => r.slots.some((x) => x.start <= slot && slot <= x.end))) continue;
        s.owners[slot] = address;
        changed = true;
      }
      return changed;
    });
    return changed;
  }

  /**
   * Applies `change` to a copy of the state, persists the copy, then makes it current.
   * `change` returns false when there is nothing to change (nothing is written).
   */
  private mutate(change: (draft: OwnershipState) => boolean): Promise<void> {
    const job = this.tail.then(async () => {
      const draft = cloneState(this.state);
      if (!change(draft)) return;
      await persist(this.file, draft);
      this.state = draft;
      this.ownedRanges = rangesOf(draft.owned);
    });
    this.tail = job.catch(() => undefined);
    return job;
  }

  private releaseHold(id: string): void {
    this.holds.get(id)?.();
    this.holds.delete(id);
  }
}

async function persist(file: string, state: OwnershipState): Promise<void> {
  try {
    await writeOwnershipFile(file, state);
  } catch (error) {
    throw new ShardsnapError(
      ErrorCodes.internal,
      `cannot write the slot ownership of this node to ${file}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

function isBlankState(s: OwnershipState): boolean {
  return (
    !s.owned.includes(1) &&
    s.imports.length === 0 &&
    s.transfers.length === 0 &&
    !s.cleanup.includes(1)
  );
}

function findImport(state: OwnershipState, id: string): ImportRecord {
  const record = state.imports.find((r) => r.id === id);
  if (!record) throw notFound(`no import ${id} is recorded on this node`);
  return record;
}

function fillOwners(
  state: OwnershipState,
  ranges: readonly SlotRange[],
  address: string | undefined,
): void {
  for (const r of ranges) state.owners.fill(address, r.start, r.end + 1);
}

function requireRanges(slots: readonly SlotRange[], what: string): SlotRange[] {
  const ranges = normalizeRanges(slots);
  if (ranges.length === 0) throw invalidArgument(`${what} names no slots`);
  return ranges;
}

function requireText(value: string, what: string): void {
  if (typeof value !== 'string' || value === '') throw invalidArgument(`${what} is required`);
}

function sameRanges(a: readonly SlotRange[], b: readonly SlotRange[]): boolean {
  return a.length === b.length && a.every((r, i) => r.start === b[i]?.start && r.end === b[i]?.end);
}
