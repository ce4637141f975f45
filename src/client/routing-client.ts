import { ErrorCodes, type Mutation, ShardsnapError, isShardsnapError, slotOf } from '../core';
import type { Value__Output } from '../generated/shardsnap/v1/Value';
import type { ClientSecurity } from '../wire/security';
import { ShardsnapClient } from './client';

export interface RoutingOptions {
  /** Redirects followed for one call before it fails. */
  maxRedirects?: number;
  /** How long one call keeps retrying TRYAGAIN (a handoff in progress). */
  retryForMs?: number;
  retryDelayMs?: number;
  /** TLS and token of the calls, to every node the client is sent to. */
  security?: ClientSecurity;
}

export interface RoutingCounters {
  redirects: number;
  retries: number;
}

const MOVED = /\bMOVED (\d+) (\S+)/;

/** A slot's new owner, from a FAILED_PRECONDITION "MOVED <slot> <host:port>" answer. */
export function movedTo(error: unknown): { slot: number; address: string } | undefined {
  if (!isShardsnapError(error, ErrorCodes.failedPrecondition)) return undefined;
  const match = MOVED.exec(error.message);
  return match ? { slot: Number(match[1]), address: match[2] as string } : undefined;
}

/** An UNAVAILABLE "TRYAGAIN" answer: the slot is being handed over. */
export function isTryAgain(error: unknown): boolean {
  return isShardsnapError(error, ErrorCodes.unavailable) && /\bTRYAGAIN\b/.test(error.message);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A client of a set of shard nodes that routes each call by the slot of its first key,
 * learns owners from MOVED answers and retries TRYAGAIN, so that writes go on across a
 * slot migration. Calls should keep their keys in one slot (use hash tags), as in Redis
 * Cluster: a batch is routed, and applied, as a whole.
 */
export class RoutingClient {
  private readonly clients = new Map<string, ShardsnapClient>();
  private readonly owners = new Map<number, string>();
  readonly counters: RoutingCounters = { redirects: 0, retries: 0 };
  private readonly maxRedirects: number;
  private readonly retryForMs: number;
  private readonly retryDelayMs: number;
  private readonly security: ClientSecurity;

  constructor(
    private readonly seed: string,
    options: RoutingOptions = {},
  ) {
    this.maxRedirects = options.maxRedirects ?? 5;
    this.retryForMs = options.retryForMs ?? 10_000;
    this.retryDelayMs = options.retryDelayMs ?? 5;
    this.security = options.security ?? {};
  }

  /** The node a key's slot is routed to now. */
  ownerOf(key: Buffer): string {
    return this.owners.get(slotOf(key)) ?? this.seed;
  }

  async write(mutations: readonly Mutation[]): Promise<{ seq: number; address: string }> {
    const first = mutations[0];
    if (!first) throw new ShardsnapError(ErrorCodes.invalidArgument, 'nothing to write');
    return this.route(first.key, async (client) => ({
      seq: await client.write(mutations),
      address: client.address,
    }));
  }

  async read(keys: readonly Buffer[]): Promise<Value__Output[]> {
    const first = keys[0];
    if (!first) return [];
    return this.route(first, (client) => client.read(keys));
  }

  private async route<T>(key: Buffer, run: (client: ShardsnapClient) => Promise<T>): Promise<T> {
    const slot = slotOf(key);
    const giveUpAt = Date.now() + this.retryForMs;
    let redirects = 0;
    for (;;) {
      const address = this.owners.get(slot) ?? this.seed;
      try {
        return await run(this.client(address));
      } catch (error) {
        const moved = movedTo(error);
        if (moved && redirects < this.maxRedirects) {
          redirects++;
          this.counters.redirects++;
          this.owners.set(moved.slot, moved.address);
          continue;
        }
        if (isTryAgain(error) && Date.now() < giveUpAt) {
          this.counters.retries++;
          await sleep(this.retryDelayMs);
          continue;
        }
        throw error;
      }
    }
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
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
