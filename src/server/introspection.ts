import { readdirSync } from 'node:fs';
import { dirname, join, sep } from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import { protoPath } from '../wire/proto';
import { buildDescriptorSet, type DescriptorSet, type ProtoSource } from './descriptor-set';
import { addReflection } from './reflection-service';

/** Every service a node serves besides the standard ones; health answers for each. */
const SERVICES = ['shardsnap.v1.Shard', 'shardsnap.v1.Snapshots', 'shardsnap.v1.Migration'];

/** The root the project's .proto files are named from (`shardsnap/v1/shardsnap.proto`). */
function protoRoot(): string {
  return join(dirname(protoPath()), '..', '..');
}

/** Where @grpc/reflection ships the reflection protos, under their canonical names. */
function reflectionRoot(): string {
  return join(dirname(require.resolve('@grpc/reflection')), '..', 'proto');
}

const REFLECTION_V1 = 'grpc/reflection/v1/reflection.proto';
const REFLECTION_V1ALPHA = 'grpc/reflection/v1alpha/reflection.proto';

let descriptors: DescriptorSet | undefined;

/**
 * Every .proto of the project (the error details too, so a client can decode them), plus
 * health and reflection themselves: tools list them and resolve them like any service.
 */
function descriptorSet(): DescriptorSet {
  if (descriptors) return descriptors;
  const root = protoRoot();
  const own: ProtoSource[] = readdirSync(root, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.proto'))
    .sort()
    .map((file) => ({ name: file.split(sep).join('/'), path: join(root, file) }));
  descriptors = buildDescriptorSet(
    [
      ...own,
      // The health package ships its file as health/v1/health.proto; protoc users know it
      // by the path of its package.
      { name: 'grpc/health/v1/health.proto', path: healthProtoPath },
      { name: REFLECTION_V1, path: join(reflectionRoot(), REFLECTION_V1) },
      { name: REFLECTION_V1ALPHA, path: join(reflectionRoot(), REFLECTION_V1ALPHA) },
    ],
    [root],
  );
  return descriptors;
}

/**
 * The standard gRPC health service (overall and per service) and server reflection, so
 * generic tools (grpcurl, grpc_health_probe, load balancers) can talk to a node.
 * Reflection serves the .proto files as written (snake_case fields); the node's own
 * services decode the same bytes with camelCase names.
 * Returns a function that marks the node NOT_SERVING while it shuts down.
 */
export function addIntrospection(server: grpc.Server): { notServing: () => void } {
  const names = ['', ...SERVICES];
  const health = new HealthImplementation(
    Object.fromEntries(names.map((name) => [name, 'SERVING' as const])),
  );
  health.addToServer(server);
  addReflection(server, descriptorSet(), {
    v1: join(reflectionRoot(), REFLECTION_V1),
    v1alpha: join(reflectionRoot(), REFLECTION_V1ALPHA),
  });
  return {
    notServing: () => {
      for (const name of names) health.setStatus(name, 'NOT_SERVING');
    },
  };
}
