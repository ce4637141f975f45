import { performance } from 'node:perf_hooks';
import { ShardsnapError, abortError } from './errors';

export interface RetryOptions {
  /** Ends the retries, also in the middle of a wait; the rejection is `abortError(signal)`. */
  signal?: AbortSignal;
  /** Attempts in all, the first one included; unlimited when absent. */
  attempts?: number;
  /** No attempt starts later than this after the first one did; unlimited when absent. */
  forMs?: number;
  /** The wait after the first failure; it doubles after each further one. */
  delayMs: number;
  /** The longest wait the doubling reaches; 16 × `delayMs` when absent. */
  maxDelayMs?: number;
  /** Whether another attempt may succeed; any other error is thrown at once. */
  retryable: (error: unknown) => boolean;
  /** Before each wait: a log line, a progress event, or cleanup between attempts (awaited). */
  onRetry?: (error: unknown, attempt: number, waitMs: number) => void | Promise<void>;
}

/**
 * Runs `fn` until it resolves, backing off between retryable failures. A peer's
 * `retryAfterMs` replaces the computed wait: it knows when it can take the call. When the
 * attempts or the time run out, the last error is thrown as it is.
 */
export async function retry<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOptions,
): Promise<T> {
  const { signal } = options;
  const startedAt = performance.now();
  const maxDelayMs = options.maxDelayMs ?? options.delayMs * 16;
  let delayMs = Math.max(0, options.delayMs);
  for (let attempt = 1; ; attempt++) {
    if (signal?.aborted) throw abortError(signal);
    try {
      return await fn(attempt);
    } catch (error) {
      if (!options.retryable(error)) throw error;
      if (signal?.aborted) throw abortError(signal);
      if (options.attempts !== undefined && attempt >= options.attempts) throw error;
      const waitMs = retryAfter(error) ?? delayMs;
      if (options.forMs !== undefined && performance.now() + waitMs - startedAt > options.forMs) {
        throw error;
      }
      await options.onRetry?.(error, attempt, waitMs);
      await wait(waitMs, signal);
      delayMs = Math.min(delayMs * 2, maxDelayMs);
    }
  }
}

function retryAfter(error: unknown): number | undefined {
  if (!(error instanceof ShardsnapError) || error.retryAfterMs === undefined) return undefined;
  return Number.isFinite(error.retryAfterMs) ? Math.max(0, error.retryAfterMs) : undefined;
}

/** Rejects at once when `signal` fires, and leaves no timer or listener behind either way. */
function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal as AbortSignal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
