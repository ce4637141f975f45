import { ErrorCodes, ErrorReasons, ShardsnapError } from '../core';

export const failedPrecondition = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, message, { cause });

/**
 * How long a client should wait before it retries a key of a slot being handed over: a
 * handoff pauses a slot for milliseconds, so a short wait is usually enough.
 */
export const TRY_AGAIN_RETRY_MS = 10;

/**
 * The slot's owner is another node: clients retry at `address` (ErrorInfo metadata).
 * The message keeps Redis Cluster's words for humans; programs read the metadata.
 */
export const moved = (slot: number, owner: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.moved, `MOVED ${slot} ${owner}`, {
    reason: ErrorReasons.moved,
    metadata: { slot, address: owner },
  });

/** The slot is paused for a handoff: clients retry here after RetryInfo's delay. */
export const tryAgain = (slot: number): ShardsnapError =>
  new ShardsnapError(ErrorCodes.tryAgain, 'TRYAGAIN', {
    reason: ErrorReasons.tryAgain,
    metadata: { slot },
    retryAfterMs: TRY_AGAIN_RETRY_MS,
  });

/** Neither this node nor any node it knows of serves the slot. */
export const notServed = (slot: number): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, `slot ${slot} is not served by this node`, {
    reason: ErrorReasons.slotsNotOwned,
    metadata: { slot },
  });
