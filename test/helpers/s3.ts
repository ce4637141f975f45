/**
 * A real S3-compatible store for tests: s3rver on 127.0.0.1:0 with a temp directory,
 * stopped (and its directory removed) when the test ends. It can be stopped abruptly
 * (every connection dropped, as if the store died) and started again on the same port
 * with the same objects.
 */
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { ExecutionContext } from 'ava';
import { S3Client } from '@aws-sdk/client-s3';
import type { S3Settings } from '../../src/archive';
import { tempDirFor } from './harness';

/** The key pair s3rver accepts (it checks the access key id, not v4 signatures). */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

interface S3rverStore {
  putPart(bucket: string, uploadId: string, partNumber: number, content: unknown): Promise<unknown>;
}

interface S3rverInstance {
  run(): Promise<{ port: number }>;
  close(): Promise<void>;
  httpServer?: Server;
  store: S3rverStore;
}

type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: Array<{ name: string }>;
}) => S3rverInstance;

const load = createRequire(__filename);
const S3rver = load('s3rver') as S3rverConstructor;

export interface TestS3 {
  endpoint: string;
  port: number;
  bucket: string;
  /** Settings for a node or S3Targets talking to this store. */
  settings: S3Settings;
  /** Env for CLI child processes (endpoint comes from flags). */
  env: NodeJS.ProcessEnv;
  /** An SDK client, for tests that look at or tamper with objects. */
  client: S3Client;
  /** Called with each multipart part number as it arrives (before it is stored). */
  onPart: ((partNumber: number) => void | Promise<void>) | undefined;
  /** Drops every connection and stops listening. */
  stop(): Promise<void>;
  /** Listens again on the same port, with the same objects. */
  start(): Promise<void>;
  readonly running: boolean;
}

export async function s3For(
  t: ExecutionContext,
  options: { bucket?: string; partSizeBytes?: number; queueSize?: number } = {},
): Promise<TestS3> {
  const directory = await tempDirFor(t, 'shardsnap-s3-');
  const bucket = options.bucket ?? 'archives';
  let server: S3rverInstance | undefined;
  let port = 0;

  const listen = async (): Promise<void> => {
    const instance = new S3rver({
      address: '127.0.0.1',
      port,
      silent: true,
      directory,
      configureBuckets: [{ name: bucket }],
    });
    const original = instance.store.putPart.bind(instance.store);
    instance.store.putPart = async (b, uploadId, partNumber, content) => {
      await s3.onPart?.(Number(partNumber));
      return original(b, uploadId, partNumber, content);
    };
    port = (await instance.run()).port;
    server = instance;
  };

  const s3: TestS3 = {
    endpoint: '',
    port: 0,
    bucket,
    settings: {},
    env: {},
    client: undefined as unknown as S3Client,
    onPart: undefined,
    get running() {
      return server !== undefined;
    },
    async stop() {
      const instance = server;
      server = undefined;
      if (!instance) return;
      instance.httpServer?.closeAllConnections();
      await instance.close();
    },
    start: listen,
  };
  await listen();
  const endpoint = `http://127.0.0.1:${port}`;
  s3.endpoint = endpoint;
  s3.port = port;
  s3.settings = {
    endpoint,
    region: 'us-east-1',
    credentials: S3RVER_CREDENTIALS,
    ...(options.partSizeBytes ? { partSizeBytes: options.partSizeBytes } : {}),
    ...(options.queueSize ? { queueSize: options.queueSize } : {}),
    // Few, fast retries: a test that stops the store should not wait for long backoffs.
    maxAttempts: 2,
    connectTimeoutMs: 2_000,
  };
  s3.env = {
    ...process.env,
    AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    AWS_REGION: 'us-east-1',
  };
  s3.client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
  });
  t.teardown(async () => {
    s3.client.destroy();
    await s3.stop();
  });
  return s3;
}
