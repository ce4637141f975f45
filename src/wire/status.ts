import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { type ErrorCode, ErrorCodes, ShardsnapError, isNoSpace } from '../core';

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
};

/** Codes that share a status with a more general one; a status maps back to the general one. */
const NARROW_CODES = new Set<ErrorCode>([
  ErrorCodes.wrongType,
  ErrorCodes.moved,
  ErrorCodes.tryAgain,
]);

const CODE_BY_STATUS = new Map<grpc.status, ErrorCode>(
  Object.entries(STATUS_BY_CODE)
    .filter(([code]) => !NARROW_CODES.has(code as ErrorCode))
    .map(([code, status]) => [status, code as ErrorCode]),
);

/** gRPC's header for "retry after this many ms", which its retry policies honour. */
export const RETRY_PUSHBACK_HEADER = 'grpc-retry-pushback-ms';

/** The one place where domain errors become gRPC statuses. */
export function toServiceError(error: unknown): Partial<grpc.ServiceError> & { code: grpc.status } {
  if (error instanceof ShardsnapError) {
    const status = {
      code: STATUS_BY_CODE[error.code],
      details: error.message,
      message: error.message,
    };
    if (error.retryAfterMs === undefined) return status;
    const metadata = new grpc.Metadata();
    metadata.set(RETRY_PUSHBACK_HEADER, String(Math.round(error.retryAfterMs)));
    return { ...status, metadata };
  }
  if (isServiceError(error)) return { code: error.code, details: error.details };
  const message = error instanceof Error ? error.message : String(error);
  const noSpace = noSpaceMessage(error);
  if (noSpace) return { code: grpc.status.RESOURCE_EXHAUSTED, details: noSpace, message: noSpace };
  return { code: grpc.status.INTERNAL, details: message, message };
}

/**
 * A full disk, wherever it happened (a file write: ENOSPC with its path; RocksDB: its
 * NoSpace status): RESOURCE_EXHAUSTED with the path and the bytes still free there.
 */
function noSpaceMessage(error: unknown): string | undefined {
  if (!isNoSpace(error)) return undefined;
  const { path, message } = error as { path?: unknown; message?: unknown };
  let free = '';
  if (typeof path === 'string') {
    try {
      const fs = statfsSync(dirname(path));
      free = `, ${fs.bavail * fs.bsize} bytes free`;
    } catch {
      // The path's file system cannot be asked: the message goes without the figure.
    }
  }
  return `no space left on the device${typeof path === 'string' ? ` of ${path}` : ''}${free}: ${String(message)}`;
}

/** A gRPC error received by a client, as a domain error with the same meaning. */
export function fromServiceError(error: unknown, where: string): ShardsnapError {
  if (error instanceof ShardsnapError) return error;
  if (isServiceError(error)) {
    // A deadline that passed means the peer did not answer in time: retryable, like UNAVAILABLE.
    const code =
      error.code === grpc.status.DEADLINE_EXCEEDED
        ? ErrorCodes.unavailable
        : (CODE_BY_STATUS.get(error.code) ?? ErrorCodes.internal);
    const [pushback] = error.metadata?.get(RETRY_PUSHBACK_HEADER) ?? [];
    const retryAfterMs = pushback === undefined ? undefined : Number(pushback);
    return new ShardsnapError(code, `${where}: ${error.details || error.message}`, {
      cause: error,
      ...(retryAfterMs !== undefined && Number.isFinite(retryAfterMs) ? { retryAfterMs } : {}),
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ShardsnapError(ErrorCodes.internal, `${where}: ${message}`, { cause: error });
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
