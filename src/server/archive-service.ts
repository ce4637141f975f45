import {
  type ArchiveRecord,
  type ArchiveTargets,
  archiveSnapshot,
  archiveUri,
  deleteArchive,
  listArchives,
  parseArchiveUri,
  summarizeArchive,
} from '../archive';
import { invalidArgument } from '../core';
import { type InstallResultWithResumes, restoreArchive } from '../transfer';
import type { ArchiveProgress } from '../generated/shardsnap/v1/ArchiveProgress';
import type { PullProgress } from '../generated/shardsnap/v1/PullProgress';
import type { PullSnapshotRequest__Output } from '../generated/shardsnap/v1/PullSnapshotRequest';
import type { SnapshotsHandlers } from '../generated/shardsnap/v1/Snapshots';
import { type CallHooks, serverStream, unary } from './calls';
import type { NodeContext } from './node-context';
import { installAdmission } from './install-admission';
import { pullDone, pullProgress } from './pull-progress';

type ArchiveHandlers = Pick<
  SnapshotsHandlers,
  'ArchiveSnapshot' | 'ListArchives' | 'DeleteArchive'
>;

function required(value: string, name: string): string {
  if (!value) throw invalidArgument(`${name} is required`);
  return value;
}

/**
 * Progress for a stream that must not fall behind its work: only the latest message
 * waits while one is being sent, so a slow client costs nothing but skipped updates.
 */
function latestOnly<T>(send: (message: T) => Promise<void>): {
  offer(message: T): void;
  drain(): Promise<void>;
} {
  let pending: T | undefined;
  let inflight: Promise<void> | undefined;
  const pump = async (): Promise<void> => {
    try {
      while (pending !== undefined) {
        const message = pending;
        pending = undefined;
        await send(message);
      }
    } catch {
      // The call is gone; the work notices through its signal.
      pending = undefined;
    } finally {
      inflight = undefined;
    }
  };
  return {
    offer(message) {
      pending = message;
      inflight ??= pump();
    },
    async drain() {
      await inflight;
    },
  };
}

export function archiveService(
  node: NodeContext,
  archives: ArchiveTargets,
  hooks: CallHooks,
): ArchiveHandlers {
  return {
    ArchiveSnapshot: serverStream<
      Parameters<SnapshotsHandlers['ArchiveSnapshot']>[0]['request'],
      ArchiveProgress
    >('ArchiveSnapshot', hooks, async (request, send, signal) => {
      const id = required(request.snapshotId, 'snapshot_id');
      const target = archives.open(required(request.bucket, 'bucket'));
      const progress = latestOnly(send);
      const started = Date.now();
      const transfer = node.transfers.begin('send', 'ArchiveSnapshot');
      let record: ArchiveRecord;
      try {
        record = await archiveSnapshot(node.catalog, id, target, {
          prefix: request.prefix,
          signal: AbortSignal.any([signal, transfer.signal]),
          throttle: transfer,
          onProgress: (bytesUploaded, totalBytes) =>
            progress.offer({ bytesUploaded, totalBytes, done: false }),
        });
      } finally {
        transfer.end();
      }
      await progress.drain();
      node.logger.info(
        {
          snapshot: id,
          uri: archiveUri(record.location),
          bytes: record.manifest.size,
          durationMs: Date.now() - started,
        },
        'snapshot archived',
      );
      await send({
        bytesUploaded: record.manifest.size,
        totalBytes: record.manifest.size,
        done: true,
        info: summarizeArchive(record),
      });
    }),

    ListArchives: unary('ListArchives', hooks, async (request, signal) => {
      const target = archives.open(required(request.bucket, 'bucket'));
      const records = await listArchives(target, request.prefix, {
        signal,
        onSkip: (key, error) =>
          node.logger.warn({ err: error, key }, 'unreadable archive manifest'),
      });
      return { archives: records.map(summarizeArchive) };
    }),

    DeleteArchive: unary('DeleteArchive', hooks, async (request, signal) => {
      const location = parseArchiveUri(required(request.uri, 'uri'));
      await deleteArchive(archives.open(location.bucket), location, signal);
      node.logger.info({ uri: archiveUri(location) }, 'archive deleted');
      return { deleted: true };
    }),
  };
}

/** PullSnapshot from an archive (`source` = s3://bucket/<dir>/manifest.json). */
export async function pullFromArchive(
  node: NodeContext,
  archives: ArchiveTargets,
  request: PullSnapshotRequest__Output,
  send: (message: PullProgress) => Promise<void>,
  signal: AbortSignal,
): Promise<void> {
  if (request.slots.length > 0 || request.snapshotId) {
    throw invalidArgument('an archive is restored whole: slots and snapshot_id must be empty');
  }
  const progress = latestOnly(send);
  const transfer = node.transfers.begin('recv', 'PullSnapshot from an archive');
  const admission = installAdmission(node.ownership, request.force, 'PullSnapshot');
  let outcome: InstallResultWithResumes;
  try {
    outcome = await restoreArchive(node.store, archives, request.source, {
      signal: AbortSignal.any([signal, transfer.signal]),
      throttle: transfer,
      admit: admission.admit,
      onRetry: (error, offset, attempt) =>
        node.logger.warn({ err: error, offset, attempt }, 'archive download resumes'),
      onProgress: (p) => progress.offer(pullProgress(p)),
    });
    await admission.afterCommit();
  } finally {
    admission.release();
    transfer.end();
  }
  node.metrics.installedKeys(outcome.keysInstalled);
  await progress.drain();
  node.logger.info({ ...outcome, source: request.source }, 'archive restored');
  await send(pullDone(outcome));
}
