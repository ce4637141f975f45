import type { Logger } from 'pino';
import type { ChangeLog } from '../changes';
import type { Ownership } from '../ownership';
import type { SnapshotCatalog } from '../snapshot';
import type { Store } from '../store';
import type { StrategyRegistry } from '../strategies';
import type { ClientSecurity } from '../wire/security';
import type { NodeConfig } from './config';
import type { PeerPolicy } from './security/peer-policy';
import type { NodeMetrics } from './metrics';
import type { TopologyAnswer } from './topology-answer';
import type { Transfers } from './transfers';

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
  /** The address this node gives out (MOVED redirects, peers): `--advertise` or the bound one. */
  readonly address: string;
  /** Admission, limits and accounting of snapshot transfers. */
  readonly transfers: Transfers;
  /** How this node dials other nodes. */
  readonly peer: ClientSecurity;
  /** Which addresses this node may dial (undefined = any). */
  readonly peers: PeerPolicy | undefined;
  readonly metrics: NodeMetrics;
  /** Counts one foreground write's latency (metrics, and the adaptive transfer rate). */
  recordWrite(seconds: number): void;
  /** The slot map this node gives clients to route by (the Topology RPC). */
  topology(): TopologyAnswer;
}
