import {
  type BuildContext,
  type BuildSpec,
  type BuildStatus,
  SpoolFullError,
  startBuild,
} from '../build';
import { ErrorCodes, isShardsnapError } from '../core';
import { CatalogFullError, type SnapshotEntry } from '../snapshot';
import type { Caller } from './calls';
import type { NodeContext } from './node-context';

const BUILD_MESSAGES: Record<BuildStatus, string> = {
  ready: 'snapshot built',
  failed: 'snapshot build failed',
  cancelled: 'snapshot build cancelled',
};

/** How this node builds snapshots: its store and catalog, its spool limit, logs and metrics. */
function buildContext(node: NodeContext): BuildContext {
  return {
    store: node.store,
    catalog: node.catalog,
    nodeId: node.config.nodeId,
    ...(node.config.spoolMaxBytes !== undefined
      ? { spoolMaxBytes: node.config.spoolMaxBytes }
      : {}),
    onError: (error, context) => node.logger.warn({ err: error }, context),
    onFinished: (entry, status, durationMs, bytesWritten) => {
      const { meta } = entry;
      const kind = meta.full ? 'full' : 'slots';
      node.metrics.snapshotFinished(meta.strategy, kind, status, durationMs / 1000);
      node.logger.info(
        {
          snapshot: meta.id,
          strategy: meta.strategy,
          kind,
          seq: meta.seq,
          keys: meta.keyCount,
          bytes: bytesWritten,
          durationMs: Math.round(durationMs),
          ...(status === 'ready' ? {} : { error: meta.error }),
        },
        BUILD_MESSAGES[status],
      );
    },
  };
}

/** Starts a build on `node`; a refusal (spool full, too many builds) is counted. */
export async function buildOn(
  node: NodeContext,
  spec: BuildSpec,
  createdBy?: Caller,
): Promise<SnapshotEntry> {
  try {
    const entry = await startBuild(buildContext(node), spec);
    entry.createdBy = createdBy?.name;
    return entry;
  } catch (error) {
    if (isShardsnapError(error, ErrorCodes.resourceExhausted)) {
      node.metrics.rejected(
        error instanceof SpoolFullError
          ? 'spool_full'
          : error instanceof CatalogFullError
            ? 'too_many_snapshots'
            : 'too_many_builds',
      );
    }
    throw error;
  }
}
