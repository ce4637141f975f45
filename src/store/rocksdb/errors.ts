import { ErrorCodes, ShardsnapError } from '../../core';
import { isRocksDbError } from './native';

export type ErrorContext = Record<string, string | number>;

function where(context: ErrorContext): string {
  return Object.entries(context)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

export function storeClosed(op: string): ShardsnapError {
  return new ShardsnapError(ErrorCodes.unavailable, `rocksdb store is closed [op=${op}]`);
}

/**
 * A failure of the RocksDB backend as a ShardsnapError saying where it happened.
 * RocksDB errors become `internal` (`unavailable` once the db is closed) and are kept as
 * `cause`; domain errors keep their code (WRONGTYPE keeps its message word for word, as
 * the memory store reports it).
 */
export function storeError(error: unknown, context: ErrorContext): ShardsnapError {
  const suffix = ` [${where(context)}]`;
  if (error instanceof ShardsnapError) {
    if (error.code === ErrorCodes.wrongType || error.message.endsWith(']')) return error;
    return new ShardsnapError(error.code, `${error.message}${suffix}`, {
      cause: error.cause ?? error,
    });
  }
  if (isRocksDbError(error)) {
    const closed = error.code === 'Closed' || error.code === 'ShutdownInProgress';
    return new ShardsnapError(
      closed ? ErrorCodes.unavailable : ErrorCodes.internal,
      `rocksdb ${error.code}: ${error.message}${suffix}`,
      { cause: error },
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ShardsnapError(ErrorCodes.internal, `${message}${suffix}`, { cause: error });
}

/** Runs `body`, turning whatever it throws into a ShardsnapError with `context`. */
export async function withContext<T>(context: ErrorContext, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw storeError(error, context);
  }
}
