import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  abortableSleep,
  hasReason,
  slotOf,
} from '../core';
import type { Value__Output } from '../generated/shardsnap/v1/Value';
import { type CallOptions, type CallScope, runCall } from '../wire/call-options';
import type { ClientSecurity } from '../wire/security';
import { ShardsnapClient } from './client';
import type { ReadRequest, WriteRequest } from './requests';

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
    let redirects = 0;
    for (;;) {
      const address = this.owners.get(slot) ?? this.seed;
      try {
        return await run(this.client(address), scope.inner());
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
          await abortableSleep(this.retryDelayMs, scope.signal, 'retry');
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
