import { invalidArgument } from '../core';

export interface LocalSnapshotScheduleOptions {
  /** A take at the latest this long after the previous one ended (or after `start`). */
  intervalMs: number;
  /** A take as soon as `walBytes()` reaches this (bytes written since the last snapshot). */
  walBytesThreshold: number;
  /** Read every `pollMs` and at every `poke()`; the take is expected to bring it back down. */
  walBytes: () => number;
  take: () => Promise<unknown>;
  /** A failed take (or a throwing `walBytes`); the schedule goes on. */
  onError: (error: unknown) => void;
  /** How often `walBytes()` is read (default 250 ms). */
  pollMs?: number;
}

const DEFAULT_POLL_MS = 250;

/**
 * Triggers local snapshots: every `intervalMs`, or once the WAL grew by
 * `walBytesThreshold` bytes, whichever comes first. The WAL size is polled on a short
 * timer (`pollMs`); a writer that knows it just appended may call `poke()` to have it
 * checked at once. One take at a time: a trigger while a take runs is dropped (the
 * running take covers it, and the WAL size is checked again at the next poll). Timers
 * are unref'd, so a schedule never keeps the process alive.
 */
export class LocalSnapshotSchedule {
  private intervalTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  private readonly pollMs: number;

  constructor(private readonly options: LocalSnapshotScheduleOptions) {
    if (!(options.intervalMs > 0)) throw invalidArgument('intervalMs must be > 0');
    if (!(options.walBytesThreshold > 0)) throw invalidArgument('walBytesThreshold must be > 0');
    this.pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    if (!(this.pollMs > 0)) throw invalidArgument('pollMs must be > 0');
  }

  /** True while a take runs. */
  get busy(): boolean {
    return this.running !== undefined;
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.armInterval();
    this.pollTimer = setInterval(() => this.poke(), this.pollMs);
    this.pollTimer.unref();
  }

  /** Checks the WAL size now (a take starts if it passed the threshold). */
  poke(): void {
    if (!this.started || this.stopped || this.running) return;
    let bytes: number;
    try {
      bytes = this.options.walBytes();
    } catch (error) {
      this.report(error);
      return;
    }
    if (bytes >= this.options.walBytesThreshold) this.fire();
  }

  /** Stops the timers and waits for a take in progress; idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.intervalTimer);
    clearInterval(this.pollTimer);
    this.intervalTimer = undefined;
    this.pollTimer = undefined;
    await this.running;
  }

  /** A throwing `onError` must not stop the schedule nor become an unhandled rejection. */
  private report(error: unknown): void {
    try {
      this.options.onError(error);
    } catch {
      // Nothing else to tell.
    }
  }

  private armInterval(): void {
    clearTimeout(this.intervalTimer);
    this.intervalTimer = setTimeout(() => this.fire(), this.options.intervalMs);
    this.intervalTimer.unref();
  }

  private fire(): void {
    if (this.stopped || this.running) return;
    clearTimeout(this.intervalTimer);
    this.intervalTimer = undefined;
    this.running = this.run();
  }

  private async run(): Promise<void> {
    try {
      await this.options.take();
    } catch (error) {
      this.report(error);
    } finally {
      this.running = undefined;
      // The interval counts from the end of the last take, whatever triggered it.
      if (!this.stopped) this.armInterval();
    }
  }
}
