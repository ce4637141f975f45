import * as grpc from '@grpc/grpc-js';
import { abortError, unavailable } from '../core/errors';
import type { MigrationClient } from '../generated/shardsnap/v1/Migration';
import type { ShardClient } from '../generated/shardsnap/v1/Shard';
import type { SnapshotsClient } from '../generated/shardsnap/v1/Snapshots';
import type { CallOptions } from './call-options';
import { BULK_CHANNEL_OPTIONS, loadProto } from './proto';
import {
  type ClientSecurity,
  channelCredentials,
  clientOptions as securityOptions,
} from './security';
import { type CallTarget, type UnaryCallback, unary } from './unary';

export interface ConnectionOptions {
  security?: ClientSecurity;
  channelOptions?: grpc.ChannelOptions;
  /**
   * How long a call waits for the connection to the node before it fails with
   * UNAVAILABLE naming the address. Without it a call fails at once when the node cannot
   * be reached (gRPC's fail-fast); with it, calls ride out a node that is (re)starting.
   */
  connectTimeoutMs?: number;
}

/** What `ready()` waits when neither its deadline nor `connectTimeoutMs` says. */
export const DEFAULT_READY_MS = 10_000;

/** Raw gRPC clients of one node, sharing one channel. */
export class Connection implements CallTarget {
  readonly shard: ShardClient;
  readonly snapshots: SnapshotsClient;
  readonly migration: MigrationClient;
  /** TLS and token of the calls; bulk downloads over their own HTTP/2 session reuse them. */
  readonly security: ClientSecurity;
  readonly connectTimeoutMs: number | undefined;

  constructor(
    readonly address: string,
    options: ConnectionOptions = {},
  ) {
    const proto = loadProto().shardsnap.v1;
    this.security = options.security ?? {};
    this.connectTimeoutMs = options.connectTimeoutMs;
    const credentials = channelCredentials(this.security);
    const clientOptions = {
      ...(options.channelOptions ?? BULK_CHANNEL_OPTIONS),
      ...securityOptions(this.security),
    };
    this.shard = new proto.Shard(address, credentials, clientOptions);
    this.snapshots = new proto.Snapshots(address, credentials, {
      ...clientOptions,
      channelOverride: this.shard.getChannel(),
    });
    this.migration = new proto.Migration(address, credentials, {
      ...clientOptions,
      channelOverride: this.shard.getChannel(),
    });
  }

  /**
   * Waits until the channel to the node is connected: at most `deadlineMs` (else
   * `connectTimeoutMs`, else DEFAULT_READY_MS), then fails with UNAVAILABLE naming the address.
   */
  ready(options: CallOptions = {}): Promise<void> {
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
    return this.connect(
      options.deadlineMs ?? this.connectTimeoutMs ?? DEFAULT_READY_MS,
      options.signal,
    );
  }

  /** Before each call: nothing to wait for without `connectTimeoutMs`, or when connected. */
  whenReady(signal: AbortSignal): Promise<void> {
    if (this.connectTimeoutMs === undefined) return Promise.resolve();
    const state = this.shard.getChannel().getConnectivityState(true);
    if (state === grpc.connectivityState.READY) return Promise.resolve();
    return this.connect(this.connectTimeoutMs, signal);
  }

  private connect(timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => reject(abortError(signal as AbortSignal));
      signal?.addEventListener('abort', onAbort, { once: true });
      this.shard.waitForReady(Date.now() + timeoutMs, (error) => {
        signal?.removeEventListener('abort', onAbort);
        if (!error) resolve();
        else
          reject(
            unavailable(`cannot reach the node at ${this.address} within ${timeoutMs} ms`, {
              cause: error,
              metadata: { address: this.address },
            }),
          );
      });
    });
  }

  close(): void {
    this.shard.close();
    this.snapshots.close();
    this.migration.close();
  }
}

/**
 * A callback-style unary method as a promise, for node-to-node calls that build their own
 * gRPC call options; clients use `unary` with CallOptions.
 */
export function call<Res>(
  method: string,
  invoke: (callback: UnaryCallback<Res>) => grpc.ClientUnaryCall,
  signal?: AbortSignal,
): Promise<Res> {
  return unary<Res>(undefined, method, (_options, callback) => invoke(callback), { signal });
}
