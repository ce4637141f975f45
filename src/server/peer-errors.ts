import { ErrorCodes, ShardsnapError, isShardsnapError } from '../core';
import type { NodeContext } from './node-context';

/**
 * A peer that refuses this node's credentials (its peer token or certificate) is this
 * node's configuration problem, not the caller's: passed through as UNAUTHENTICATED or
 * PERMISSION_DENIED, it would read as "your token is wrong". It becomes
 * FAILED_PRECONDITION naming the peer, and a warning in this node's log.
 */
export function peerFailure(
  node: NodeContext,
  error: unknown,
  peer: string,
  what: string,
): unknown {
  if (
    !isShardsnapError(error, ErrorCodes.unauthenticated) &&
    !isShardsnapError(error, ErrorCodes.permissionDenied)
  ) {
    return error;
  }
  node.logger.warn(
    { peer, code: error.code, message: error.message },
    `${what}: the peer refused this node's credentials (--peer-token-file, --peer-tls-ca)`,
  );
  return new ShardsnapError(
    ErrorCodes.failedPrecondition,
    `${what}: ${peer} refused this node's credentials (${error.code}): ${error.message}`,
    { cause: error },
  );
}
