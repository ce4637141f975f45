/**
 * What the transfer-limit tests share: loading a store with a given amount of data, a free
 * loopback port, the standard health check of a node, and `shardsnap serve --json` run as
 * a child process whose exit can be awaited.
 */
import type { ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { ExecutionContext } from 'ava';
import { protoPath as healthProto } from 'grpc-health-check';
import type { ShardsnapClient } from '../../src/client';
import { spawnServe } from './cli';
import { stringSets, tempDirFor } from './harness';

export const KiB = 1024;
export const MiB = 1 << 20;

/** Writes string keys `<prefix><i>` with values of `valueSize` bytes until about `bytes` are stored. */
export async function loadBytes(
  client: ShardsnapClient,
  bytes: number,
  prefix = 'k',
  valueSize = 4 * KiB,
): Promise<number> {
  const count = Math.ceil(bytes / valueSize);
  const all = stringSets(prefix, count, valueSize);
  for (let from = 0; from < count; from += 256)
    await client.write({ mutations: all.slice(from, from + 256) });
  return count;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

type Callback<T> = (error: grpc.ServiceError | null, value?: T) => void;
type HealthClient = grpc.Client & {
  Check(request: { service: string }, callback: Callback<{ status: string }>): void;
};

/** A client of the node's standard gRPC health service (closed when the test ends). */
export function healthCheckerFor(
  t: ExecutionContext,
  address: string,
): (service?: string) => Promise<string> {
  const health = grpc.loadPackageDefinition(
    protoLoader.loadSync(healthProto, { enums: String }),
  ) as unknown as {
    grpc: {
      health: {
        v1: { Health: new (address: string, credentials: grpc.ChannelCredentials) => HealthClient };
      };
    };
  };
  const checker = new health.grpc.health.v1.Health(address, grpc.credentials.createInsecure());
  t.teardown(() => checker.close());
  return (service = '') =>
    new Promise((resolve, reject) =>
      checker.Check({ service }, (error, value) =>
        error ? reject(error) : resolve(String(value?.status)),
      ),
    );
}

export interface JsonServedNode {
  address: string;
  dataDir: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far (its log lines). */
  stderr(): string;
  /** Resolves with the exit code (or the signal that ended the process). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Spawns `shardsnap serve --listen 127.0.0.1:0 --json ...extra` with a temp data dir and
 * waits for its `{"listening": ...}` line. A process still running when the test ends is
 * stopped by its pid (SIGKILL after 3 s).
 */
export async function serveJson(
  t: ExecutionContext,
  extra: readonly string[] = [],
): Promise<JsonServedNode> {
  const dataDir = await tempDirFor(t, 'shardsnap-limits-');
  const served = await spawnServe(t, ['--data-dir', dataDir, '--json', ...extra]);
  return { ...served, dataDir };
}

/** The JSON log lines (pino) among `text`; other lines are skipped. */
export function logLines(text: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // A partial line at the end of the output: not a log line yet.
    }
  }
  return lines;
}
