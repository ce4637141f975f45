import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  ERROR_DOMAIN,
  type ErrorCode,
  ErrorCodes,
  type ErrorReason,
  ErrorReasons,
  ShardsnapError,
  isNoSpace,
  noSpace,
} from '../core';
import {
  type RpcStatus,
  STATUS_DETAILS_HEADER,
  decodeRpcStatus,
  encodeRpcStatus,
} from './rpc-status';

const STATUS_BY_CODE: Record<ErrorCode, grpc.status> = {
  [ErrorCodes.invalidArgument]: grpc.status.INVALID_ARGUMENT,
  [ErrorCodes.notFound]: grpc.status.NOT_FOUND,
  [ErrorCodes.wrongType]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.failedPrecondition]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.resourceExhausted]: grpc.status.RESOURCE_EXHAUSTED,
  [ErrorCodes.dataLoss]: grpc.status.DATA_LOSS,
  [ErrorCodes.cancelled]: grpc.status.CANCELLED,
  [ErrorCodes.unavailable]: grpc.status.UNAVAILABLE,
  [ErrorCodes.outOfRange]: grpc.status.OUT_OF_RANGE,
  [ErrorCodes.permissionDenied]: grpc.status.PERMISSION_DENIED,
  [ErrorCodes.unauthenticated]: grpc.status.UNAUTHENTICATED,
  [ErrorCodes.internal]: grpc.status.INTERNAL,
  [ErrorCodes.moved]: grpc.status.FAILED_PRECONDITION,
  [ErrorCodes.tryAgain]: grpc.status.UNAVAILABLE,
  [ErrorCodes.deadlineExceeded]: grpc.status.DEADLINE_EXCEEDED,
  [ErrorCodes.unimplemented]: grpc.status.UNIMPLEMENTED,
  [ErrorCodes.alreadyExists]: grpc.status.ALREADY_EXISTS,
};

/**
 * Codes that share a status with a more general one: a status maps back to the general
 * one, and the reason (MOVED, TRYAGAIN, WRONGTYPE) restores the narrow one.
 */
const NARROW_CODE_BY_REASON = new Map<ErrorReason, ErrorCode>([
  [ErrorReasons.moved, ErrorCodes.moved],
  [ErrorReasons.tryAgain, ErrorCodes.tryAgain],
  [ErrorReasons.wrongType, ErrorCodes.wrongType],
]);
const NARROW_CODES = new Set<ErrorCode>(NARROW_CODE_BY_REASON.values());

const CODE_BY_STATUS = new Map<grpc.status, ErrorCode>(
  Object.entries(STATUS_BY_CODE)
    .filter(([code]) => !NARROW_CODES.has(code as ErrorCode))
    .map(([code, status]) => [status, code as ErrorCode]),
);

/** gRPC's header for "retry after this many ms", which its retry policies honour. */
export const RETRY_PUSHBACK_HEADER = 'grpc-retry-pushback-ms';

/**
 * The one place where domain errors become gRPC statuses: the code, the message for
 * humans, and a google.rpc.Status in `grpc-status-details-bin` whose ErrorInfo (reason,
 * metadata) and RetryInfo are what programs act on, in any language.
 */
export function toServiceError(error: unknown): Partial<grpc.ServiceError> & { code: grpc.status } {
  // A peer's status passed through (a proxied call) keeps the details the peer sent.
  if (isServiceError(error) && !(error instanceof ShardsnapError)) return relayed(error);
  const domain = asDomainError(error);
  const code = STATUS_BY_CODE[domain.code];
  const metadata = new grpc.Metadata();
  const status: RpcStatus = {
    code,
    message: domain.message,
    errorInfo: { reason: domain.reason, domain: ERROR_DOMAIN, metadata: { ...domain.metadata } },
  };
  if (domain.retryAfterMs !== undefined && Number.isFinite(domain.retryAfterMs)) {
    status.retryDelayMs = domain.retryAfterMs;
    metadata.set(RETRY_PUSHBACK_HEADER, String(Math.max(0, Math.round(domain.retryAfterMs))));
  }
  metadata.set(STATUS_DETAILS_HEADER, encodeRpcStatus(status));
  return { code, details: domain.message, message: domain.message, metadata };
}

function relayed(error: grpc.ServiceError): Partial<grpc.ServiceError> & { code: grpc.status } {
  const metadata = new grpc.Metadata();
  for (const key of [STATUS_DETAILS_HEADER, RETRY_PUSHBACK_HEADER]) {
    for (const value of error.metadata?.get(key) ?? []) metadata.add(key, value);
  }
  return { code: error.code, details: error.details, message: error.details, metadata };
}

/**
 * What the client is told about any failure: a domain error as it is (unless it only
 * wraps a full disk), a full disk as NO_SPACE, anything else as INTERNAL.
 */
function asDomainError(error: unknown): ShardsnapError {
  if (error instanceof ShardsnapError && error.code !== ErrorCodes.internal) return error;
  const full = fullDisk(error);
  if (full) {
    const { path } = full as { path?: unknown };
    const where = typeof path === 'string' ? path : undefined;
    return noSpace(noSpaceMessage(full, where), where);
  }
  if (error instanceof ShardsnapError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new ShardsnapError(ErrorCodes.internal, message, { cause: error });
}

/** The full-disk error in `error`'s chain of causes, if any (a store wraps the binding's). */
function fullDisk(error: unknown): unknown {
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (isNoSpace(e)) return e;
    e = e instanceof Error ? e.cause : undefined;
  }
  return undefined;
}

/**
 * A full disk, wherever it happened (a file write: ENOSPC with its path; RocksDB: its
 * NoSpace status), with the path and the bytes still free there.
 */
function noSpaceMessage(error: unknown, path: string | undefined): string {
  const { message } = error as { message?: unknown };
  let free = '';
  if (path !== undefined) {
    try {
      const fs = statfsSync(dirname(path));
      free = `, ${fs.bavail * fs.bsize} bytes free`;
    } catch {
      // The path's file system cannot be asked: the message goes without the figure.
    }
  }
  return `no space left on the device${path !== undefined ? ` of ${path}` : ''}${free}: ${String(message)}`;
}

/**
 * A gRPC error received by a client, as the domain error the node threw: code, reason,
 * metadata and retry delay come from the status details, never from the message text.
 */
export function fromServiceError(error: unknown, where: string): ShardsnapError {
  if (error instanceof ShardsnapError) return error;
  if (isServiceError(error)) {
    const details = statusDetails(error.metadata);
    const info = details?.errorInfo;
    const reason = info?.reason ? (info.reason as ErrorReason) : undefined;
    const code =
      (reason !== undefined ? NARROW_CODE_BY_REASON.get(reason) : undefined) ??
      CODE_BY_STATUS.get(error.code) ??
      ErrorCodes.internal;
    const retryAfterMs = details?.retryDelayMs ?? pushback(error.metadata);
    return new ShardsnapError(code, `${where}: ${error.details || error.message}`, {
      cause: error,
      ...(reason !== undefined ? { reason } : {}),
      ...(info ? { metadata: info.metadata } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ShardsnapError(ErrorCodes.internal, `${where}: ${message}`, { cause: error });
}

function statusDetails(metadata: grpc.Metadata | undefined): RpcStatus | undefined {
  const [bytes] = metadata?.get(STATUS_DETAILS_HEADER) ?? [];
  return Buffer.isBuffer(bytes) ? decodeRpcStatus(bytes) : undefined;
}

function pushback(metadata: grpc.Metadata | undefined): number | undefined {
  const [value] = metadata?.get(RETRY_PUSHBACK_HEADER) ?? [];
  if (value === undefined) return undefined;
  const ms = Number(value);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

export function isServiceError(error: unknown): error is grpc.ServiceError {
  return (
    typeof error === 'object' &&
    error !== null &&
    'code' in error &&
    typeof error.code === 'number' &&
    'details' in error
  );
}
