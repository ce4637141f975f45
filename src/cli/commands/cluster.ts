import { type Command, Option } from 'commander';
// The topology helpers are light (no etcd client): loaded with the command line.
import { slotCounts } from '../../cluster/topology';
import { ErrorReasons, type SlotRange, formatSlotRanges, hasReason } from '../../core';
import type {
  ClusterKeys,
  ClusterState,
  EtcdConnection,
  Controller,
  ControllerEvent,
  ControllerOptions,
  OperationResult,
  RequestedOperation,
  RunSummary,
  SpreadBy,
} from '../../cluster';
import { type ClientFlags, action, clientSecurity, globals, positiveInt, slots } from '../common';
import { emit, formatBytes, mibPerSecond } from '../output';

export const ETCD_ENV = 'SHARDSNAP_ETCD';
export const CLUSTER_ENV = 'SHARDSNAP_CLUSTER';

interface ClusterFlags {
  etcd: string;
  cluster: string;
}

interface ActingFlags extends ClusterFlags, ClientFlags {
  waitLeader: number;
  leaseTtl: number;
  maxPause?: number;
  parallel: number;
}

/** The cluster modules are loaded by the commands that use them (etcd's client costs ~0.1 s). */
const clusterModule = () => import('../../cluster');

/**
 * A connection to the cluster's etcd; with `--connect-timeout` it first waits that long
 * for etcd to answer (it may be starting, like a node).
 */
async function openEtcd(flags: ClusterFlags & ClientFlags): Promise<{
  conn: EtcdConnection;
  keys: ClusterKeys;
}> {
  const { ClusterKeys, connectEtcd, readTopology } = await clusterModule();
  const keys = new ClusterKeys(flags.cluster);
  const conn = connectEtcd(flags.etcd);
  const giveUpAt = Date.now() + (flags.connectTimeout ?? 0);
  for (;;) {
    try {
      await readTopology(conn, keys);
      return { conn, keys };
    } catch (error) {
      if (Date.now() >= giveUpAt || !hasReason(error, ErrorReasons.etcdUnavailable)) {
        conn.close();
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function flagsOf(command: Command): ClusterFlags & ClientFlags {
  return command.optsWithGlobals<ClusterFlags & ClientFlags>();
}

/**
 * `action` for the commands that talk to etcd: once the command is done, the process
 * ends even if the etcd client left a retry timer behind (after etcd went away, one kept
 * a finished command alive for seconds).
 */
function clusterAction<A extends unknown[]>(
  body: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return action(async (...args: A) => {
    try {
      await body(...args);
    } finally {
      setTimeout(() => process.exit(), EXIT_GRACE_MS).unref();
    }
  });
}

const EXIT_GRACE_MS = 500;

/** Options of the commands that act (take the leader lease). */
function acting(command: Command): Command {
  return command
    .option(
      '--wait-leader <ms>',
      'wait this long for another controller to finish (default: refuse at once)',
      positiveInt,
      0,
    )
    .option('--lease-ttl <seconds>', 'leader lease TTL', positiveInt, 5)
    .option('--max-pause <ms>', 'longest write pause a handoff may cause', positiveInt)
    .option('--parallel <n>', 'migrations run at once (each to its own node)', positiveInt, 2);
}

async function controllerOptions(
  flags: ActingFlags,
  purpose: string,
  json: boolean,
): Promise<ControllerOptions> {
  return {
    endpoints: flags.etcd,
    cluster: flags.cluster,
    purpose,
    waitLeaderMs: flags.waitLeader,
    leaseTtlSeconds: Math.max(1, flags.leaseTtl),
    security: await clientSecurity(flags),
    parallel: Math.max(1, flags.parallel),
    ...(flags.maxPause ? { maxPauseMs: flags.maxPause } : {}),
    ...(process.env.SHARDSNAP_CONTROLLER_EXIT_AT
      ? { exitAt: process.env.SHARDSNAP_CONTROLLER_EXIT_AT }
      : {}),
    onEvent: json ? undefined : printEvent,
  };
}

/** One line on stderr per step of the controller. */
function printEvent(event: ControllerEvent): void {
  const line = (text: string): boolean => process.stderr.write(`${text}\n`);
  switch (event.kind) {
    case 'leader':
      line(`controller ${event.id} holds the leader lease`);
      break;
    case 'recovering':
      line(`settling migration ${event.record.id} left by controller ${event.record.controller}`);
      break;
    case 'started':
      line(
        `migration ${event.record.id}: slots ${formatSlotRanges(event.record.slots)} ${event.record.from} -> ${event.record.to}`,
      );
      break;
    case 'committed':
      line(
        `migration ${event.record.id} committed: topology version ${event.version}` +
          (event.record.bytes !== undefined
            ? ` (${formatBytes(event.record.bytes)}, write pause ${event.record.writePauseMs ?? 0} ms)`
            : ''),
      );
      break;
    case 'aborted':
      line(`migration ${event.record.id} rolled back${event.why ? `: ${event.why}` : ''}`);
      break;
    case 'progress':
      break;
  }
}

/**
 * Runs an operation as the controller; when a long-running controller (`shardsnap
 * controller`) holds the lead, queues it there instead and waits for its result.
 */
async function runOperation(
  flags: ActingFlags,
  operation: RequestedOperation,
  json: boolean,
  direct: (controller: Controller) => Promise<RunSummary>,
): Promise<OperationResult & { request?: string }> {
  const cluster = await clusterModule();
  let controller: Controller;
  try {
    controller = await cluster.Controller.lead(await controllerOptions(flags, operation.op, json));
  } catch (error) {
    if (!hasReason(error, ErrorReasons.controllerBusy) || error.metadata.purpose !== 'controller') {
      throw error;
    }
    return queue(flags, operation, json, error.metadata.holder ?? '');
  }
  const stop = (): void => {
    void controller.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return cluster.resultOf(await direct(controller));
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await controller.close();
  }
}

async function queue(
  flags: ActingFlags,
  operation: RequestedOperation,
  json: boolean,
  holder: string,
): Promise<OperationResult & { request: string }> {
  const { awaitRequest, submitRequest } = await clusterModule();
  const { conn, keys } = await openEtcd(flags);
  const stopWaiting = new AbortController();
  const onSignal = (): void => stopWaiting.abort();
  process.once('SIGINT', onSignal);
  try {
    const request = await submitRequest(conn, keys, operation);
    if (!json) process.stderr.write(`queued as request ${request.id} for controller ${holder}\n`);
    const result = await awaitRequest(conn, keys, request.id, {
      timeoutMs: REQUEST_WAIT_MS,
      signal: stopWaiting.signal,
      onState: (r) => {
        if (!json && r.state === 'running')
          process.stderr.write(`controller ${holder} runs request ${r.id}\n`);
      },
    });
    return { ...result, request: request.id };
  } finally {
    process.off('SIGINT', onSignal);
    conn.close();
  }
}

/** How long a queued operation is waited for (Ctrl-C stops waiting; the request stays queued). */
const REQUEST_WAIT_MS = 24 * 60 * 60 * 1000;

function describeRun(what: string, result: OperationResult): string {
  const seconds = result.elapsedMs / 1000;
  const parts = [
    `${what}: ${result.migrations.length} migration(s) committed, topology version ${result.version}`,
    `${formatBytes(result.bytes)} in ${seconds.toFixed(2)} s (${mibPerSecond(result.bytes, result.elapsedMs).toFixed(1)} MiB/s)`,
    `longest write pause ${result.maxWritePauseMs} ms`,
  ];
  const { committed, aborted } = result.recovered;
  if (committed + aborted > 0) {
    parts.push(
      `settled ${committed + aborted} left by an earlier controller (${committed} committed, ${aborted} rolled back)`,
    );
  }
  return parts.join(', ');
}

function runJson(result: OperationResult & { request?: string }): object {
  return {
    ok: true,
    ...result,
    mibPerSecond: mibPerSecond(result.bytes, result.elapsedMs),
    migrations: result.migrations.map((r) => ({ ...r, slots: formatSlotRanges(r.slots) })),
  };
}

function statusJson(state: ClusterState): object {
  const { topology } = state.topology;
  const counts = slotCounts(topology);
  const ids = new Set([...state.nodes.keys(), ...counts.keys()]);
  return {
    ok: true,
    cluster: topology.cluster,
    version: topology.version,
    nodes: [...ids].sort().map((id) => {
      const info = state.nodes.get(id);
      return {
        id,
        live: info !== undefined,
        removed: state.removed.has(id),
        address: info?.address ?? '',
        backend: info?.backend ?? '',
        slots: formatSlotRanges(topology.slots.filter((a) => a.node === id)),
        slotCount: counts.get(id) ?? 0,
      };
    }),
    slots: topology.slots.map((a) => ({ start: a.start, end: a.end, node: a.node })),
    migrations: state.migrations
      .filter((r) => r.state === 'running')
      .map((r) => ({
        id: r.id,
        slots: formatSlotRanges(r.slots),
        from: r.from,
        to: r.to,
        baseVersion: r.baseVersion,
        controller: r.controller,
        startedAtMs: r.createdAtMs,
      })),
  };
}

function statusLines(state: ClusterState, leader: string | undefined): string[] {
  const json = statusJson(state) as ReturnType<typeof statusJson> & {
    version: number;
    nodes: Array<{
      id: string;
      live: boolean;
      removed: boolean;
      address: string;
      slots: string;
      slotCount: number;
    }>;
    migrations: Array<{ id: string; slots: string; from: string; to: string }>;
  };
  const lines = [
    `cluster ${state.topology.topology.cluster}: topology version ${json.version}` +
      (json.version === 0 ? ' (not initialized: run `cluster init --node ID`)' : '') +
      (leader ? `, controller ${leader} acting` : ''),
  ];
  for (const node of json.nodes) {
    const health = node.removed ? 'removed' : node.live ? 'live' : 'DOWN';
    lines.push(
      `  ${node.id.padEnd(20)} ${health.padEnd(7)} ${(node.address || '-').padEnd(21)} ${String(node.slotCount).padStart(5)} slots ${node.slots}`,
    );
  }
  for (const m of json.migrations) {
    lines.push(`  migration ${m.id}: slots ${m.slots} ${m.from} -> ${m.to} (in progress)`);
  }
  return lines;
}

export function registerCluster(program: Command): void {
  const cluster = program
    .command('cluster')
    .description(
      'the cluster as a whole: its topology in etcd and the moves of slots between nodes',
    )
    .addOption(
      new Option('--etcd <endpoints>', 'etcd endpoints (host:port[,host:port])')
        .env(ETCD_ENV)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--cluster <name>', 'cluster name').env(CLUSTER_ENV).makeOptionMandatory(),
    );

  cluster
    .command('init')
    .description('write the first topology: every slot to one registered node')
    .requiredOption('--node <id>', 'the node that gets every slot')
    .action(
      clusterAction(async (options: { node: string }, command: Command) => {
        const flags = flagsOf(command);
        const { initCluster } = await clusterModule();
        const { conn, keys } = await openEtcd(flags);
        try {
          const topology = await initCluster(conn, keys, options.node, {
            waitMs: flags.connectTimeout ?? 0,
            security: await clientSecurity(flags),
          });
          emit(
            globals(command),
            { ok: true, cluster: flags.cluster, version: topology.version, node: options.node },
            () =>
              `cluster ${flags.cluster}: every slot assigned to ${options.node} (topology version ${topology.version})`,
          );
        } finally {
          conn.close();
        }
      }),
    );

  cluster
    .command('status')
    .description('nodes, slots, topology version and migrations in progress')
    .action(
      clusterAction(async (_options: object, command: Command) => {
        const flags = flagsOf(command);
        const { readClusterState, currentLeader } = await clusterModule();
        const { conn, keys } = await openEtcd(flags);
        try {
          const [state, leader] = await Promise.all([
            readClusterState(conn, keys),
            currentLeader(conn, keys),
          ]);
          emit(
            globals(command),
            {
              ...statusJson(state),
              leader: leader ? { id: leader.id, purpose: leader.purpose } : null,
            },
            () => statusLines(state, leader ? `${leader.id} (${leader.purpose})` : undefined),
          );
        } finally {
          conn.close();
        }
      }),
    );

  acting(
    cluster
      .command('move')
      .description(
        'move slots to a node (planned on the topology read first: refused if it changed)',
      )
      .requiredOption('--slots <ranges>', 'slot ranges (A-B[,C-D])', slots)
      .requiredOption('--to <node>', 'the node that takes them')
      .option('--if-version <n>', 'refuse unless the topology is at this version', positiveInt),
  ).action(
    clusterAction(
      async (options: { slots: SlotRange[]; to: string; ifVersion?: number }, command: Command) => {
        const flags = flagsOf(command) as unknown as ActingFlags;
        const json = globals(command).json ?? false;
        const { readTopology, topologyChanged } = await clusterModule();
        // The plan is the topology as it is now, before waiting for the lead.
        const { conn, keys } = await openEtcd(flags);
        const plannedOn = await readTopology(conn, keys).finally(() => conn.close());
        if (options.ifVersion !== undefined && plannedOn.topology.version !== options.ifVersion) {
          throw topologyChanged(options.ifVersion, plannedOn.topology.version, false);
        }
        const planned = { revision: plannedOn.revision, version: plannedOn.topology.version };
        const summary = await runOperation(
          flags,
          {
            op: 'move',
            slots: options.slots,
            to: options.to,
            plannedRevision: planned.revision,
            plannedVersion: planned.version,
          },
          json,
          (controller) => controller.move(options.slots, options.to, planned),
        );
        emit(globals(command), runJson(summary), () =>
          describeRun(`moved slots ${formatSlotRanges(options.slots)} to ${options.to}`, summary),
        );
      },
    ),
  );

  acting(
    cluster
      .command('rebalance')
      .description('spread the slots evenly over the live nodes')
      .addOption(
        new Option('--by <what>', 'even out slot counts, or bytes (memory nodes)')
          .choices(['slots', 'bytes'])
          .default('slots'),
      )
      .option('--dry-run', 'print the moves without making them'),
  ).action(
    clusterAction(async (options: { dryRun?: boolean; by: SpreadBy }, command: Command) => {
      const flags = flagsOf(command) as unknown as ActingFlags;
      const json = globals(command).json ?? false;
      if (options.dryRun) {
        // A plan only reads: it needs no lead, and works while a controller acts.
        const { readClusterState, rebalancePlan } = await clusterModule();
        const { conn, keys } = await openEtcd(flags);
        const state = await readClusterState(conn, keys).finally(() => conn.close());
        const steps = await rebalancePlan(state, options.by, await clientSecurity(flags));
        emit(
          globals(command),
          {
            ok: true,
            dryRun: true,
            version: state.topology.topology.version,
            moves: steps.map((s) => ({ slots: formatSlotRanges(s.slots), from: s.from, to: s.to })),
          },
          () =>
            steps.length === 0
              ? 'the slots are spread evenly already'
              : steps.map(
                  (s) => `would move slots ${formatSlotRanges(s.slots)} ${s.from} -> ${s.to}`,
                ),
        );
        return;
      }
      const summary = await runOperation(
        flags,
        { op: 'rebalance', by: options.by },
        json,
        (controller) => controller.rebalance({ by: options.by }),
      );
      emit(globals(command), runJson(summary), () => describeRun('rebalanced', summary));
    }),
  );

  acting(
    cluster
      .command('remove-node')
      .description('move every slot off a node, then deregister it')
      .argument('<node>', 'the node id'),
  ).action(
    clusterAction(async (node: string, _options: object, command: Command) => {
      const flags = flagsOf(command) as unknown as ActingFlags;
      const json = globals(command).json ?? false;
      const summary = await runOperation(flags, { op: 'remove-node', node }, json, (controller) =>
        controller.removeNode(node),
      );
      emit(globals(command), { ...runJson(summary), removed: node }, () =>
        describeRun(`drained and removed ${node}`, summary),
      );
    }),
  );
}
