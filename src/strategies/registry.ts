import { ErrorCodes, ShardsnapError, invalidArgument } from '../core';
import type { Store } from '../store';
import { rocksdbCheckpoint } from './rocksdb-checkpoint';
import { memoryScan, rocksdbIterator } from './view-scan';
import type { BuildRequest, SnapshotStrategy } from './strategy';

/** Strategies by name, and the order in which each backend prefers them. */
export class StrategyRegistry {
  private readonly byName = new Map<string, SnapshotStrategy>();
  private readonly preferences = new Map<string, string[]>();

  register(strategy: SnapshotStrategy): this {
    this.byName.set(strategy.name, strategy);
    return this;
  }

  prefer(backend: string, names: string[]): this {
    this.preferences.set(backend, names);
    return this;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** The named strategy, or the backend's best that supports the request. Fails fast. */
  choose(store: Store, request: BuildRequest, name?: string): SnapshotStrategy {
    if (name) {
      const strategy = this.byName.get(name);
      if (!strategy) {
        throw invalidArgument(`unknown strategy "${name}" (known: ${this.names().join(', ')})`);
      }
      const why = strategy.unsupported(store, request);
      if (why) throw new ShardsnapError(ErrorCodes.failedPrecondition, why);
      return strategy;
    }
    for (const candidate of this.preferences.get(store.backend) ?? this.names()) {
      const strategy = this.byName.get(candidate);
      if (strategy && !strategy.unsupported(store, request)) return strategy;
    }
    throw new ShardsnapError(
      ErrorCodes.failedPrecondition,
      `no snapshot strategy supports backend ${store.backend} for this request`,
    );
  }
}

export function defaultStrategies(): StrategyRegistry {
  return new StrategyRegistry()
    .register(memoryScan)
    .register(rocksdbIterator)
    .register(rocksdbCheckpoint)
    .prefer('memory', ['memory-scan'])
    .prefer('rocksdb', ['rocksdb-checkpoint', 'rocksdb-iterator']);
}
