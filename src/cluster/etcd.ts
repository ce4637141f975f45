import { Etcd3, type IOptions } from 'etcd3';
import {
  ErrorCodes,
  ErrorReasons,
  ShardsnapError,
  invalidArgument,
  isShardsnapError,
} from '../core';

/** How long one etcd call may take before it counts as etcd being unreachable. */
export const ETCD_CALL_TIMEOUT_MS = 5_000;

/** `host:port[,host:port]` (a scheme is allowed) → the client's host list. */
export function parseEndpoints(text: string): string[] {
  const hosts = text
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part !== '');
  if (hosts.length === 0) throw invalidArgument('--etcd names no endpoint');
  for (const host of hosts) {
    if (!/^(https?:\/\/)?[^\s/:,]+:\d{1,5}$/.test(host)) {
      throw invalidArgument(`--etcd endpoint ${JSON.stringify(host)} is not host:port`);
    }
  }
  return hosts;
}

export interface EtcdConnection {
  readonly client: Etcd3;
  readonly endpoints: string;
  close(): void;
}

export function connectEtcd(endpoints: string, options: Partial<IOptions> = {}): EtcdConnection {
  const client = new Etcd3({
    hosts: parseEndpoints(endpoints),
    dialTimeout: ETCD_CALL_TIMEOUT_MS,
    // Streams (watches, keepalives) live as long as their owner; single calls are bounded.
    defaultCallOptions: (context) =>
      context.isStream ? {} : { deadline: Date.now() + ETCD_CALL_TIMEOUT_MS },
    ...options,
  });
  return { client, endpoints, close: () => client.close() };
}

/**
 * Runs one etcd call; what fails on the way to etcd becomes UNAVAILABLE / ETCD_UNAVAILABLE
 * naming the endpoints and what was being done. Our own errors pass through.
 */
export async function etcdCall<T>(
  conn: EtcdConnection,
  what: string,
  call: () => Promise<T>,
): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (isShardsnapError(error)) throw error;
    throw new ShardsnapError(
      ErrorCodes.unavailable,
      `etcd at ${conn.endpoints} did not answer (${what}): ${(error as Error).message}`,
      {
        cause: error,
        reason: ErrorReasons.etcdUnavailable,
        metadata: { endpoints: conn.endpoints },
        retryAfterMs: 1_000,
      },
    );
  }
}
