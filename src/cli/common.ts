import { InvalidArgumentError, type Command } from 'commander';
import { type SlotRange, parseSlotRanges } from '../core';
import { ShardsnapClient } from '../client';
import { type ClientSecurity, loadClientSecurity } from '../wire/security';
import { parseHostPort } from '../server/config';
import { reportError } from './output';

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

/** How a command reaches a node: `--tls-ca`, `--tls-cert`, `--tls-key`, `--token`. */
export interface ClientFlags {
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  token?: string;
}

export const TOKEN_ENV = 'SHARDSNAP_TOKEN';

/** Adds the flags of ClientFlags to a command that talks to a node. */
export function addClientOptions(command: Command): Command {
  return command
    .option('--tls-ca <file>', 'speak TLS, trusting this CA (PEM)')
    .option('--tls-cert <file>', 'client certificate for mutual TLS (PEM; with --tls-key)')
    .option('--tls-key <file>', 'key of --tls-cert (PEM)')
    .option('--token <token>', `bearer token of the calls (default: $${TOKEN_ENV})`);
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
    return await body(client);
  } finally {
    client.close();
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
