import type { Logger } from 'pino';
import { ErrorCodes, ShardsnapError } from '../core';

/** Outcomes a client is told about and nobody on the node needs to act on. */
const EXPECTED = new Set<string>([
  ErrorCodes.notFound,
  ErrorCodes.invalidArgument,
  ErrorCodes.moved,
  ErrorCodes.tryAgain,
  ErrorCodes.cancelled,
  ErrorCodes.unauthenticated,
  ErrorCodes.permissionDenied,
  ErrorCodes.outOfRange,
  ErrorCodes.wrongType,
  ErrorCodes.failedPrecondition,
  ErrorCodes.resourceExhausted,
]);

/**
 * One line per failed call. What the client was told and caused itself (a missing
 * snapshot, a bad argument, a redirect) is one debug line with the code and message, no
 * stack; anything else is a warning with the error and its stack.
 */
export function logCallFailure(logger: Logger, error: unknown, method: string): void {
  if (error instanceof ShardsnapError && EXPECTED.has(error.code)) {
    logger.debug({ method, code: error.code, message: error.message }, 'call refused');
    return;
  }
  logger.warn({ err: error, method }, 'call failed');
}
