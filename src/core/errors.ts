/**
 * Domain errors carry a stable string code (the gRPC status they become) and a stable
 * reason (finer: what exactly went wrong), plus metadata a program can act on (`slot`,
 * `address`, `snapshot_id`, `offset`). The server maps them to a gRPC status once, at the
 * edge (src/wire/status.ts), with a `google.rpc.Status` whose `ErrorInfo` carries the
 * reason and metadata and whose `RetryInfo` carries `retryAfterMs`; clients restore the
 * same error from those details, never from message text.
 *
 * This is the one module of `src/` that may call `new Error`: everything else throws a
 * `ShardsnapError` through the helpers below.
 */
export const ErrorCodes = {
  invalidArgument: 'invalid_argument',
  notFound: 'not_found',
  wrongType: 'wrong_type',
  failedPrecondition: 'failed_precondition',
  resourceExhausted: 'resource_exhausted',
  dataLoss: 'data_loss',
  cancelled: 'cancelled',
  /** The call's deadline passed (a client's `deadlineMs`, `AbortSignal.timeout`). */
  deadlineExceeded: 'deadline_exceeded',
  unavailable: 'unavailable',
  outOfRange: 'out_of_range',
  /** The object store refused the credentials or the request (archives). */
  permissionDenied: 'permission_denied',
  /** The call carried no credentials, or unknown ones. */
  unauthenticated: 'unauthenticated',
  /** The key's slot is owned by another node (FAILED_PRECONDITION, reason MOVED). */
  moved: 'moved',
  /** The key's slot is being handed over; retry shortly (UNAVAILABLE, reason TRYAGAIN). */
  tryAgain: 'try_again',
  /** The method is not implemented by this node or backend. */
  unimplemented: 'unimplemented',
  /** What the call would create exists already (a migration id in use). */
  alreadyExists: 'already_exists',
  internal: 'internal',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/**
 * The stable reasons of `ErrorInfo` (UPPER_SNAKE_CASE, never renamed once released). A
 * code without a narrower reason uses its own name upper-cased (`NOT_FOUND`, ...).
 */
export const ErrorReasons = {
  /** metadata: slot, address (the owner to retry at). */
  moved: 'MOVED',
  /** metadata: slot. Retry after RetryInfo's delay. */
  tryAgain: 'TRYAGAIN',
  /** metadata: key (latin1), op. */
  wrongType: 'WRONGTYPE',
  /** metadata: snapshot_id. */
  snapshotNotFound: 'SNAPSHOT_NOT_FOUND',
  /** metadata: snapshot_id. The snapshot's build failed. */
  snapshotFailed: 'SNAPSHOT_FAILED',
  /** metadata: snapshot_id, offset. A chunk or artifact did not match its checksum. */
  checksumMismatch: 'CHECKSUM_MISMATCH',
  /** metadata: snapshot_id. */
  snapshotInUse: 'SNAPSHOT_IN_USE',
  /** The store was closed (node stopping); another node or a later call may succeed. */
  storeClosed: 'STORE_CLOSED',
  /** metadata: migration_id. A handoff with this id is already prepared on the source. */
  handoffAlreadyPrepared: 'HANDOFF_ALREADY_PREPARED',
  /**
   * The node does not own the slots a call targets and knows no owner to redirect to.
   * metadata: slot (a key's), or slots (an install's ranges, as `0-100,200`).
   */
  slotsNotOwned: 'SLOTS_NOT_OWNED',
  /** Too many concurrent transfers; RetryInfo says when to come back. */
  tooManyTransfers: 'TOO_MANY_TRANSFERS',
  /** The snapshot spool would pass `--spool-max-bytes`. */
  spoolFull: 'SPOOL_FULL',
  /** The catalog holds `--max-snapshots` snapshots. */
  catalogFull: 'CATALOG_FULL',
  /** A disk is full (metadata: path). */
  noSpace: 'NO_SPACE',
  /** The node is draining for shutdown. */
  shuttingDown: 'SHUTTING_DOWN',
  /** metadata: migration_id. A migration with this id is running or finished on the node. */
  migrationExists: 'MIGRATION_EXISTS',
  /** metadata: holder, purpose, since_ms. Another controller holds the cluster's leader lease. */
  controllerBusy: 'CONTROLLER_BUSY',
  /** metadata: expected, actual. The topology changed since the change was planned. */
  topologyChanged: 'TOPOLOGY_CHANGED',
  /** This controller lost the leader lease; another one acts now. */
  notLeader: 'NOT_LEADER',
  /** metadata: endpoints. etcd did not answer. */
  etcdUnavailable: 'ETCD_UNAVAILABLE',
} as const;

export type ErrorReason = (typeof ErrorReasons)[keyof typeof ErrorReasons] | Uppercase<string>;

/** The `ErrorInfo.domain` of every shardsnap error. */
export const ERROR_DOMAIN = 'shardsnap.v1';

export interface ShardsnapErrorOptions {
  cause?: unknown;
  /** When a retry makes sense: after this many milliseconds. */
  retryAfterMs?: number;
  /** Narrower than the code; defaults to the code upper-cased. */
  reason?: ErrorReason;
  /** What a program needs to act on the error (snake_case keys, string values). */
  metadata?: Record<string, string | number>;
}

export class ShardsnapError extends Error {
  readonly code: ErrorCode;
  readonly reason: ErrorReason;
  readonly metadata: Readonly<Record<string, string>>;
  /** When a retry makes sense: after this many milliseconds (a busy node's hint). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: ShardsnapErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ShardsnapError';
    this.code = code;
    this.reason = options.reason ?? defaultReason(code);
    this.metadata = Object.fromEntries(
      Object.entries(options.metadata ?? {}).map(([k, v]) => [k, String(v)]),
    );
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** A code's own reason: `not_found` → `NOT_FOUND`; moved and try_again have Redis's words. */
export function defaultReason(code: ErrorCode): ErrorReason {
  if (code === ErrorCodes.moved) return ErrorReasons.moved;
  if (code === ErrorCodes.tryAgain) return ErrorReasons.tryAgain;
  if (code === ErrorCodes.wrongType) return ErrorReasons.wrongType;
  return code.toUpperCase() as ErrorReason;
}

export const invalidArgument = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.invalidArgument, message, { cause });

export const notFound = (message: string, options?: ShardsnapErrorOptions): ShardsnapError =>
  new ShardsnapError(ErrorCodes.notFound, message, options);

export const dataLoss = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.dataLoss, message, { cause });

export const internal = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.internal, message, { cause });

export const failedPrecondition = (
  message: string,
  options?: ShardsnapErrorOptions,
): ShardsnapError => new ShardsnapError(ErrorCodes.failedPrecondition, message, options);

export const unavailable = (message: string, options?: ShardsnapErrorOptions): ShardsnapError =>
  new ShardsnapError(ErrorCodes.unavailable, message, options);

export const cancelled = (message = 'operation cancelled'): ShardsnapError =>
  new ShardsnapError(ErrorCodes.cancelled, message);

export const deadlineExceeded = (message = 'deadline exceeded'): ShardsnapError =>
  new ShardsnapError(ErrorCodes.deadlineExceeded, message);

/** A snapshot this node does not hold (never had, deleted, expired). */
export const snapshotNotFound = (id: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.notFound, `snapshot ${id} not found`, {
    reason: ErrorReasons.snapshotNotFound,
    metadata: { snapshot_id: id },
  });

/** A build that failed; `code` says whose fault it was (a full spool is the node's). */
export const snapshotFailed = (
  id: string,
  message: string,
  code: ErrorCode = ErrorCodes.failedPrecondition,
): ShardsnapError =>
  new ShardsnapError(code, message, {
    reason: ErrorReasons.snapshotFailed,
    metadata: { snapshot_id: id },
  });

/** A chunk or a whole artifact that does not match its checksum (`offset`: where it starts). */
export const checksumMismatch = (
  message: string,
  where: { snapshotId?: string; offset: number },
  cause?: unknown,
): ShardsnapError =>
  new ShardsnapError(ErrorCodes.dataLoss, message, {
    cause,
    reason: ErrorReasons.checksumMismatch,
    metadata: { snapshot_id: where.snapshotId ?? '', offset: where.offset },
  });

/** A snapshot that cannot be deleted or replaced while something reads it. */
export const snapshotInUse = (id: string, message: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, message, {
    reason: ErrorReasons.snapshotInUse,
    metadata: { snapshot_id: id },
  });

/** The node is draining for shutdown: another node, or this one after a restart, may answer. */
export const shuttingDown = (message = 'the node is shutting down'): ShardsnapError =>
  new ShardsnapError(ErrorCodes.unavailable, message, { reason: ErrorReasons.shuttingDown });

/** A disk is full; `path` is where the write failed, when known. */
export const noSpace = (message: string, path?: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.resourceExhausted, message, {
    cause,
    reason: ErrorReasons.noSpace,
    metadata: path === undefined ? {} : { path },
  });

/**
 * The most of a key that error metadata carries: it travels in a trailer, and gRPC
 * clients refuse trailers past a few KiB. `key_bytes` then gives the whole key's length.
 */
const MAX_METADATA_KEY_BYTES = 1024;

/** An operation on a key that holds another type (as Redis's WRONGTYPE). */
export const wrongType = (key: Uint8Array, op: string, message?: string): ShardsnapError => {
  const bytes = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const shown = bytes.subarray(0, MAX_METADATA_KEY_BYTES).toString('latin1');
  return new ShardsnapError(
    ErrorCodes.wrongType,
    message ?? 'WRONGTYPE Operation against a key holding the wrong kind of value',
    {
      reason: ErrorReasons.wrongType,
      metadata:
        bytes.length > MAX_METADATA_KEY_BYTES
          ? { key: shown, key_bytes: bytes.length, op }
          : { key: shown, op },
    },
  );
};

/** The store was closed under the call. */
export const storeClosed = (where = 'store'): ShardsnapError =>
  new ShardsnapError(ErrorCodes.unavailable, `${where} is closed`, {
    reason: ErrorReasons.storeClosed,
  });

/** Any thrown value as an Error (for values that are not errors: a string, a status). */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

export function isShardsnapError(error: unknown, code?: ErrorCode): error is ShardsnapError {
  return error instanceof ShardsnapError && (code === undefined || error.code === code);
}

/** True for a ShardsnapError of this reason (`MOVED`, `TRYAGAIN`, ...). */
export function hasReason(error: unknown, reason: ErrorReason): error is ShardsnapError {
  return error instanceof ShardsnapError && error.reason === reason;
}

/**
 * Throws for a fired signal: DEADLINE_EXCEEDED when it was a timeout
 * (`AbortSignal.timeout`), CANCELLED otherwise.
 */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortError(signal);
}

/** The error a fired signal means (see throwIfAborted). */
export function abortError(signal: AbortSignal): ShardsnapError {
  const reason: unknown = signal.reason;
  if (reason instanceof ShardsnapError) return reason;
  if (isTimeout(reason)) {
    return deadlineExceeded(reason instanceof Error ? reason.message : 'deadline exceeded');
  }
  return cancelled(reason instanceof Error ? reason.message : 'operation cancelled');
}

function isTimeout(reason: unknown): boolean {
  return (
    typeof reason === 'object' &&
    reason !== null &&
    (reason as { name?: unknown }).name === 'TimeoutError'
  );
}

/** A full disk: a file write's ENOSPC, or RocksDB's NoSpace status (see the binding). */
export function isNoSpace(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code } = error as { code?: unknown };
  return code === 'ENOSPC' || code === 'NoSpace';
}
