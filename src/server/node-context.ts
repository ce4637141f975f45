import type { Logger } from 'pino';
import type { ChangeLog } from '../changes';
import type { Ownership } from '../ownership';
import type { SnapshotCatalog } from '../snapshot';
import type { Store } from '../store';
import type { StrategyRegistry } from '../strategies';
import type { NodeConfig } from './config';

/** What the services of a node share. */
export interface NodeContext {
  readonly config: NodeConfig;
  readonly store: Store;
  /** The slots this node serves; Write and Read are admitted through it. */
  readonly ownership: Ownership;
  readonly catalog: SnapshotCatalog;
  readonly strategies: StrategyRegistry;
  readonly logger: Logger;
  readonly startedAtMs: number;
  /** Random per start: seqs (and change streams) are only comparable within one. */
  readonly incarnation: string;
  /** The store's recent changes, read by change streams. */
  readonly changeLog: ChangeLog;
}
