import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../core';

/** How a client reaches a node: TLS (optionally with a client certificate) and a token. */
export interface ClientSecurity {
  /**
   * Speak TLS. `ca` is the certificate authority to trust (default: the system's roots);
   * `cert` and `key` are presented as the client certificate (mutual TLS).
   */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
  /** Sent as `authorization: Bearer <token>` on every call. */
  token?: string;
}

/** File names of a client's security settings, as the CLI and the node take them. */
export interface ClientSecurityFiles {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  token?: string;
}

export const AUTHORIZATION_HEADER = 'authorization';

/** A token as it may travel in an HTTP/2 header: visible ASCII, no spaces. */
const TOKEN_PATTERN = /^[\x21-\x7e]+$/;

export function validateToken(token: string, where: string): string {
  if (!TOKEN_PATTERN.test(token)) {
    throw invalidArgument(`${where}: a token must be non-empty visible ASCII without spaces`);
  }
  return token;
}

async function readPem(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw invalidArgument(`${what} ${path}: ${(error as Error).message}`, error);
  }
}

/**
 * Reads the files of a client's settings. A client certificate needs its key and the
 * other way round; a certificate or key alone is refused rather than silently unused.
 */
export async function loadClientSecurity(files: ClientSecurityFiles): Promise<ClientSecurity> {
  if (Boolean(files.tlsCert) !== Boolean(files.tlsKey)) {
    throw invalidArgument('--tls-cert and --tls-key must be given together');
  }
  const security: ClientSecurity = {};
  if (files.tlsCa || files.tlsCert) {
    security.tls = {
      ...(files.tlsCa ? { ca: await readPem(files.tlsCa, '--tls-ca') } : {}),
      ...(files.tlsCert ? { cert: await readPem(files.tlsCert, '--tls-cert') } : {}),
      ...(files.tlsKey ? { key: await readPem(files.tlsKey, '--tls-key') } : {}),
    };
  }
  if (files.token !== undefined) security.token = validateToken(files.token, '--token');
  return security;
}

/** The channel credentials of `security` (TLS or plaintext). */
export function channelCredentials(security: ClientSecurity): grpc.ChannelCredentials {
  const tls = security.tls;
  if (!tls) return grpc.credentials.createInsecure();
  return grpc.credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/**
 * Adds the bearer token to every call. An interceptor rather than call credentials:
 * grpc-js refuses call credentials on plaintext channels, and a token over plaintext is
 * what a node on a trusted loopback or private network may well be configured with.
 */
export function tokenInterceptor(token: string): grpc.Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(AUTHORIZATION_HEADER, value);
        next(metadata, listener);
      },
    });
}

/** Client options of `security` that go beside the channel options. */
export function clientOptions(security: ClientSecurity): Partial<grpc.ClientOptions> {
  return security.token ? { interceptors: [tokenInterceptor(security.token)] } : {};
}
