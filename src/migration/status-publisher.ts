import { performance } from 'node:perf_hooks';
import type { MigrationPhase, MigrationStatus } from './status';

/**
 * A migration's status and its listeners. Every event is a copy; progress within a phase
 * comes at most every `progressEveryMs` (what came between is in the next one).
 */
export class StatusPublisher {
  private readonly listeners = new Set<(status: MigrationStatus) => void>();
  private readonly startedAt = performance.now();
  private lastProgressAt = 0;

  constructor(
    readonly status: MigrationStatus,
    private readonly progressEveryMs: number,
  ) {}

  /** Listens to every status change; returns the unsubscribe. */
  subscribe(listener: (status: MigrationStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit(phase: MigrationPhase, changes: Partial<MigrationStatus> = {}, force = true): void {
    const now = performance.now();
    const { status } = this;
    if (!force && phase === status.phase && now - this.lastProgressAt < this.progressEveryMs) {
      Object.assign(status, changes);
      return;
    }
    this.lastProgressAt = now;
    Object.assign(status, changes, { phase, elapsedMs: Math.round(now - this.startedAt) });
    const snapshot = { ...status, slots: [...status.slots] };
    for (const listener of this.listeners) listener(snapshot);
  }
}
