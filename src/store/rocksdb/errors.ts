import { ErrorCodes, ErrorReasons, ShardsnapError, isNoSpace, noSpace } from '../../core';
import { isRocksDbError } from './native';

export type ErrorContext = Record<string, string | number>;

function where(context: ErrorContext): string {
  return Object.entries(context)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

/** As the memory store answers: UNAVAILABLE, reason STORE_CLOSED (see Store). */
export function storeClosed(op: string): ShardsnapError {
  return new ShardsnapError(ErrorCodes.unavailable, `rocksdb store is closed [op=${op}]`, {
    reason: ErrorReasons.storeClosed,
  });
}

/** Errors that already say where they happened: wrapping them again would say it twice. */
const placed = new WeakSet<ShardsnapError>();

/**
 * A failure of the RocksDB backend as a ShardsnapError saying where it happened.
 * RocksDB errors become `internal` (`unavailable` with reason STORE_CLOSED once the db
 * is closed, NO_SPACE for a full disk) and are kept as `cause`; domain errors keep their
 * code, reason and metadata (WRONGTYPE keeps its message word for word, as the memory
 * store reports it).
 */
export function storeError(error: unknown, context: ErrorContext): ShardsnapError {
  const suffix = ` [${where(context)}]`;
  if (error instanceof ShardsnapError) {
    if (error.code === ErrorCodes.wrongType || placed.has(error)) return error;
    return mark(
      new ShardsnapError(error.code, `${error.message}${suffix}`, {
        cause: error.cause ?? error,
        reason: error.reason,
        metadata: error.metadata,
        retryAfterMs: error.retryAfterMs,
      }),
    );
  }
  if (isRocksDbError(error)) {
    const message = `rocksdb ${error.code}: ${error.message}${suffix}`;
    if (isNoSpace(error)) {
      const path = typeof context.path === 'string' ? context.path : undefined;
      return mark(noSpace(message, path, error));
    }
    const closed = error.code === 'Closed' || error.code === 'ShutdownInProgress';
    return mark(
      closed
        ? new ShardsnapError(ErrorCodes.unavailable, message, {
            cause: error,
            reason: ErrorReasons.storeClosed,
          })
        : new ShardsnapError(ErrorCodes.internal, message, { cause: error }),
    );
  }
  const message = error instanceof Error ? error.message : String(error);
  if (isNoSpace(error)) {
    const { path } = error as { path?: unknown };
    return mark(noSpace(`${message}${suffix}`, typeof path === 'string' ? path : undefined, error));
  }
  return mark(new ShardsnapError(ErrorCodes.internal, `${message}${suffix}`, { cause: error }));
}

function mark(error: ShardsnapError): ShardsnapError {
  placed.add(error);
  return error;
}

/** Runs `body`, turning whatever it throws into a ShardsnapError with `context`. */
export async function withContext<T>(context: ErrorContext, body: () => Promise<T>): Promise<T> {
  try {
    return await body();
  } catch (error) {
    throw storeError(error, context);
  }
}
