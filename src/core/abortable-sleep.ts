import { cancelled } from './errors';

/** Waits `ms`; rejects with CANCELLED (`${what} cancelled`) as soon as `signal` aborts. */
export function abortableSleep(
  ms: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(cancelled(`${what} cancelled`));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
