import * as grpc from '@grpc/grpc-js';
import type { MigrationClient } from '../generated/shardsnap/v1/Migration';
import type { ShardClient } from '../generated/shardsnap/v1/Shard';
import type { SnapshotsClient } from '../generated/shardsnap/v1/Snapshots';
import { BULK_CHANNEL_OPTIONS, loadProto } from './proto';
import {
  type ClientSecurity,
  channelCredentials,
  clientOptions as securityOptions,
} from './security';
import { fromServiceError } from './status';

export interface ConnectionOptions {
  security?: ClientSecurity;
  channelOptions?: grpc.ChannelOptions;
}

/** Raw gRPC clients of one node, sharing one channel. */
export class Connection {
  readonly shard: ShardClient;
  readonly snapshots: SnapshotsClient;
  readonly migration: MigrationClient;
  /** TLS and token of the calls; bulk downloads over their own HTTP/2 session reuse them. */
  readonly security: ClientSecurity;

  constructor(
    readonly address: string,
    options: ConnectionOptions = {},
  ) {
    const proto = loadProto().shardsnap.v1;
    this.security = options.security ?? {};
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

  close(): void {
    this.shard.close();
    this.snapshots.close();
    this.migration.close();
  }
}

type Callback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;

/** Calls a callback-style unary method as a promise; errors become domain errors. */
export function call<Res>(
  method: string,
  invoke: (callback: Callback<Res>) => grpc.ClientUnaryCall,
  signal?: AbortSignal,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    const pending = invoke((error, response) => {
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(fromServiceError(error, method));
      else resolve(response as Res);
    });
    const onAbort = (): void => pending.cancel();
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
