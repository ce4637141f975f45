import * as grpc from '@grpc/grpc-js';
import { type ShardsnapError, abortError, deadlineExceeded, invalidArgument } from '../core/errors';
import { fromServiceError, isServiceError } from './status';

/** How a caller bounds one call. Every client method takes these as its last argument. */
export interface CallOptions {
  /**
   * Ends the call: a plain abort rejects with `cancelled`, a fired `AbortSignal.timeout`
   * with `deadline_exceeded`. A stream that is cancelled releases what the node held for it.
   */
  signal?: AbortSignal;
  /** A timeout for the whole call (for a stream: until its last message), in ms. */
  deadlineMs?: number;
}

/**
 * One call's cancellation: the caller's signal and the call's deadline merged into one
 * signal that every piece of the call (connect wait, gRPC call, retries) watches.
 */
export interface CallScope {
  readonly signal: AbortSignal;
  /** When the call must be over, for gRPC's own deadline; undefined without `deadlineMs`. */
  readonly deadline: Date | undefined;
  /** The error of the fired signal: `deadline_exceeded` or `cancelled`. */
  error(): ShardsnapError;
  /** Options for a call made on behalf of this one: its signal, and what is left of its deadline. */
  inner(): CallOptions;
  /** Runs `cancel` as soon as the signal fires (at once when it already has). */
  onCancel(cancel: () => void): void;
  /** Stops the deadline timer and lets go of the caller's signal. */
  dispose(): void;
}

/** Starts the scope of a call; throws at once when the caller's signal already fired. */
export function callScope(what: string, options: CallOptions = {}): CallScope {
  const { signal: parent, deadlineMs } = options;
  if (parent?.aborted) throw abortError(parent);
  if (deadlineMs !== undefined && !(Number.isFinite(deadlineMs) && deadlineMs > 0)) {
    throw invalidArgument(`${what}: deadlineMs must be a positive number of ms, not ${deadlineMs}`);
  }
  const controller = new AbortController();
  const fromParent = (): void => controller.abort(parent?.reason);
  parent?.addEventListener('abort', fromParent, { once: true });
  const timer =
    deadlineMs === undefined
      ? undefined
      : setTimeout(
          () =>
            controller.abort(deadlineExceeded(`${what}: deadline of ${deadlineMs} ms exceeded`)),
          deadlineMs,
        );
  const { signal } = controller;
  const deadline = deadlineMs === undefined ? undefined : new Date(Date.now() + deadlineMs);
  return {
    signal,
    deadline,
    error: () => abortError(signal),
    inner: () =>
      deadline === undefined
        ? { signal }
        : { signal, deadlineMs: Math.max(1, deadline.getTime() - Date.now()) },
    onCancel(cancel) {
      // The single place where a fired signal turns into a cancelled call.
      if (signal.aborted) cancel();
      else signal.addEventListener('abort', cancel, { once: true });
    },
    dispose() {
      clearTimeout(timer);
      parent?.removeEventListener('abort', fromParent);
    },
  };
}

/**
 * What a call failed with, as the caller should see it: the signal's error once it fired
 * (the gRPC CANCELLED it caused says less), else the node's error as a domain error.
 */
export function callError(scope: CallScope, error: unknown, what: string): ShardsnapError {
  if (scope.signal.aborted) return scope.error();
  // gRPC's own deadline (the one a unary call carries) fired before the scope's timer did.
  if (isServiceError(error) && error.code === grpc.status.DEADLINE_EXCEEDED) {
    return deadlineExceeded(`${what}: deadline exceeded`);
  }
  return fromServiceError(error, what);
}

/**
 * Runs `work` within the scope of one call: it sees the merged signal, and its failure
 * becomes the call's error (see callError). The call settles only once the work has: a
 * cancelled call has let go of what it opened (streams, files) when it rejects.
 */
export async function runCall<T>(
  what: string,
  options: CallOptions,
  work: (scope: CallScope) => Promise<T>,
): Promise<T> {
  const scope = callScope(what, options);
  try {
    return await work(scope);
  } catch (error) {
    throw callError(scope, error, what);
  } finally {
    scope.dispose();
  }
}
