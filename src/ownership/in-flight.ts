const ignore = (): void => undefined;

/** Calls admitted and not yet settled, so that a handoff can wait for them. */
export class InFlight {
  private readonly calls = new Set<Promise<void>>();

  get count(): number {
    return this.calls.size;
  }

  track<T>(call: Promise<T>): Promise<T> {
    const settled = call.then(ignore, ignore);
    this.calls.add(settled);
    void settled.then(() => this.calls.delete(settled));
    return call;
  }

  /** Resolves once the calls tracked so far have settled; later ones are not waited for. */
  drain(): Promise<void> {
    return Promise.all([...this.calls]).then(ignore);
  }
}
