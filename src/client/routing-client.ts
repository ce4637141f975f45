import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  abortableSleep,
  cancelled,
  hasReason,
  invalidArgument,
  slotOf,
  untilAborted,
} from '../core';
import type { Value__Output } from '../generated/shardsnap/v1/Value';
import { type CallOptions, type CallScope, runCall } from '../wire/call-options';
import type { ClientSecurity } from '../wire/security';
import { ShardsnapClient } from './client';
import type { EmptyRequest, ReadRequest, WriteRequest } from './requests';
import { SlotMap } from './slot-map';

export interface RoutingOptions {
  /** Redirects followed for one call before it fails. */
  maxRedirects?: number;
  /** How long one call keeps retrying TRYAGAIN (a handoff in progress). */
  retryForMs?: number;
  retryDelayMs?: number;
  /** TLS and token of the calls, to every node the client is sent to. */
  security?: ClientSecurity;
  /**
   * Route by the nodes' slot map (the Topology call), asked of a seed before the first
   * call and again, in the background, after a MOVED (default true). Without it, or
   * when no seed answers Topology, calls go to the first seed and follow MOVED answers.
   */
  topology?: boolean;
}

export interface RoutingCounters {
  redirects: number;
  retries: number;
  /** Slot maps received (Topology answers), the first one included. */
  topologyRefreshes: number;
}

/** How long one node may take to answer Topology before the next one is asked. */
const TOPOLOGY_TIMEOUT_MS = 2_000;

/** A slot's new owner, from a MOVED answer's ErrorInfo metadata (slot, address). */
export function movedTo(error: unknown): { slot: number; address: string } | undefined {
  if (!hasReason(error, ErrorReasons.moved)) return undefined;
  const slot = Number(error.metadata.slot);
  const address = error.metadata.address;
  return Number.isInteger(slot) && address ? { slot, address } : undefined;
}

/** A TRYAGAIN answer: the slot is being handed over (RetryInfo says when to retry). */
export function isTryAgain(error: unknown): boolean {
  return hasReason(error, ErrorReasons.tryAgain);
}

/**
 * A client of a set of shard nodes that routes each call by the slot of its first key,
 * after the nodes' slot map (see RoutingOptions.topology), learns owners from MOVED
 * answers and retries TRYAGAIN, so that writes go on across a slot migration. Calls should
 * keep their keys in one slot (use hash tags), as in Redis Cluster: a batch is routed, and
 * applied, as a whole.
 */
export class RoutingClient {
  private readonly clients = new Map<string, ShardsnapClient>();
  private readonly map = new SlotMap();
  readonly counters: RoutingCounters = { redirects: 0, retries: 0, topologyRefreshes: 0 };
  private readonly seeds: readonly string[];
  /** Where a slot goes that no map or MOVED placed: the seed that answered last. */
  private home: string;
  private readonly maxRedirects: number;
  private readonly retryForMs: number;
  private readonly retryDelayMs: number;
  private readonly security: ClientSecurity;
  private readonly useTopology: boolean;
  /** The map asked for before the first call; settles (never rejects) once asked. */
  private firstMap: Promise<void> | undefined;
  /** The refresh in flight, shared by whoever wants one meanwhile. */
  private refreshing: Promise<number> | undefined;
  /** Fires at close(): ends the refresh in flight and prevents new ones. */
  private readonly closing = new AbortController();

  constructor(seeds: string | readonly string[], options: RoutingOptions = {}) {
    this.seeds = typeof seeds === 'string' ? [seeds] : [...new Set(seeds)];
    const first = this.seeds[0];
    if (first === undefined) throw invalidArgument('a routing client needs a seed address');
    this.home = first;
    this.maxRedirects = options.maxRedirects ?? 5;
    this.retryForMs = options.retryForMs ?? 10_000;
    this.retryDelayMs = options.retryDelayMs ?? 5;
    this.security = options.security ?? {};
    this.useTopology = options.topology ?? true;
  }

  /** Of the slot map in use: -1 before any, 0 when it comes from nodes outside a cluster. */
  get topologyVersion(): number {
    return this.map.version;
  }

  /** The node a key's slot is routed to now. */
  ownerOf(key: Buffer): string {
    return this.map.addressOf(slotOf(key)) ?? this.home;
  }

  /**
   * Asks the seeds (one after the other) for the slot map now, joining a refresh already
   * in flight; resolves with the version in use after it. Rejects with the last node's
   * error when no seed answered.
   */
  refreshTopology(_request: EmptyRequest = {}, options: CallOptions = {}): Promise<number> {
    return runCall('refreshTopology', options, (scope) =>
      untilAborted(this.refresh([]), scope.signal),
    );
  }

  /** `deadlineMs` and `signal` bound the whole call, redirects and retries included. */
  async write(
    request: WriteRequest,
    options: CallOptions = {},
  ): Promise<{ seq: number; address: string }> {
    const first = request.mutations[0];
    if (!first) throw new ShardsnapError(ErrorCodes.invalidArgument, 'nothing to write');
    return this.route('Write', first.key, options, async (client, attempt) => ({
      seq: await client.write(request, attempt),
      address: client.address,
    }));
  }

  async read(request: ReadRequest, options: CallOptions = {}): Promise<Value__Output[]> {
    const first = request.keys[0];
    if (!first) return [];
    return this.route('Read', first, options, (client, attempt) => client.read(request, attempt));
  }

  private route<T>(
    method: string,
    key: Buffer,
    options: CallOptions,
    run: (client: ShardsnapClient, attempt: CallOptions) => Promise<T>,
  ): Promise<T> {
    return runCall(method, options, (scope) => this.attempts(key, scope, run));
  }

  private async attempts<T>(
    key: Buffer,
    scope: CallScope,
    run: (client: ShardsnapClient, attempt: CallOptions) => Promise<T>,
  ): Promise<T> {
    const slot = slotOf(key);
    const giveUpAt = Date.now() + this.retryForMs;
    if (this.useTopology) {
      this.firstMap ??= this.refresh([]).then(
        () => undefined,
        () => undefined,
      );
      await untilAborted(this.firstMap, scope.signal);
    }
    let redirects = 0;
    for (;;) {
      const address = this.map.addressOf(slot) ?? this.home;
      try {
        return await run(this.client(address), scope.inner());
      } catch (error) {
        const moved = movedTo(error);
        if (moved && redirects < this.maxRedirects) {
          redirects++;
          this.counters.redirects++;
          this.map.learn(moved.slot, moved.address);
          // The call goes on at once; the map catches up behind it, first from the node
          // that knew the slot had moved.
          if (this.useTopology) void this.refresh([address]).catch(() => undefined);
          continue;
        }
        if (isTryAgain(error) && Date.now() < giveUpAt) {
          this.counters.retries++;
          await abortableSleep(this.retryDelayMs, scope.signal, 'retry');
          continue;
        }
        throw error;
      }
    }
  }

  /** A refresh asking `first`, then the seeds; coalesced: at most one is in flight. */
  private refresh(first: readonly string[]): Promise<number> {
    this.refreshing ??= this.fetchMap([...first, ...this.seeds]).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The first of `addresses` that answers Topology gives the map; the others are not asked. */
  private async fetchMap(addresses: readonly string[]): Promise<number> {
    let failure: unknown = cancelled('the routing client is closed');
    const { signal } = this.closing;
    for (const address of new Set(addresses)) {
      if (signal.aborted) break;
      try {
        const answer = await this.client(address).topology(
          {},
          { signal, deadlineMs: TOPOLOGY_TIMEOUT_MS },
        );
        this.counters.topologyRefreshes++;
        if (this.map.apply(answer, address) && this.seeds.includes(address)) this.home = address;
        return this.map.version;
      } catch (error) {
        // Unreachable, or a node without Topology (UNIMPLEMENTED): the next one may know.
        failure = error;
      }
    }
    throw failure;
  }

  private client(address: string): ShardsnapClient {
    let client = this.clients.get(address);
    if (!client) {
      client = new ShardsnapClient(address, { security: this.security });
      this.clients.set(address, client);
    }
    return client;
  }

  close(): void {
    this.closing.abort();
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
