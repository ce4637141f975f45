/**
 * Domain errors carry a stable string code; the server maps codes to gRPC status once,
 * at the edge (src/server/status.ts). Messages say where a failure happened.
 */
export const ErrorCodes = {
  invalidArgument: 'invalid_argument',
  notFound: 'not_found',
  wrongType: 'wrong_type',
  failedPrecondition: 'failed_precondition',
  resourceExhausted: 'resource_exhausted',
  dataLoss: 'data_loss',
  cancelled: 'cancelled',
  unavailable: 'unavailable',
  outOfRange: 'out_of_range',
  /** The object store refused the credentials or the request (archives). */
  permissionDenied: 'permission_denied',
  /** The call carried no credentials, or unknown ones. */
  unauthenticated: 'unauthenticated',
  /** The key's slot is owned by another node (FAILED_PRECONDITION "MOVED <slot> <host:port>"). */
  moved: 'moved',
  /** The key's slot is being handed over; retry shortly (UNAVAILABLE "TRYAGAIN"). */
  tryAgain: 'try_again',
  internal: 'internal',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export class ShardsnapError extends Error {
  readonly code: ErrorCode;
  /** When a retry makes sense: after this many milliseconds (a busy node's hint). */
  readonly retryAfterMs: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.name = 'ShardsnapError';
    this.code = code;
    this.retryAfterMs = options?.retryAfterMs;
  }
}

export const invalidArgument = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.invalidArgument, message, { cause });

export const notFound = (message: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.notFound, message);

export const dataLoss = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.dataLoss, message, { cause });

export const cancelled = (message = 'operation cancelled'): ShardsnapError =>
  new ShardsnapError(ErrorCodes.cancelled, message);

export function isShardsnapError(error: unknown, code?: ErrorCode): error is ShardsnapError {
  return error instanceof ShardsnapError && (code === undefined || error.code === code);
}

/** Throws a `cancelled` error if the signal has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    throw cancelled(signal.reason instanceof Error ? signal.reason.message : 'operation cancelled');
  }
}

/** A full disk: a file write's ENOSPC, or RocksDB's NoSpace status (see the binding). */
export function isNoSpace(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code } = error as { code?: unknown };
  return code === 'ENOSPC' || code === 'NoSpace';
}
