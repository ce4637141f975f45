import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import test from 'ava';
import { protoPath as healthProto } from 'grpc-health-check';
import * as protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';
import { startNode } from './helpers/nodes';

// Everything below talks to the node the way a generic tool does: the health and reflection
// protos ship with their packages; the node's own schema comes only from reflection.

const CALL_MS = 10_000;
const insecure = grpc.credentials.createInsecure();
const deadline = (): grpc.CallOptions => ({ deadline: Date.now() + CALL_MS });

type Callback<T> = (error: grpc.ServiceError | null, value?: T) => void;

interface HealthClient extends grpc.Client {
  Check(
    request: { service: string },
    options: grpc.CallOptions,
    callback: Callback<{ status: string }>,
  ): void;
  Watch(request: { service: string }): grpc.ClientReadableStream<{ status: string }>;
}

function healthClient(address: string): HealthClient {
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync(healthProto, { enums: String }),
  ) as unknown as {
    grpc: {
      health: { v1: { Health: new (a: string, c: grpc.ChannelCredentials) => HealthClient } };
    };
  };
  return new loaded.grpc.health.v1.Health(address, insecure);
}

interface ReflectionRequest {
  list_services?: string;
  file_by_filename?: string;
  file_containing_symbol?: string;
}

interface ReflectionResponse {
  list_services_response?: { service: Array<{ name: string }> };
  file_descriptor_response?: { file_descriptor_proto: Buffer[] };
  error_response?: { error_code: number; error_message: string };
}

interface Reflection {
  ask(request: ReflectionRequest): Promise<ReflectionResponse>;
  /** Half-closes the stream: resolves with the status the node ends it with. */
  finish(): Promise<grpc.StatusObject>;
  close(): void;
}

type Version = 'v1' | 'v1alpha';

/** One ServerReflectionInfo stream; answers come back in the order of the requests. */
function reflection(address: string, version: Version): Reflection {
  const proto = join(
    dirname(require.resolve('@grpc/reflection')),
    '..',
    'proto',
    'grpc',
    'reflection',
    version,
    'reflection.proto',
  );
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync(proto, { keepCase: true, oneofs: true }),
  ) as unknown as {
    grpc: {
      reflection: Record<
        Version,
        {
          ServerReflection: new (
            a: string,
            c: grpc.ChannelCredentials,
          ) => grpc.Client & {
            ServerReflectionInfo(
              options: grpc.CallOptions,
            ): grpc.ClientDuplexStream<ReflectionRequest, ReflectionResponse>;
          };
        }
      >;
    };
  };
  const client = new loaded.grpc.reflection[version].ServerReflection(address, insecure);
  const stream = client.ServerReflectionInfo({ deadline: Date.now() + 60_000 });
  const waiting: Array<{ resolve: (r: ReflectionResponse) => void; reject: (e: Error) => void }> =
    [];
  stream.on('data', (response: ReflectionResponse) => waiting.shift()?.resolve(response));
  stream.on('error', (error: Error) => {
    for (const waiter of waiting.splice(0)) waiter.reject(error);
  });
  return {
    ask: (request) =>
      new Promise((resolve, reject) => {
        waiting.push({ resolve, reject });
        stream.write(request);
      }),
    finish: () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the stream did not end')), CALL_MS);
        stream.once('status', (status: grpc.StatusObject) => {
          clearTimeout(timer);
          resolve(status);
        });
        stream.end();
      }),
    close: () => {
      stream.cancel();
      client.close();
    },
  };
}

type FileProto = {
  name: string;
  dependency?: string[];
  messageType?: Array<{ name: string; field?: Array<{ name: string; jsonName?: string }> }>;
};

function decodeFiles(response: ReflectionResponse): FileProto[] {
  const files = response.file_descriptor_response?.file_descriptor_proto ?? [];
  return files.map(
    (bytes) =>
      descriptor.FileDescriptorProto.toObject(descriptor.FileDescriptorProto.decode(bytes), {
        arrays: true,
      }) as FileProto,
  );
}

/** The file declaring `symbol` and every file it imports, asking by name for any not sent along. */
async function filesFor(client: Reflection, symbol: string): Promise<FileProto[]> {
  const files = new Map<string, FileProto>();
  const add = (response: ReflectionResponse): void => {
    for (const file of decodeFiles(response)) files.set(file.name, file);
  };
  add(await client.ask({ file_containing_symbol: symbol }));
  for (;;) {
    const missing = [...files.values()]
      .flatMap((file) => file.dependency ?? [])
      .filter((name) => !files.has(name));
    const next = missing[0];
    if (next === undefined) return [...files.values()];
    const response = await client.ask({ file_by_filename: next });
    if (!response.file_descriptor_response) throw new Error(`${next}: not served`);
    add(response);
  }
}

/** A protobufjs root of the reflected files: names exactly as the descriptors carry them. */
function rootOf(files: FileProto[]): protobuf.Root {
  // protobufjs/ext/descriptor adds Root.fromDescriptor without declaring it.
  const Root = protobuf.Root as unknown as { fromDescriptor(set: object): protobuf.Root };
  const root = Root.fromDescriptor({ file: files });
  root.resolveAll();
  return root;
}

function callRaw(
  client: grpc.Client,
  path: string,
  type: protobuf.Type,
  json: string,
): Promise<Buffer> {
  const request = Buffer.from(type.encode(type.fromObject(JSON.parse(json) as object)).finish());
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      path,
      (bytes: Buffer) => bytes,
      (bytes: Buffer) => bytes,
      request,
      deadline(),
      (error, response) =>
        error || !response ? reject(error ?? new Error('no response')) : resolve(response),
    ),
  );
}

const OWN_SERVICES = ['shardsnap.v1.Shard', 'shardsnap.v1.Snapshots', 'shardsnap.v1.Migration'];

test('health answers SERVING for the node and each of its services', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const checker = healthClient(node.node.address);
  t.teardown(() => checker.close());
  const check = (service: string): Promise<string> =>
    new Promise((resolve, reject) =>
      checker.Check({ service }, deadline(), (error, value) =>
        error ? reject(error) : resolve(String(value?.status)),
      ),
    );
  for (const service of ['', ...OWN_SERVICES]) t.is(await check(service), 'SERVING', service);
  const unknown = await t.throwsAsync(check('no.such.Service'));
  t.is((unknown as grpc.ServiceError).code, grpc.status.NOT_FOUND);
});

test('a node going down turns every health status NOT_SERVING', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const checker = healthClient(node.node.address);
  t.teardown(() => checker.close());
  const watches = ['', ...OWN_SERVICES].map((service) => {
    const stream = checker.Watch({ service });
    const seen: string[] = [];
    let first: () => void = () => undefined;
    const answered = new Promise<void>((resolve) => (first = resolve));
    // Settles (never rejects) so an early end shows up in the assertion, not as a crash.
    const ended = new Promise<void>((resolve) => {
      stream.on('data', (update: { status: string }) => {
        seen.push(update.status);
        first();
        if (update.status === 'NOT_SERVING') resolve();
      });
      stream.on('error', () => resolve());
      stream.on('end', () => resolve());
    });
    return { service, stream, seen, answered, ended };
  });
  t.teardown(() => watches.forEach(({ stream }) => stream.cancel()));
  // Each watch answers the current status first: all are serving before the stop.
  await Promise.all(watches.map(({ answered }) => answered));
  t.deepEqual(
    watches.map(({ seen }) => seen[0]),
    ['SERVING', 'SERVING', 'SERVING', 'SERVING'],
  );
  const stopping = node.stop();
  await Promise.all(watches.map(({ ended }) => ended));
  await stopping;
  for (const { service, seen } of watches) t.is(seen.at(-1), 'NOT_SERVING', `'${service}'`);
});

for (const version of ['v1', 'v1alpha'] as const) {
  test(`reflection ${version} lists the node's services, health and reflection`, async (t) => {
    const node = await startNode();
    t.teardown(() => node.stop());
    const client = reflection(node.node.address, version);
    t.teardown(() => client.close());
    const listed = await client.ask({ list_services: '*' });
    const names = (listed.list_services_response?.service ?? []).map((s) => s.name);
    for (const expected of [
      ...OWN_SERVICES,
      'grpc.health.v1.Health',
      'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection',
    ]) {
      t.true(names.includes(expected), `${expected} in ${names.join(', ')}`);
    }
    // Every listed service resolves to the file protoc would name, relative to its root.
    const where: Record<string, string> = {
      'shardsnap.v1.Migration': 'shardsnap/v1/shardsnap.proto',
      'grpc.health.v1.Health': 'grpc/health/v1/health.proto',
      'grpc.reflection.v1.ServerReflection': 'grpc/reflection/v1/reflection.proto',
      'grpc.reflection.v1alpha.ServerReflection': 'grpc/reflection/v1alpha/reflection.proto',
    };
    for (const name of names) {
      const [file] = decodeFiles(await client.ask({ file_containing_symbol: name }));
      t.truthy(file, name);
      if (where[name]) t.is(file?.name, where[name]);
    }
    const byName = decodeFiles(
      await client.ask({ file_by_filename: 'grpc/health/v1/health.proto' }),
    );
    t.is(byName[0]?.name, 'grpc/health/v1/health.proto');

    const unknown = await client.ask({ file_containing_symbol: 'shardsnap.v1.NoSuchThing' });
    t.is(unknown.error_response?.error_code, grpc.status.NOT_FOUND);
    t.is(unknown.file_descriptor_response, undefined);
    const noFile = await client.ask({ file_by_filename: 'shardsnap_v1.proto' });
    t.is(noFile.error_response?.error_code, grpc.status.NOT_FOUND);
    // An error answer does not end the stream.
    t.truthy((await client.ask({ list_services: '' })).list_services_response);
    // A client that half-closes gets the end of the stream, with OK.
    t.is((await client.finish()).code, grpc.status.OK);
  });
}

test('a client built only from reflection calls GetSnapshot and Health/Check with snake_case JSON', async (t) => {
  const node = await startNode();
  t.teardown(() => node.stop());
  const client = reflection(node.node.address, 'v1alpha');
  t.teardown(() => client.close());
  const raw = new grpc.Client(node.node.address, insecure);
  t.teardown(() => raw.close());

  const files = await filesFor(client, 'shardsnap.v1.Snapshots');
  const own = files[0];
  t.is(own?.name, 'shardsnap/v1/shardsnap.proto');
  const request = own?.messageType?.find((m) => m.name === 'GetSnapshotRequest');
  t.deepEqual(
    request?.field?.map((f) => [f.name, f.jsonName]),
    [['snapshot_id', 'snapshotId']],
  );
  const info = own?.messageType?.find((m) => m.name === 'SnapshotInfo');
  t.true(info?.field?.some((f) => f.name === 'created_at_ms' && f.jsonName === 'createdAtMs'));

  const root = rootOf(files);
  const SnapshotInfo = root.lookupType('shardsnap.v1.SnapshotInfo');
  const created = SnapshotInfo.toObject(
    SnapshotInfo.decode(
      await callRaw(
        raw,
        '/shardsnap.v1.Snapshots/CreateSnapshot',
        root.lookupType('shardsnap.v1.CreateSnapshotRequest'),
        '{}',
      ),
    ),
  ) as { id?: string };
  const id = created.id ?? '';
  t.true(id.length > 0);

  const fetched = SnapshotInfo.toObject(
    SnapshotInfo.decode(
      await callRaw(
        raw,
        '/shardsnap.v1.Snapshots/GetSnapshot',
        root.lookupType('shardsnap.v1.GetSnapshotRequest'),
        JSON.stringify({ snapshot_id: id }),
      ),
    ),
    { enums: String },
  ) as { id?: string; node_id?: string };
  t.is(fetched.id, id);
  t.truthy(fetched.node_id);

  const healthRoot = rootOf(await filesFor(client, 'grpc.health.v1.Health'));
  const HealthCheckResponse = healthRoot.lookupType('grpc.health.v1.HealthCheckResponse');
  const health = HealthCheckResponse.toObject(
    HealthCheckResponse.decode(
      await callRaw(
        raw,
        '/grpc.health.v1.Health/Check',
        healthRoot.lookupType('grpc.health.v1.HealthCheckRequest'),
        '{"service": "shardsnap.v1.Migration"}',
      ),
    ),
    { enums: String },
  ) as { status?: string };
  t.is(health.status, 'SERVING');
});
