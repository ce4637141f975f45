import type { Logger } from 'pino';
import type { SnapshotCatalog } from '../snapshot';
import type { Store } from '../store';
import type { StrategyRegistry } from '../strategies';
import type { NodeConfig } from './config';

/** What the services of a node share. */
export interface NodeContext {
  readonly config: NodeConfig;
  readonly store: Store;
  readonly catalog: SnapshotCatalog;
  readonly strategies: StrategyRegistry;
  readonly logger: Logger;
  readonly startedAtMs: number;
}
