import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import test from 'ava';
import { protoPath as healthProto } from 'grpc-health-check';
import { startNode } from './helpers/nodes';

type Callback<T> = (error: grpc.ServiceError | null, value?: T) => void;

test('a node answers the standard health check and lists its services by reflection', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const health = grpc.loadPackageDefinition(
    protoLoader.loadSync(healthProto, { enums: String }),
  ) as unknown as {
    grpc: {
      health: {
        v1: {
          Health: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & {
            Check(req: { service: string }, cb: Callback<{ status: string }>): void;
          };
        };
      };
    };
  };
  const checker = new health.grpc.health.v1.Health(
    node.node.address,
    grpc.credentials.createInsecure(),
  );
  t.teardown(() => checker.close());
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) =>
      checker.Check({ service }, (error, value) =>
        error ? reject(error) : resolve(String(value?.status)),
      ),
    );
  t.is(await check(''), 'SERVING');
  t.is(await check('shardsnap.v1.Snapshots'), 'SERVING');
  const unknown = await t.throwsAsync(check('no.such.Service'));
  t.is((unknown as grpc.ServiceError).code, grpc.status.NOT_FOUND);

  const reflectionProto = join(
    require.resolve('@grpc/reflection'),
    '..',
    '..',
    'proto',
    'grpc',
    'reflection',
    'v1',
    'reflection.proto',
  );
  const reflection = grpc.loadPackageDefinition(
    protoLoader.loadSync(reflectionProto),
  ) as unknown as {
    grpc: {
      reflection: {
        v1: {
          ServerReflection: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & {
            ServerReflectionInfo(): grpc.ClientDuplexStream<
              { listServices: string },
              { listServicesResponse?: { service: Array<{ name: string }> } }
            >;
          };
        };
      };
    };
  };
  const client = new reflection.grpc.reflection.v1.ServerReflection(
    node.node.address,
    grpc.credentials.createInsecure(),
  );
  t.teardown(() => client.close());
  const stream = client.ServerReflectionInfo();
  const response = new Promise<string[]>((resolve, reject) => {
    stream.once('data', (m: { listServicesResponse?: { service: Array<{ name: string }> } }) =>
      resolve((m.listServicesResponse?.service ?? []).map((s) => s.name)),
    );
    stream.once('error', reject);
  });
  stream.write({ listServices: '' });
  const names = await response;
  stream.end();
  t.true(names.includes('shardsnap.v1.Shard'));
  t.true(names.includes('shardsnap.v1.Snapshots'));
});
