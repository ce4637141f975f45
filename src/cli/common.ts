import { InvalidArgumentError, type Command } from 'commander';
import { type SlotRange, parseSlotRanges } from '../core';
import { ShardsnapClient } from '../client';
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

/** Runs a command body with a client of `addr`, mapping failures to exit codes. */
export async function withClient<T>(
  addr: string,
  body: (client: ShardsnapClient) => Promise<T>,
): Promise<T> {
  const client = new ShardsnapClient(addr);
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
