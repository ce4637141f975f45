import type { ChangeListener, StoreChange } from './store';

/**
 * The `onChange` subscribers of a store. A listener that throws is reported as a process
 * warning and skipped: by the time it runs the change is applied, so failing the write
 * would misreport it, and the other listeners must still see every change.
 */
export class ChangeListeners {
  private readonly listeners = new Set<ChangeListener>();

  add(listener: ChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  emit(change: StoreChange): void {
    if (this.listeners.size === 0) return;
    // A copy: a listener added while this change is delivered starts with the next one.
    for (const listener of [...this.listeners]) {
      try {
        listener(change);
      } catch (error) {
        process.emitWarning(
          `a store change listener threw at seq ${change.seq}: ${(error as Error).message}`,
          { code: 'SHARDSNAP_CHANGE_LISTENER' },
        );
      }
    }
  }
}
