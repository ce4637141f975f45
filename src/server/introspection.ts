import type * as grpc from '@grpc/grpc-js';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { packageDefinition } from '../wire/proto';

const SERVICES = ['shardsnap.v1.Shard', 'shardsnap.v1.Snapshots'];

/**
 * The standard gRPC health service (overall and per service) and server reflection, so
 * generic tools (grpcurl, grpc_health_probe, load balancers) can talk to a node.
 * Returns a function that marks the node NOT_SERVING while it shuts down.
 */
export function addIntrospection(server: grpc.Server): { notServing: () => void } {
  const statuses = Object.fromEntries(['', ...SERVICES].map((name) => [name, 'SERVING' as const]));
  const health = new HealthImplementation(statuses);
  health.addToServer(server);
  new ReflectionService(packageDefinition()).addToServer(server);
  return {
    notServing: () => {
      for (const name of ['', ...SERVICES]) health.setStatus(name, 'NOT_SERVING');
    },
  };
}
