import { randomBytes } from 'node:crypto';
import {
  ErrorCodes,
  ShardsnapError,
  ErrorReasons,
  hasReason,
  isShardsnapError,
  type SlotRange,
  abortableSleep,
  asError,
  failedPrecondition,
  formatSlotRanges,
  invalidArgument,
  normalizeSlotRanges,
  slotRangesOverlap,
  unavailable,
} from '../../core';
import type { ClientSecurity } from '../../wire/security';
import { type EtcdConnection, connectEtcd, etcdCall } from '../etcd';
import { ClusterKeys, hostDerivedName, validName } from '../keys';
import { LeaderLease } from '../leader-lease';
import { type MigrationRecord, encodeMigration, listMigrations } from '../migration-records';
import { type NodeInfo, listNodes, listRemoved } from '../node-info';
import { type Topology, ownersOf, reassign, rangesOfNode } from '../topology';
import {
  type VersionedTopology,
  readTopology,
  topologyChanged,
  writeTopology,
} from '../topology-store';
import { commitIf, deleteOp, putOp } from '../txn';
import { type MoveStep, planDrain, planEvenSpread, planMove, planWeightedSpread } from './plan';
import { slotWeights } from './slot-weights';
import { type CrashPoint, crashAt } from './crash-point';
import { driveMigration } from './drive';
import { settleMigration } from './settle';

export interface ControllerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

/** What a controller reports as it goes (the CLI prints it). */
export type ControllerEvent =
  | { kind: 'leader'; id: string }
  | { kind: 'recovering'; record: MigrationRecord }
  | { kind: 'started'; record: MigrationRecord }
  | {
      kind: 'progress';
      record: MigrationRecord;
      phase: string;
      bytes: number;
      totalBytes: number;
      lag: number;
    }
  | { kind: 'committed'; record: MigrationRecord; version: number }
  | { kind: 'aborted'; record: MigrationRecord; why: string };

export interface ControllerOptions {
  endpoints: string;
  cluster: string;
  /** What this controller does (written with the lead): move, rebalance, remove-node, controller. */
  purpose: string;
  id?: string;
  leaseTtlSeconds?: number;
  /** How long to wait for another controller to finish; 0 = refuse at once (CONTROLLER_BUSY). */
  waitLeaderMs?: number;
  security?: ClientSecurity;
  log?: ControllerLog;
  onEvent?: (event: ControllerEvent) => void;
  /** Longest write pause a handoff may cause (ms). */
  maxPauseMs?: number;
  /** Migrations run at once (each with its own target). */
  parallel?: number;
  /** How long an unsettled migration (a node unreachable, a commit in doubt) is waited for. */
  settleTimeoutMs?: number;
  /** See crash-point.ts. */
  exitAt?: string;
  /** Finished migration records kept in etcd (default 200). */
  keepFinished?: number;
  signal?: AbortSignal;
}

/** The topology an operator's change was planned on. */
export interface PlannedOn {
  revision: string;
  version: number;
}

export interface ClusterState {
  topology: VersionedTopology;
  nodes: Map<string, NodeInfo>;
  removed: Set<string>;
  migrations: MigrationRecord[];
}

export interface RunSummary {
  steps: MoveStep[];
  committed: MigrationRecord[];
  recovered: { committed: number; aborted: number };
  version: number;
  elapsedMs: number;
  bytes: number;
  maxWritePauseMs: number;
}

/** Finished migration records kept in etcd; older ones are deleted by the next controller. */
const KEEP_FINISHED = 200;
/** Deletes per transaction (etcd's default limit is 128 operations). */
const PRUNE_BATCH = 100;

/** Reads of the topology a step's record may race with commits of its siblings. */
const RECORD_ATTEMPTS = 10;

/** A migration refused for a busy source is tried again, this many times, this much later. */
const BUSY_RETRIES = 5;
const BUSY_RETRY_MS = 1_000;

const quiet: ControllerLog = { info: () => undefined, warn: () => undefined };

/** Reads everything `cluster status` shows; needs no lead. */
export async function readClusterState(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<ClusterState> {
  const [topology, nodes, removed, migrations] = await Promise.all([
    readTopology(conn, keys),
    listNodes(conn, keys),
    listRemoved(conn, keys),
    listMigrations(conn, keys),
  ]);
  return { topology, nodes, removed, migrations };
}

/**
 * The cluster's controller: holds the leader lease while it acts, writes every migration
 * to etcd before starting it, drives it with MigrateSlots on the target, and commits the
 * topology change in the transaction that marks the migration done. At start it settles
 * the migrations a previous controller left (see settle.ts).
 */
export class Controller {
  readonly id: string;
  private readonly log: ControllerLog;
  private readonly stop = new AbortController();
  private readonly combined: AbortSignal;

  private constructor(
    readonly conn: EtcdConnection,
    readonly keys: ClusterKeys,
    readonly lease: LeaderLease,
    private readonly options: ControllerOptions,
  ) {
    this.id = lease.identity.id;
    this.log = options.log ?? quiet;
    const signals = [lease.lost, this.stop.signal];
    if (options.signal) signals.push(options.signal);
    this.combined = AbortSignal.any(signals);
  }

  /** Connects and takes the lead (waiting up to `waitLeaderMs` for another controller). */
  static async lead(options: ControllerOptions): Promise<Controller> {
    const keys = new ClusterKeys(options.cluster);
    const conn = connectEtcd(options.endpoints);
    try {
      const id = validName(options.id ?? hostDerivedName('ctl-'), 'controller id');
      const lease = await LeaderLease.campaign(
        conn,
        keys,
        { id, purpose: options.purpose },
        {
          ttlSeconds: options.leaseTtlSeconds ?? 5,
          waitMs: options.waitLeaderMs ?? 0,
          ...(options.signal ? { signal: options.signal } : {}),
        },
      );
      const controller = new Controller(conn, keys, lease, options);
      options.onEvent?.({ kind: 'leader', id });
      return controller;
    } catch (error) {
      conn.close();
      throw error;
    }
  }

  /** Aborts when the lead is lost, the controller closes or the caller's signal fires. */
  get signal(): AbortSignal {
    return this.combined;
  }

  state(): Promise<ClusterState> {
    return readClusterState(this.conn, this.keys);
  }

  crash(point: CrashPoint): void {
    crashAt(this.options.exitAt, point);
  }

  /** Finishes or rolls back every migration a previous controller left running. */
  async recover(): Promise<{ committed: number; aborted: number }> {
    const outcome = { committed: 0, aborted: 0 };
    const records = await listMigrations(this.conn, this.keys);
    await this.forgetOldest(records.filter((r) => r.state !== 'running'));
    const running = records.filter((r) => r.state === 'running');
    await Promise.all(
      running.map(async (record) => {
        this.options.onEvent?.({ kind: 'recovering', record });
        this.log.info(
          { migration: record.id },
          'settling a migration left by a previous controller',
        );
        try {
          const result = await this.settle(record);
          outcome[result === 'committed' ? 'committed' : 'aborted']++;
        } catch (error) {
          // Its slots stay in doubt (steps touching them are refused); the rest can move.
          if (this.lease.lost.aborted) throw error;
          this.log.warn(
            { err: asError(error), migration: record.id },
            'a migration left by a previous controller cannot be settled yet',
          );
        }
      }),
    );
    return outcome;
  }

  /** Finished migration records beyond `keepFinished` go, oldest first (the history is for people). */
  private async forgetOldest(finished: readonly MigrationRecord[]): Promise<void> {
    await this.forget(
      oldestBeyond(finished, this.options.keepFinished ?? KEEP_FINISHED).map((r) =>
        this.keys.migration(r.id),
      ),
    );
  }

  /** Deletes keys this controller's history no longer needs (fenced, in batches). */
  async forget(keys: readonly string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += PRUNE_BATCH) {
      const { succeeded } = await commitIf(
        this.conn,
        'forgetting old records',
        this.lease.fence,
        keys.slice(i, i + PRUNE_BATCH).map((key) => deleteOp(key)),
      );
      if (!succeeded) throw this.notLeader();
    }
  }

  /**
   * Moves `slots` to `to`. `plannedOn` is the topology the operator planned on: when it
   * changed meanwhile the move is refused (TOPOLOGY_CHANGED), nothing is recorded.
   */
  async move(slots: readonly SlotRange[], to: string, plannedOn?: PlannedOn): Promise<RunSummary> {
    if (slots.length === 0) throw invalidArgument('move: --slots is required');
    const ranges = normalizeSlotRanges(slots);
    const started = Date.now();
    const recovered = await this.recover();
    const current = await readTopology(this.conn, this.keys);
    if (plannedOn && current.revision !== plannedOn.revision) {
      throw topologyChanged(plannedOn.version, current.topology.version, false);
    }
    const state = await this.state();
    this.requireLive(state, to, 'the target');
    const steps = planMove(current.topology, ranges, to);
    return this.runSteps(steps, 'move', started, recovered, current);
  }

  /** An even spread of slots over the live nodes. */
  async rebalance(options: { by?: SpreadBy } = {}): Promise<RunSummary> {
    const started = Date.now();
    const recovered = await this.recover();
    const steps = await rebalancePlan(
      await this.state(),
      options.by ?? 'slots',
      this.options.security,
    );
    return this.runSteps(steps, 'rebalance', started, recovered);
  }

  /** Moves every slot off `node`, then deregisters it (it may not register again). */
  async removeNode(node: string): Promise<RunSummary> {
    const started = Date.now();
    const recovered = await this.recover();
    const state = await this.state();
    const held = rangesOfNode(state.topology.topology, node);
    if (!state.nodes.has(node) && held.length > 0) {
      throw failedPrecondition(
        `node ${node} holds slots ${formatSlotRanges(held)} and is not live: it cannot be drained; start it again first`,
      );
    }
    if (!state.nodes.has(node) && held.length === 0 && !state.removed.has(node)) {
      throw invalidArgument(`node ${node} is not registered in cluster ${this.keys.cluster}`);
    }
    const others = liveNodes(state).filter((n) => n !== node);
    const summary = await this.runSteps(
      planDrain(state.topology.topology, node, others),
      'remove-node',
      started,
      recovered,
    );
    await this.deregister(node, state.nodes.get(node));
    return summary;
  }

  private async deregister(node: string, info: NodeInfo | undefined): Promise<void> {
    const kv = await etcdCall(this.conn, `reading node ${node}`, () =>
      this.conn.client.get(this.keys.node(node)).exec(),
    );
    const leaseId = kv.kvs[0]?.lease;
    const { succeeded } = await commitIf(
      this.conn,
      `deregistering node ${node}`,
      this.lease.fence,
      [
        deleteOp(this.keys.node(node)),
        putOp(
          this.keys.removedNode(node),
          JSON.stringify({
            id: node,
            address: info?.address ?? '',
            removedAtMs: Date.now(),
            by: this.id,
          }),
        ),
      ],
    );
    if (!succeeded) throw this.notLeader();
    // Ending the node's lease tells it at once; it then finds itself removed.
    if (leaseId && leaseId !== '0') {
      await this.conn.client.leaseClient.leaseRevoke({ ID: leaseId }).catch(() => undefined);
    }
    this.log.info({ node }, 'node removed from the cluster');
  }

  /** Runs the steps, up to `parallel` at once, never two on the same target. */
  private async runSteps(
    steps: MoveStep[],
    purpose: string,
    started: number,
    recovered: { committed: number; aborted: number },
    plannedOn?: VersionedTopology,
  ): Promise<RunSummary> {
    const committed: MigrationRecord[] = [];
    const parallel = Math.max(1, this.options.parallel ?? 2);
    const queue = [...steps];
    let failure: unknown;
    let first = true;
    const attempts = new Map<MoveStep, number>();
    const busyTargets = new Set<string>();
    const worker = async (): Promise<void> => {
      for (;;) {
        if (failure !== undefined) return;
        // Never two at once to one target: each installs and catches up on its own.
        const index = queue.findIndex((s) => !busyTargets.has(s.to));
        const step = queue[index];
        if (!step) return;
        queue.splice(index, 1);
        busyTargets.add(step.to);
        try {
          // Only the first record carries the operator's plan; the rest build on our own commits.
          const base = first && plannedOn ? plannedOn : undefined;
          first = false;
          const record = await this.start(step, purpose, base);
          const outcome = await this.finish(record);
          if (outcome.record.state === 'done') {
            committed.push(outcome.record);
            continue;
          }
          // A busy source (its build or transfer slots full) is worth another go later.
          const tries = (attempts.get(step) ?? 0) + 1;
          attempts.set(step, tries);
          if (
            isShardsnapError(outcome.cause, ErrorCodes.resourceExhausted) &&
            tries < BUSY_RETRIES
          ) {
            await this.pause(BUSY_RETRY_MS * tries);
            queue.push(step);
            continue;
          }
          failure ??= didNotComplete(record, outcome);
        } catch (error) {
          failure ??= error;
        } finally {
          busyTargets.delete(step.to);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(parallel, steps.length) }, worker));
    if (failure !== undefined) throw asError(failure);
    const { topology } = await readTopology(this.conn, this.keys);
    return this.summary(steps, committed, recovered, topology.version, started);
  }

  private summary(
    steps: MoveStep[],
    committed: MigrationRecord[],
    recovered: { committed: number; aborted: number },
    version: number,
    started: number,
  ): RunSummary {
    return {
      steps,
      committed,
      recovered,
      version,
      elapsedMs: Date.now() - started,
      bytes: committed.reduce((sum, r) => sum + (r.bytes ?? 0), 0),
      maxWritePauseMs: committed.reduce((max, r) => Math.max(max, r.writePauseMs ?? 0), 0),
    };
  }

  /** Writes the migration record (the version check), then nothing else happens before it is in etcd. */
  private async start(
    step: MoveStep,
    purpose: string,
    plannedOn?: VersionedTopology,
  ): Promise<MigrationRecord> {
    if (plannedOn) return this.record(step, purpose, plannedOn);
    // A step of this controller's own plan: a commit of a migration running beside it
    // may change the topology between the read and the record; the step's slots stay
    // the source's (checked on every read), so read again and record.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.record(step, purpose, await readTopology(this.conn, this.keys));
      } catch (error) {
        const raced = hasReason(error, ErrorReasons.topologyChanged) && !this.lease.lost.aborted;
        if (!raced || attempt >= RECORD_ATTEMPTS) throw error;
      }
    }
  }

  /** Writes the migration record if the topology is still `base` (the version check). */
  private async record(
    step: MoveStep,
    purpose: string,
    base: VersionedTopology,
  ): Promise<MigrationRecord> {
    const state = await this.state();
    const from = this.requireLive(state, step.from, 'the source');
    const to = this.requireLive(state, step.to, 'the target');
    const owners = ownersOf(base.topology, step.slots);
    if (owners.size !== 1 || !owners.has(step.from)) {
      throw topologyChanged(base.topology.version, state.topology.topology.version, false);
    }
    const busy = state.migrations.find(
      (r) => r.state === 'running' && slotRangesOverlap(r.slots, step.slots),
    );
    if (busy) {
      throw failedPrecondition(
        `slots ${formatSlotRanges(step.slots)} overlap migration ${busy.id} in progress`,
      );
    }
    const now = Date.now();
    const record: MigrationRecord = {
      id: `m${base.topology.version}-${randomBytes(4).toString('hex')}`,
      slots: step.slots,
      from: step.from,
      to: step.to,
      fromAddress: from.address,
      toAddress: to.address,
      state: 'running',
      baseVersion: base.topology.version,
      purpose,
      controller: this.id,
      createdAtMs: now,
      updatedAtMs: now,
    };
    const { succeeded } = await commitIf(
      this.conn,
      `recording migration ${record.id}`,
      [
        { key: this.keys.topology, target: 'Mod', op: '==', value: base.revision },
        ...this.lease.fence,
      ],
      [putOp(this.keys.migration(record.id), encodeMigration(record))],
    );
    if (!succeeded) {
      const now = await readTopology(this.conn, this.keys);
      throw topologyChanged(
        base.topology.version,
        now.topology.version,
        now.revision === base.revision,
      );
    }
    this.options.onEvent?.({ kind: 'started', record });
    this.log.info(
      {
        migration: record.id,
        slots: formatSlotRanges(record.slots),
        from: record.from,
        to: record.to,
      },
      'migration recorded',
    );
    this.crash('recorded');
    return record;
  }

  /** Drives the migration; whatever happens, the record ends settled or the error says why not. */
  private async finish(
    record: MigrationRecord,
  ): Promise<{ record: MigrationRecord; cause?: unknown }> {
    await this.confirmUntouched(record);
    try {
      const status = await driveMigration(this, record, {
        maxPauseMs: this.options.maxPauseMs,
        security: this.options.security,
        onEvent: (status) =>
          this.options.onEvent?.({
            kind: 'progress',
            record,
            phase: status.phase,
            bytes: status.bytes,
            totalBytes: status.totalBytes,
            lag: status.lag,
          }),
      });
      this.crash('done');
      return {
        record: await this.commit({
          ...record,
          bytes: status.bytes,
          keys: status.keys,
          writePauseMs: status.writePauseMs,
        }),
      };
    } catch (error) {
      if (this.lease.lost.aborted) throw this.notLeader(error);
      this.log.warn(
        { err: asError(error), migration: record.id },
        'migration did not finish; settling it',
      );
      const outcome = await this.settle({ ...record, error: asError(error).message });
      const settled = (await listMigrations(this.conn, this.keys)).find((r) => r.id === record.id);
      return {
        record: settled ?? { ...record, state: outcome === 'committed' ? 'done' : 'aborted' },
        cause: error,
      };
    }
  }

  /**
   * Right before the target is asked to start: this controller still leads and nobody
   * settled the record meanwhile (it is still the version written). A controller that
   * stalled past its lease between recording and starting a migration would otherwise
   * start one its successor has already marked aborted.
   */
  private async confirmUntouched(record: MigrationRecord): Promise<void> {
    const { succeeded } = await commitIf(
      this.conn,
      `confirming the lead before migration ${record.id}`,
      [
        ...this.lease.fence,
        { key: this.keys.migration(record.id), target: 'Version', op: '==', value: 1 },
      ],
      [],
    );
    if (!succeeded) throw this.notLeader();
  }

  /** Asks the nodes what became of a migration, then commits or aborts its record. */
  settle(record: MigrationRecord): Promise<'committed' | 'aborted'> {
    return settleMigration(this, record, {
      security: this.options.security,
      timeoutMs: this.options.settleTimeoutMs ?? 120_000,
    });
  }

  /**
   * The topology change and the record's 'done' in one transaction, on the topology as it
   * is now (other migrations of this controller may have committed meanwhile).
   */
  async commit(record: MigrationRecord): Promise<MigrationRecord> {
    for (;;) {
      const base = await readTopology(this.conn, this.keys);
      const owners = ownersOf(base.topology, record.slots);
      if (owners.size === 1 && owners.has(record.to)) {
        // Committed by an earlier attempt whose answer was lost.
        return this.markRecord(record, 'done', base.topology.version);
      }
      const next: Topology = reassign(base.topology, record.slots, record.to);
      const done: MigrationRecord = {
        ...record,
        state: 'done',
        committedVersion: next.version,
        updatedAtMs: Date.now(),
      };
      try {
        await writeTopology(this.conn, this.keys, base, next, {
          fence: this.lease.fence,
          ops: [putOp(this.keys.migration(record.id), encodeMigration(done))],
          what: `committing migration ${record.id}`,
        });
      } catch (error) {
        if (hasReason(error, ErrorReasons.topologyChanged)) continue;
        throw error;
      }
      this.options.onEvent?.({ kind: 'committed', record: done, version: next.version });
      this.log.info(
        { migration: record.id, version: next.version },
        'migration committed to the topology',
      );
      this.crash('committed');
      return done;
    }
  }

  /** Marks the record without touching the topology (aborted, or already committed). */
  async markRecord(
    record: MigrationRecord,
    state: 'done' | 'aborted',
    version?: number,
  ): Promise<MigrationRecord> {
    const updated: MigrationRecord = {
      ...record,
      state,
      updatedAtMs: Date.now(),
      ...(version === undefined ? {} : { committedVersion: version }),
    };
    const { succeeded } = await commitIf(
      this.conn,
      `marking migration ${record.id} ${state}`,
      this.lease.fence,
      [putOp(this.keys.migration(record.id), encodeMigration(updated))],
    );
    if (!succeeded) throw this.notLeader();
    if (state === 'aborted')
      this.options.onEvent?.({ kind: 'aborted', record: updated, why: record.error ?? '' });
    return updated;
  }

  /** Waits, or ends early when the lead is lost or the controller stops. */
  async pause(ms: number): Promise<void> {
    await abortableSleep(ms, this.signal, 'settling');
  }

  private requireLive(state: ClusterState, node: string, what: string): NodeInfo {
    const info = state.nodes.get(node);
    if (!info || state.removed.has(node)) {
      throw failedPrecondition(
        `${what} node ${node} is not live in cluster ${this.keys.cluster} (its registration is missing)`,
      );
    }
    return info;
  }

  notLeader(cause?: unknown): ShardsnapError {
    return failedPrecondition(
      `controller ${this.id} lost the leader lease; another controller acts now`,
      {
        reason: ErrorReasons.notLeader,
        ...(cause === undefined ? {} : { cause }),
      },
    );
  }

  /** Lets go of the lead. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.lease.resign();
    this.conn.close();
  }
}

/** Why a run stopped: the migration's own error, its code kept (a refusal stays one). */
function didNotComplete(
  record: MigrationRecord,
  outcome: { record: MigrationRecord; cause?: unknown },
): ShardsnapError {
  const cause = outcome.cause;
  const message = `migration ${record.id} of slots ${formatSlotRanges(record.slots)} to ${record.to} did not complete: ${outcome.record.error ?? 'rolled back'}`;
  if (!isShardsnapError(cause)) return unavailable(message, { cause });
  return new ShardsnapError(cause.code, message, {
    cause,
    reason: cause.reason,
    metadata: cause.metadata,
    ...(cause.retryAfterMs === undefined ? {} : { retryAfterMs: cause.retryAfterMs }),
  });
}

/** The oldest of `records` (by their last update) beyond the newest `keep`. */
export function oldestBeyond<T extends { updatedAtMs: number }>(
  records: readonly T[],
  keep: number,
): T[] {
  return [...records]
    .sort((a, b) => a.updatedAtMs - b.updatedAtMs)
    .slice(0, Math.max(0, records.length - keep));
}

/** Registered nodes that remove-node has not removed, by id. */
export function liveNodes(state: ClusterState): string[] {
  return [...state.nodes.keys()].filter((n) => !state.removed.has(n)).sort();
}

/** What a rebalance evens out: slot counts, or bytes (memory nodes report them per slot). */
export type SpreadBy = 'slots' | 'bytes';

/** The moves of a rebalance: an even spread of slots, or of bytes, over the live nodes. */
export async function rebalancePlan(
  state: ClusterState,
  by: SpreadBy,
  security?: ClientSecurity,
): Promise<MoveStep[]> {
  if (state.topology.topology.version === 0) {
    throw failedPrecondition(
      `cluster ${state.topology.topology.cluster} has no topology yet; run \`cluster init --node ID\``,
    );
  }
  const live = liveNodes(state);
  if (by === 'slots') return planEvenSpread(state.topology.topology, live);
  return planWeightedSpread(
    state.topology.topology,
    live,
    await slotWeights(state, live, security),
  );
}
