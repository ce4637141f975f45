import { type ArchiveTargets, isArchiveUri } from '../archive';
import { performance } from 'node:perf_hooks';
import {
  ErrorCodes,
  ShardsnapError,
  abortable,
  invalidArgument,
  isFullRange,
  snapshotInUse,
  throwIfAborted,
} from '../core';
import { MEMORY_DELTA, type SnapshotStrategy, deltaUnsupported, memoryDelta } from '../strategies';
import { pullIntoStore } from '../transfer';
import type { CreateSnapshotRequest__Output } from '../generated/shardsnap/v1/CreateSnapshotRequest';
import type { InstallResult } from '../generated/shardsnap/v1/InstallResult';
import type { SnapshotChunk, SnapshotChunk__Output } from '../generated/shardsnap/v1/SnapshotChunk';
import type { SnapshotsHandlers } from '../generated/shardsnap/v1/Snapshots';
import {
  ArtifactInstaller,
  BufferPool,
  type Lease,
  type SnapshotEntry,
  decodeChunk,
  encodeChunk,
  readArtifact,
  resolveChunkSize,
} from '../snapshot';
import {
  compressionFromWire,
  compressionToWire,
  slotRangesFromWire,
  snapshotInfoToWire,
} from '../wire/convert';
import { archiveService, pullFromArchive } from './archive-service';
import { changesService } from './changes-service';
import { type CallHooks, type Caller, clientStream, serverStream, unary } from './calls';
import { AFTER_SERIALIZE, FRAME_BUFFER, FramePool, type OutgoingChunk } from './chunk-serializer';
import { parseHostPort } from './config';
import { IdleTimer } from './idle-timer';
import { installAdmission } from './install-admission';
import { peerFailure } from './peer-errors';
import { buildOn } from './build-context';
import type { NodeContext } from './node-context';
import { pullDone, pullProgress } from './pull-progress';

/** Read-ahead pieces plus those waiting for the serializer, with a margin. */
const READ_BUFFERS = 8;
const UNSERIALIZED_LIMIT = 3;

/** Counts messages handed to gRPC whose bytes it has not serialized yet. */
class SerializeGate {
  private pending = 0;
  private wake: (() => void) | undefined;

  constructor(private readonly limit: number) {}

  /** One more message; the returned function runs once it has been serialized. */
  enter(then?: () => void): () => void {
    this.pending++;
    return () => {
      this.pending--;
      then?.();
      this.wake?.();
      this.wake = undefined;
    };
  }

  /** Resolves once fewer than `limit` messages wait (at once, or when `signal` aborts). */
  room(signal: AbortSignal): Promise<void> {
    if (this.pending < this.limit || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        signal.removeEventListener('abort', done);
        resolve();
      };
      this.wake = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }
}

/** `--allow-peers`: refused before any connection is opened. */
export async function checkPeer(node: NodeContext, address: string, what: string): Promise<void> {
  if (!node.peers) return;
  try {
    await node.peers.check(address, what);
  } catch (error) {
    node.metrics.rejected('peer_not_allowed');
    throw error;
  }
}

/** The strategy of an incremental snapshot: the only one there is, on memory nodes only. */
function deltaStrategy(node: NodeContext, named: string): SnapshotStrategy {
  const unsupported = deltaUnsupported(node.store);
  if (unsupported) throw unsupported;
  if (named && named !== MEMORY_DELTA) {
    throw invalidArgument(`since_seq is served by strategy ${MEMORY_DELTA} only, not "${named}"`);
  }
  return memoryDelta(node.changeLog);
}

function requireId(id: string): string {
  if (!id) throw invalidArgument('snapshot id is required');
  return id;
}

async function create(
  node: NodeContext,
  request: CreateSnapshotRequest__Output | null,
  caller: Caller,
): Promise<SnapshotEntry> {
  const slots = slotRangesFromWire(request?.slots);
  const full = isFullRange(slots);
  const sinceSeq = request?.sinceSeq;
  const strategy =
    sinceSeq === undefined
      ? node.strategies.choose(node.store, { slots, full }, request?.strategy || undefined)
      : deltaStrategy(node, request?.strategy ?? '');
  return buildOn(
    node,
    {
      strategy,
      slots,
      full,
      compression: compressionFromWire(request?.compression),
      chunkSize: node.config.chunkSize,
      labels: { ...(request?.labels ?? {}) },
      ...(sinceSeq !== undefined ? { sinceSeq } : {}),
    },
    caller,
  );
}

export function snapshotService(
  node: NodeContext,
  hooks: CallHooks,
  archives: ArchiveTargets,
): SnapshotsHandlers {
  return {
    ...archiveService(node, archives, hooks),
    ...changesService(node, hooks),

    CreateSnapshot: unary('CreateSnapshot', hooks, async (request, _signal, caller) =>
      snapshotInfoToWire((await create(node, request, caller)).meta),
    ),

    GetSnapshot: unary('GetSnapshot', hooks, (request) =>
      Promise.resolve(snapshotInfoToWire(node.catalog.get(requireId(request.snapshotId)).meta)),
    ),

    ListSnapshots: unary('ListSnapshots', hooks, () =>
      Promise.resolve({ snapshots: node.catalog.list().map((e) => snapshotInfoToWire(e.meta)) }),
    ),

    DeleteSnapshot: unary('DeleteSnapshot', hooks, async (request, _signal, caller) => {
      const entry = node.catalog.get(requireId(request.snapshotId));
      if (caller && caller.role !== 'admin' && entry.createdBy !== caller.name) {
        throw new ShardsnapError(
          ErrorCodes.permissionDenied,
          `DeleteSnapshot: token "${caller.name}" (${caller.role}) may delete only the snapshots its own calls created; this one needs admin`,
        );
      }
      if (entry.leases > 0 && !request.force) {
        throw snapshotInUse(
          entry.meta.id,
          `snapshot ${entry.meta.id} is being streamed (${entry.leases} streams); delete it once they end, or with force (they finish first)`,
        );
      }
      await node.catalog.delete(entry.meta.id);
      return { deleted: true };
    }),

    FetchSnapshot: serverStream<
      Parameters<SnapshotsHandlers['FetchSnapshot']>[0]['request'],
      SnapshotChunk
    >('FetchSnapshot', hooks, async (request, send, callSignal, caller) => {
      const chunkSize = resolveChunkSize(request.chunkSize || node.config.chunkSize);
      const offset = Number(request.offset);
      const length = Number(request.length);
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
        throw invalidArgument(
          `offset ${request.offset} and length ${request.length} must be below 2^53`,
        );
      }
      const transfer = node.transfers.begin('send', 'FetchSnapshot');
      const startedAt = performance.now();
      let id = request.snapshotId;
      let lease: Lease | undefined;
      let done = false;
      const idle = new IdleTimer(node.config.streamIdleTimeoutMs, 'FetchSnapshot');
      const stream = AbortSignal.any([callSignal, transfer.signal, idle.signal]);
      try {
        // A snapshot made for this call alone goes once the call has it all.
        if (!id) id = (await create(node, request.create, caller)).meta.id;
        lease = node.catalog.lease(id);
        const entry = lease.entry;
        const compression =
          request.compression === 'COMPRESSION_ZSTD' ? 'zstd' : entry.meta.compression;
        let first = true;
        // Read buffers go back to the pool once the serializer has copied them. gRPC queues
        // up to 16 messages before it pushes back; holding a read buffer each, they would
        // drain the pool and make every further chunk a fresh allocation (and V8 mark the
        // heap for it), so at most UNSERIALIZED_LIMIT chunks wait for the serializer.
        const pool = new BufferPool(chunkSize, READ_BUFFERS);
        const waiting = new SerializeGate(UNSERIALIZED_LIMIT);
        const frames = new FramePool(chunkSize + 256);
        const end = length > 0 ? offset + length : undefined;
        const signal = stream;
        for await (const piece of readArtifact(entry, { offset, end, chunkSize, signal, pool })) {
          const chunk = encodeChunk(
            piece.offset,
            piece.data,
            compression,
            chunkSize === entry.meta.chunkSize
              ? entry.storedCrc(piece.offset, piece.data.length)
              : undefined,
          );
          const endsArtifact =
            piece.last &&
            entry.meta.state === 'READY' &&
            piece.offset + piece.data.length === entry.meta.sizeBytes;
          if (chunk.data !== piece.data) piece.release();
          const message: OutgoingChunk = {
            snapshotId: id,
            offset: chunk.offset,
            data: chunk.data,
            crc32c: chunk.crc32c,
            compression: compressionToWire(chunk.compression),
            rawLength: chunk.rawLength,
            last: piece.last,
            sha256: endsArtifact ? entry.meta.sha256 : '',
            info: first ? snapshotInfoToWire(entry.meta) : null,
          };
          const release = chunk.data === piece.data ? piece.release : undefined;
          message[AFTER_SERIALIZE] = waiting.enter(release);
          message[FRAME_BUFFER] = frames.take();
          await transfer.take(chunk.data.length, signal);
          // Armed while the client is waited for: it must keep reading.
          idle.arm();
          await send(message, stream);
          await waiting.room(signal);
          idle.disarm();
          first = false;
        }
        done = true;
      } catch (error) {
        // Stopped by the node (idle client, shutdown): say why, not how the wait noticed.
        const reason: unknown = stream.reason;
        if (stream.aborted && !callSignal.aborted && reason instanceof Error) throw reason;
        throw error;
      } finally {
        idle.disarm();
        lease?.release();
        transfer.end();
        const served = {
          snapshot: id,
          offset,
          bytes: transfer.bytes,
          durationMs: Math.round(performance.now() - startedAt),
        };
        if (done) node.logger.info(served, 'snapshot served');
        else if (stream.aborted) node.logger.info(served, 'snapshot transfer cancelled');
        if (done && id && !request.snapshotId) {
          await node.catalog.delete(id).catch(() => undefined);
        }
      }
    }),

    InstallSnapshot: clientStream<SnapshotChunk__Output, InstallResult>(
      'InstallSnapshot',
      hooks,
      async (messages, callSignal) => {
        const transfer = node.transfers.begin('recv', 'InstallSnapshot');
        const idle = new IdleTimer(node.config.streamIdleTimeoutMs, 'InstallSnapshot');
        const signal = AbortSignal.any([callSignal, transfer.signal, idle.signal]);
        let admission: ReturnType<typeof installAdmission> | undefined;
        const installer = new ArtifactInstaller(node.store, {
          admit: (header) => admission?.admit(header),
        });
        try {
          // A client that stops sending is not waited for past a shutdown's grace.
          // The last chunk's sha256: the install commits once the client has half-closed,
          // so that anything sent after the last chunk is refused rather than ignored.
          let expectedSha256: string | undefined;
          idle.arm();
          for await (const message of abortable(messages, signal)) {
            idle.disarm();
            if (signal.aborted) break;
            if (expectedSha256 !== undefined) {
              throw invalidArgument(
                `install stream continued after its last chunk (offset ${String(message.offset)}); nothing was installed`,
              );
            }
            admission ??= installAdmission(node.ownership, message.force, 'InstallSnapshot');
            await transfer.take(message.data.length, signal);
            const raw = decodeChunk(
              {
                offset: Number(message.offset),
                data: message.data,
                crc32c: message.crc32c,
                compression: compressionFromWire(message.compression),
                rawLength: message.rawLength,
              },
              `install of snapshot=${message.snapshotId || 'unnamed'}`,
              message.snapshotId,
            );
            await installer.push(Number(message.offset), raw);
            if (message.last) {
              if (!message.sha256)
                throw invalidArgument('the last chunk must carry the sha256 of the artifact');
              expectedSha256 = message.sha256;
            }
            idle.arm();
          }
          idle.disarm();
          throwIfAborted(signal);
          if (expectedSha256 !== undefined && admission) {
            const outcome = await installer.finish(expectedSha256);
            await admission.afterCommit();
            node.metrics.installedKeys(outcome.keysInstalled);
            node.logger.info({ ...outcome }, 'snapshot installed');
            return outcome;
          }
          throw new ShardsnapError(
            ErrorCodes.invalidArgument,
            `install stream ended before its last chunk (${installer.bytesReceived} bytes received); nothing was installed`,
          );
        } finally {
          idle.disarm();
          await installer.abort();
          admission?.release();
          transfer.end();
        }
      },
    ),

    PullSnapshot: serverStream('PullSnapshot', hooks, async (request, send, signal) => {
      if (!request.source) throw invalidArgument('source (host:port or s3:// URI) is required');
      if (isArchiveUri(request.source))
        return pullFromArchive(node, archives, request, send, signal);
      parseHostPort(request.source);
      const slots = request.slots.length > 0 ? slotRangesFromWire(request.slots) : [];
      await checkPeer(node, request.source, 'PullSnapshot');
      const transfer = node.transfers.begin('recv', 'PullSnapshot');
      const admission = installAdmission(node.ownership, request.force, 'PullSnapshot');
      const startedAt = performance.now();
      try {
        const outcome = await pullIntoStore(node.store, {
          source: request.source,
          security: node.peer,
          slots,
          snapshotId: request.snapshotId || undefined,
          ...(request.sinceSeq !== undefined && !request.snapshotId
            ? { sinceSeq: request.sinceSeq }
            : {}),
          signal: AbortSignal.any([signal, transfer.signal]),
          throttle: transfer,
          admit: admission.admit,
          onProgress: (p) => void send(pullProgress(p)).catch(() => undefined),
        });
        await admission.afterCommit();
        node.metrics.installedKeys(outcome.keysInstalled);
        node.logger.info(
          {
            ...outcome,
            source: request.source,
            durationMs: Math.round(performance.now() - startedAt),
          },
          'snapshot pulled',
        );
        await send(pullDone(outcome));
      } catch (error) {
        throw peerFailure(node, error, request.source, 'PullSnapshot');
      } finally {
        admission.release();
        transfer.end();
      }
    }),
  };
}
