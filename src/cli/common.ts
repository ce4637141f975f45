import { type Client, connectivityState } from '@grpc/grpc-js';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { type SlotRange, parseSlotRanges } from '../core';
import { ShardsnapClient } from '../client';
import { type ClientSecurity, loadClientSecurity } from '../wire/security';
import { parseDuration, parseHostPort } from '../server/config';
import { reportError } from './output';
import { unreachableError } from './unreachable';

export interface GlobalOptions {
  json?: boolean;
}

export function globals(command: Command): GlobalOptions {
  return command.optsWithGlobals<GlobalOptions>();
}

export function address(value: string): string {
  try {
    parseHostPort(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
  return value;
}

/** The environment variable that gives the node a command calls when its flag is not given. */
/** A gRPC client's channel (the interface, which the exported class name does not cover). */
export type Channel = ReturnType<Client['getChannel']>;

export const ADDR_ENV = 'SHARDSNAP_ADDR';

/**
 * The option naming the node a command calls (`--at`, `--to`, `fetch --from`, ...):
 * required, defaulting to $SHARDSNAP_ADDR; the flag wins over the environment.
 */
export function nodeOption(flags: string, description: string): Option {
  return new Option(flags, description).env(ADDR_ENV).argParser(address).makeOptionMandatory();
}

export function duration(value: string): number {
  try {
    return parseDuration(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function slots(value: string): SlotRange[] {
  try {
    return parseSlotRanges(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new InvalidArgumentError(`"${value}" is not a non-negative integer`);
  return n;
}

/**
 * How a command reaches a node: `--tls-ca`, `--tls-cert`, `--tls-key`, `--token`,
 * `--connect-timeout`.
 */
export interface ClientFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  token?: string;
  connectTimeout?: number;
}

export const TOKEN_ENV = 'SHARDSNAP_TOKEN';
export const CONNECT_TIMEOUT_ENV = 'SHARDSNAP_CONNECT_TIMEOUT';

/** Adds the flags of ClientFlags to a command that talks to a node. */
export function addClientOptions(command: Command): Command {
  return command
    .option('--tls-ca <file>', 'speak TLS, trusting this CA (PEM)')
    .option('--tls-cert <file>', 'client certificate for mutual TLS (PEM; with --tls-key)')
    .option('--tls-key <file>', 'key of --tls-cert (PEM)')
    .option('--token <token>', `bearer token of the calls (default: $${TOKEN_ENV})`)
    .addOption(
      new Option(
        '--connect-timeout <duration>',
        'wait up to this long for a node that does not accept connections yet (e.g. 10s; default: fail at once)',
      )
        .env(CONNECT_TIMEOUT_ENV)
        .argParser(duration),
    );
}

/** The TLS files and token of a command's flags (the token falls back to the env). */
export function clientSecurity(flags: ClientFlags): Promise<ClientSecurity> {
  const envToken = process.env[TOKEN_ENV];
  const token = flags.token ?? (envToken ? envToken : undefined);
  return loadClientSecurity({
    ...(flags.tlsCa ? { tlsCa: flags.tlsCa } : {}),
    ...(flags.tlsCert ? { tlsCert: flags.tlsCert } : {}),
    ...(flags.tlsKey ? { tlsKey: flags.tlsKey } : {}),
    ...(token !== undefined ? { token } : {}),
  });
}

/** Runs a command body with a client of `addr`, mapping failures to exit codes. */
export async function withClient<T>(
  addr: string,
  /** The command's options; the ClientFlags among them are used. */
  flags: object,
  body: (client: ShardsnapClient) => Promise<T>,
): Promise<T> {
  const client = new ShardsnapClient(addr, {
    security: await clientSecurity(flags),
  });
  try {
    return await reaching(addr, client.connection.shard.getChannel(), flags, () => body(client));
  } finally {
    client.close();
  }
}

/**
 * Runs `body` against the node at `address` over `channel`: first waits up to
 * `--connect-timeout` for the node to accept connections, and turns a failure to reach it
 * into one plain sentence (see unreachableError).
 */
export async function reaching<T>(
  address: string,
  channel: Channel,
  flags: object,
  body: () => Promise<T>,
): Promise<T> {
  const { connectTimeout } = flags as ClientFlags;
  try {
    if (connectTimeout) await waitForConnection(channel, connectTimeout);
    return await body();
  } catch (error) {
    throw unreachableError(error, address, channel) ?? error;
  }
}

/**
 * Resolves once the channel is connected, or when `ms` passed: then the body's first call
 * fails with the transport's own reason, which says more than "not ready in time".
 */
async function waitForConnection(channel: Channel, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const state = channel.getConnectivityState(true);
    if (state === connectivityState.READY || Date.now() >= deadline) return;
    const changed = await new Promise<boolean>((resolve) =>
      channel.watchConnectivityState(state, deadline, (error) => resolve(!error)),
    );
    if (!changed) return;
  }
}

/** Wraps an action so that errors print once and set the exit code. */
export function action<A extends unknown[]>(
  body: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    const command = args[args.length - 1] as Command;
    try {
      await body(...args);
    } catch (error) {
      process.exitCode = reportError(error, globals(command).json ?? false);
    }
  };
}
