/**
 * Runs jobs one at a time, in the order they were queued. A failed job does not stop
 * the jobs after it.
 */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve();
  private queued = 0;

  /** Jobs queued or running. */
  get size(): number {
    return this.queued;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.queued++;
    const result = this.tail.then(job);
    this.tail = result.then(
      () => {
        this.queued--;
      },
      () => {
        this.queued--;
      },
    );
    return result;
  }

  /** Resolves once every job queued so far has finished. */
  idle(): Promise<void> {
    return this.tail;
  }
}
