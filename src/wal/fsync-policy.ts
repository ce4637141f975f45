/**
 * The `everysec` policy's background fsync: at most once a second, and only when something
 * was written since the last one. The timer never keeps the process alive.
 */
export class PeriodicSync {
  private dirty = false;
  private running: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly sync: () => Promise<void>,
    intervalMs = 1000,
  ) {
    this.timer = setInterval(() => this.tick(), intervalMs);
    this.timer.unref();
  }

  /** Something reached the OS that is not on the disk yet. */
  markDirty(): void {
    this.dirty = true;
  }

  /** A foreground fsync (rotation, close) covered everything written so far. */
  markClean(): void {
    this.dirty = false;
  }

  /** Resolves when no background fsync is running (before the file it syncs is closed). */
  async idle(): Promise<void> {
    await this.running;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    if (!this.dirty || this.running) return;
    this.dirty = false;
    // `sync` reports its own failure: the promise kept here never rejects.
    this.running = this.sync()
      .catch(() => undefined)
      .finally(() => {
        this.running = undefined;
      });
  }
}
