import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  abortableSleep,
  asError,
  hasReason,
} from '../../core';
import { etcdCall } from '../etcd';
import { type OperationRequest, type OperationResult, listRequests } from '../requests';
import { putOp, commitIf } from '../txn';
import {
  Controller,
  type ControllerOptions,
  type RunSummary,
  liveNodes,
  oldestBeyond,
  rebalancePlan,
} from './controller';

export interface StandingOptions extends Omit<ControllerOptions, 'purpose' | 'waitLeaderMs'> {
  /** Rebalance by itself whenever the spread is uneven (a node joined or left). */
  autoRebalance: boolean;
  /** Look at the cluster at least this often, even without an etcd event. */
  checkEveryMs: number;
  /** Ends the controller (SIGTERM): it lets go of the lead. */
  signal: AbortSignal;
}

/** A standby waits this long between tries for the lead (the campaign itself polls). */
const STANDBY_RETRY_MS = 1_000;
const FOREVER_MS = 2 ** 31 - 1;

/**
 * `shardsnap controller`: waits for the lead (so several can run, one acting), then keeps
 * it: settles what a previous controller left, runs the operations queued by `cluster
 * move|rebalance|remove-node` oldest first, and, with `autoRebalance`, spreads the slots
 * again when nodes come and go. Losing the lead sends it back to waiting.
 */
export async function runStandingController(options: StandingOptions): Promise<void> {
  const { signal } = options;
  while (!signal.aborted) {
    let controller: Controller;
    try {
      controller = await Controller.lead({
        ...options,
        purpose: 'controller',
        waitLeaderMs: FOREVER_MS,
      });
    } catch (error) {
      if (signal.aborted) return;
      options.log?.warn({ err: asError(error) }, 'cannot take the lead; trying again');
      await abortableSleep(STANDBY_RETRY_MS, signal, 'standby').catch(() => undefined);
      continue;
    }
    try {
      await actWhileLeader(controller, options);
    } catch (error) {
      if (!signal.aborted)
        options.log?.warn(
          { err: asError(error) },
          'controller stopped acting; waiting for the lead again',
        );
    } finally {
      await controller.close();
    }
  }
}

async function actWhileLeader(controller: Controller, options: StandingOptions): Promise<void> {
  const { conn, keys, signal } = controller;
  const changes = new ChangeBell();
  const watcher = await etcdCall(conn, 'watching requests and nodes', () =>
    conn.client.watch().prefix(keys.prefix).create(),
  );
  const ring = (): void => changes.ring();
  watcher.on('put', ring).on('delete', ring).on('connected', ring);
  // A failed watch leaves the periodic look (checkEveryMs); it must not end the process.
  watcher.on('error', (err) => {
    options.log?.warn({ err }, 'the watch of the cluster failed; looking every check interval');
    ring();
  });
  // The live nodes at the last automatic rebalance; undefined: none yet since taking the lead.
  let members: string | undefined;
  try {
    await controller.recover();
    while (!signal.aborted) {
      const changed = await runQueued(controller);
      if (!changed && options.autoRebalance)
        members = await rebalanceOnJoinOrLeave(controller, options, members);
      await changes.wait(options.checkEveryMs, signal);
      // Events come in bursts (a migration writes several keys): look once they settle.
      await abortableSleep(50, signal, 'debounce').catch(() => undefined);
    }
  } finally {
    await watcher.cancel().catch(() => undefined);
  }
}

/** Finished requests kept in etcd for the commands that wait on them, and for people. */
const KEEP_FINISHED_REQUESTS = 200;

/** Remembers that etcd changed, so that a change while the controller was busy is not missed. */
class ChangeBell {
  private rung = false;
  private wake: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    this.wake?.();
  }

  /** Resolves at the next ring (at once if one came since the last wait), after `ms`, or on abort. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (!this.rung && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, ms);
        signal.addEventListener('abort', done, { once: true });
        this.wake = done;
      });
    }
    this.rung = false;
  }
}

/** Runs every pending request; true when one ran. */
async function runQueued(controller: Controller): Promise<boolean> {
  const requests = await listRequests(controller.conn, controller.keys);
  const finished = requests.filter((r) => r.state === 'done' || r.state === 'failed');
  await controller.forget(
    oldestBeyond(finished, KEEP_FINISHED_REQUESTS).map((r) => controller.keys.request(r.id)),
  );
  const queued = requests.filter((r) => r.state === 'pending' || r.state === 'running');
  for (const request of queued) {
    if (controller.signal.aborted) return true;
    // One found running was started by a controller that died: its plan was checked then.
    const resumed = request.state === 'running';
    await update(controller, { ...request, state: 'running' });
    try {
      const summary = await execute(controller, request, resumed);
      await update(controller, { ...request, state: 'done', result: resultOf(summary) });
    } catch (error) {
      if (controller.signal.aborted) throw error;
      const e = error instanceof ShardsnapError ? error : undefined;
      await update(controller, {
        ...request,
        state: 'failed',
        error: {
          code: e?.code ?? ErrorCodes.internal,
          reason: e?.reason ?? 'INTERNAL',
          message: asError(error).message,
          metadata: { ...(e?.metadata ?? {}) },
        },
      });
    }
  }
  return queued.length > 0;
}

function execute(
  controller: Controller,
  request: OperationRequest,
  resumed: boolean,
): Promise<RunSummary> {
  switch (request.op) {
    case 'move':
      return controller.move(
        request.slots,
        request.to,
        resumed
          ? undefined
          : { revision: request.plannedRevision, version: request.plannedVersion },
      );
    case 'rebalance':
      return controller.rebalance({ by: request.by ?? 'slots' });
    case 'remove-node':
      return controller.removeNode(request.node);
  }
}

/**
 * Spreads the slots by count when the set of live nodes changed since the last time (and
 * once on taking the lead): moves an operator made between joins and leaves are kept.
 * Resolves the set it acted on (unchanged when the rebalance must be tried again).
 */
async function rebalanceOnJoinOrLeave(
  controller: Controller,
  options: StandingOptions,
  members: string | undefined,
): Promise<string | undefined> {
  const state = await controller.state();
  const live = liveNodes(state).join(',');
  if (state.topology.topology.version === 0 || live === members) return members;
  if ((await rebalancePlan(state, 'slots')).length === 0) return live;
  try {
    await controller.rebalance();
    return live;
  } catch (error) {
    if (controller.signal.aborted || hasReason(error, ErrorReasons.notLeader)) throw error;
    options.log?.warn({ err: asError(error) }, 'automatic rebalance failed; trying again later');
    return members;
  }
}

async function update(controller: Controller, request: OperationRequest): Promise<void> {
  const { succeeded } = await commitIf(
    controller.conn,
    `updating request ${request.id}`,
    controller.lease.fence,
    [
      putOp(
        controller.keys.request(request.id),
        JSON.stringify({ ...request, updatedAtMs: Date.now() }),
      ),
    ],
  );
  if (!succeeded) throw controller.notLeader();
}

export function resultOf(summary: RunSummary): OperationResult {
  return {
    version: summary.version,
    elapsedMs: summary.elapsedMs,
    bytes: summary.bytes,
    maxWritePauseMs: summary.maxWritePauseMs,
    recovered: summary.recovered,
    migrations: summary.committed.map((r) => ({
      id: r.id,
      slots: r.slots,
      from: r.from,
      to: r.to,
      committedVersion: r.committedVersion,
      bytes: r.bytes,
      keys: r.keys,
      writePauseMs: r.writePauseMs,
    })),
  };
}
