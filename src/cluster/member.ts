import type { Watcher } from 'etcd3';
import type { Logger } from 'pino';
import { SLOT_COUNT, type SlotRange, asError, formatSlotRanges } from '../core';
import type { Ownership } from '../ownership';
import { type EtcdConnection, connectEtcd } from './etcd';
import { ClusterKeys } from './keys';
import { type NodeInfo, listNodes } from './node-info';
import { NodeRegistration } from './node-registration';
import { type Topology, emptyTopology, ownerTable, rangesOfNode } from './topology';
import { readTopology } from './topology-store';

/** Re-read the topology this often even without a watch event (a missed event heals). */
const POLL_MS = 5_000;

export interface MemberOptions {
  endpoints: string;
  cluster: string;
  node: NodeInfo;
  ownership: Ownership;
  logger: Logger;
  leaseTtlSeconds: number;
}

/** A slot range with the node the topology assigns it to and that node's address. */
export interface AssignedRange {
  start: number;
  end: number;
  nodeId: string;
  address: string;
}

/**
 * A node's membership of a cluster: its registration under a lease, and the topology it
 * follows. The topology decides where MOVED sends clients for slots this node does not
 * own; the node's own slots change by handoffs only (the controller commits a handoff
 * to the topology once it is done), except that a blank node (one that never owned or
 * gave away a slot) takes what the topology gives it (`cluster init`, or a node that
 * lost its data dir).
 */
export class ClusterMember {
  private readonly keys: ClusterKeys;
  private readonly conn: EtcdConnection;
  private readonly registration: NodeRegistration;
  private topology: Topology;
  private addresses = new Map<string, string>();
  private watcher: Watcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Slots where this node and the topology disagree, as last seen (logged once per version). */
  private disagreement: { ownedNotAssigned: SlotRange[]; assignedNotOwned: SlotRange[] } = {
    ownedNotAssigned: [],
    assignedNotOwned: [],
  };

  constructor(private readonly options: MemberOptions) {
    this.keys = new ClusterKeys(options.cluster);
    this.conn = connectEtcd(options.endpoints);
    this.topology = emptyTopology(options.cluster);
    const log = options.logger;
    this.registration = new NodeRegistration(
      this.conn,
      this.keys,
      options.node,
      options.leaseTtlSeconds,
      {
        onRegistered: (lease) =>
          log.info({ cluster: options.cluster, lease }, 'registered in the cluster'),
        onLost: (err) =>
          log.warn(
            { err, cluster: options.cluster },
            'cluster registration lost; registering again',
          ),
        onRemoved: () =>
          log.warn(
            { cluster: options.cluster },
            'this node was removed from the cluster (remove-node); it stays out',
          ),
      },
    );
  }

  get cluster(): string {
    return this.options.cluster;
  }

  get nodeId(): string {
    return this.options.node.id;
  }

  /** remove-node deregistered this node: it stays out of the cluster. */
  get removed(): boolean {
    return this.registration.removed;
  }

  get registered(): boolean {
    return this.registration.registered;
  }

  get version(): number {
    return this.topology.version;
  }

  /** Registers and starts following the topology; etcd being down is retried, never fatal. */
  start(): void {
    this.registration.start();
    this.timer = setInterval(() => this.refresh(), POLL_MS);
    this.timer.unref();
    void this.watch();
    this.refresh();
  }

  /** Watches the topology and the nodes; a watch that fails is made again (polling covers the gap). */
  private async watch(): Promise<void> {
    try {
      const watcher = await this.conn.client.watch().prefix(this.keys.prefix).create();
      if (this.closed) {
        await watcher.cancel();
        return;
      }
      this.watcher = watcher;
      const { topology, nodes } = this.keys;
      // Migration records and requests change often and tell a node nothing.
      const poke = (kv: { key: Buffer }): void => {
        const key = kv.key.toString();
        if (key === topology || key.startsWith(nodes)) this.refresh();
      };
      watcher
        .on('put', poke)
        .on('delete', poke)
        .on('connected', () => this.refresh());
      watcher.on('error', (err) => {
        this.options.logger.warn({ err }, 'the topology watch failed; watching again');
        void watcher.cancel().catch(() => undefined);
        this.rewatchLater();
      });
    } catch (error) {
      this.options.logger.warn({ err: error }, 'cannot watch the topology yet; polling it');
      this.rewatchLater();
    }
  }

  private rewatchLater(): void {
    if (this.closed) return;
    setTimeout(() => void this.watch(), POLL_MS).unref();
  }

  /** Reads the topology and nodes again (coalesced: one read in flight, one queued). */
  refresh(): void {
    if (this.closed) return;
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = this.readAndApply()
      .catch((error: unknown) =>
        this.options.logger.warn({ err: asError(error) }, 'cannot read the cluster topology'),
      )
      .finally(() => {
        this.refreshing = undefined;
        if (this.again) {
          this.again = false;
          this.refresh();
        }
      });
  }

  private async readAndApply(): Promise<void> {
    const [{ topology }, nodes] = await Promise.all([
      readTopology(this.conn, this.keys),
      listNodes(this.conn, this.keys),
    ]);
    // Addresses of nodes whose lease lapsed are kept: the last known is the best guess.
    for (const [id, info] of nodes) this.addresses.set(id, info.address);
    if (topology.version < this.topology.version) return;
    const isNew = topology.version > this.topology.version;
    this.topology = topology;
    await this.apply(topology, isNew);
  }

  private async apply(topology: Topology, isNew: boolean): Promise<void> {
    const { ownership, logger } = this.options;
    const me = this.nodeId;
    const mine = rangesOfNode(topology, me);
    if (mine.length > 0 && (await ownership.adoptIfBlank(mine))) {
      logger.info(
        { slots: formatSlotRanges(mine), version: topology.version },
        'took the slots the topology assigns to this node',
      );
    }
    const table = ownerTable(topology);
    const addresses = new Array<string | undefined>(SLOT_COUNT);
    for (let slot = 0; slot < SLOT_COUNT; slot++) {
      const node = table[slot];
      addresses[slot] = node === undefined || node === me ? undefined : this.addresses.get(node);
    }
    await ownership.followTopology(addresses);
    this.disagreement = disagreement(topology, me, ownership);
    const { ownedNotAssigned, assignedNotOwned } = this.disagreement;
    if (isNew && (ownedNotAssigned.length > 0 || assignedNotOwned.length > 0)) {
      // Expected for a moment after a handoff, until the controller commits it.
      logger.info(
        {
          version: topology.version,
          ownedNotAssigned: formatSlotRanges(ownedNotAssigned),
          assignedNotOwned: formatSlotRanges(assignedNotOwned),
        },
        'this node and the topology disagree',
      );
    }
  }

  /** The topology as this node knows it, each range with its owner's address. */
  view(): { version: number; cluster: string; slots: AssignedRange[] } {
    return {
      version: this.topology.version,
      cluster: this.cluster,
      slots: this.topology.slots.map((a) => ({
        start: a.start,
        end: a.end,
        nodeId: a.node,
        address:
          a.node === this.nodeId ? this.options.node.address : (this.addresses.get(a.node) ?? ''),
      })),
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.watcher?.cancel().catch(() => undefined);
    await this.registration.close();
    await this.refreshing;
    this.conn.close();
  }
}

function disagreement(topology: Topology, me: string, ownership: Ownership) {
  const table = ownerTable(topology);
  const owned = new Uint8Array(SLOT_COUNT);
  for (const r of ownership.owned()) owned.fill(1, r.start, r.end + 1);
  const ownedNotAssigned: SlotRange[] = [];
  const assignedNotOwned: SlotRange[] = [];
  const add = (list: SlotRange[], slot: number): void => {
    const last = list[list.length - 1];
    if (last && last.end === slot - 1) last.end = slot;
    else list.push({ start: slot, end: slot });
  };
  for (let slot = 0; slot < SLOT_COUNT; slot++) {
    const assigned = table[slot] === me;
    if (owned[slot] === 1 && !assigned && topology.version > 0) add(ownedNotAssigned, slot);
    if (owned[slot] !== 1 && assigned) add(assignedNotOwned, slot);
  }
  return { ownedNotAssigned, assignedNotOwned };
}
