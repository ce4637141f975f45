import { invalidArgument } from '../core';
import type { WriteOptions } from './store';

/** The clock reading of each mutation of a batch: the options' readings, or `now()` once. */
export function writeClock(
  options: WriteOptions | undefined,
  count: number,
  now: () => number,
): (index: number) => number {
  const at = options?.atMs;
  if (at === undefined) {
    const reading = now();
    return () => reading;
  }
  if (typeof at === 'number') return () => at;
  if (at.length !== count) {
    throw invalidArgument(`a batch of ${count} mutations got ${at.length} clock readings`);
  }
  const last = at[at.length - 1] ?? now();
  return (index) => at[index] ?? last;
}
