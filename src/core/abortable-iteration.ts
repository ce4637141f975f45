import { cancelled } from './errors';

/**
 * Iterates `source` until `signal` aborts, even while waiting for its next item (a client
 * that stopped sending): then the source is closed and the signal's reason thrown.
 */
export async function* abortable<T>(
  source: AsyncIterable<T>,
  signal: AbortSignal,
): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  const reason = (): Error =>
    signal.reason instanceof Error ? signal.reason : cancelled('operation cancelled');
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(reason());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  // Rejected only when nothing else is awaited any more: never unhandled.
  aborted.catch(() => undefined);
  let done = false;
  try {
    for (;;) {
      if (signal.aborted) throw reason();
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done) {
        done = true;
        return;
      }
      yield next.value;
    }
  } finally {
    if (onAbort) signal.removeEventListener('abort', onAbort);
    if (!done) void Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}
