import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { internal } from '../core';
import type { ProtoGrpcType } from '../generated/shardsnap';

const PROTO_RELATIVE = join('proto', 'shardsnap', 'v1', 'shardsnap.proto');

/** The .proto ships beside the code, whether run from src/ (tsx) or dist/src/ (build). */
export function protoPath(): string {
  for (const up of ['../..', '../../..']) {
    const candidate = join(__dirname, up, PROTO_RELATIVE);
    if (existsSync(candidate)) return candidate;
  }
  throw internal(`cannot find ${PROTO_RELATIVE} next to ${__dirname}`);
}

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
  bytes: Buffer,
};

let definition: protoLoader.PackageDefinition | undefined;
let cached: ProtoGrpcType | undefined;

/**
 * The loaded .proto as proto-loader describes it, with camelCase names: what the node's
 * services and clients use. Reflection serves the files as written (src/server/introspection.ts).
 */
export function packageDefinition(): protoLoader.PackageDefinition {
  definition ??= protoLoader.loadSync(protoPath(), LOADER_OPTIONS);
  return definition;
}

export function loadProto(): ProtoGrpcType {
  cached ??= grpc.loadPackageDefinition(packageDefinition()) as unknown as ProtoGrpcType;
  return cached;
}

/** Channel options for bulk transfer: large HTTP/2 windows and messages. */
export const BULK_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  'grpc-node.flow_control_window': 64 << 20,
  'grpc.max_send_message_length': 64 << 20,
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 20_000,
};

export const SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_send_message_length': 64 << 20,
  'grpc.max_receive_message_length': 64 << 20,
  'grpc-node.max_session_memory': 512,
  'grpc.keepalive_permit_without_calls': 1,
};
