import { ErrorCodes, ShardsnapError, invalidArgument } from '../core';
import type { ChangeBatch } from '../generated/shardsnap/v1/ChangeBatch';
import type { SnapshotsHandlers } from '../generated/shardsnap/v1/Snapshots';
import type { StreamChangesRequest__Output } from '../generated/shardsnap/v1/StreamChangesRequest';
import { mutationsToWire, slotRangesFromWire } from '../wire/convert';
import { type CallHooks, serverStream } from './calls';
import type { NodeContext } from './node-context';

function fromSeqOf(request: StreamChangesRequest__Output): number {
  const seq = Number(request.fromSeq ?? 0);
  if (!Number.isSafeInteger(seq) || seq < 0) {
    throw invalidArgument(`from_seq ${String(request.fromSeq)} is not a usable seq`);
  }
  return seq;
}

/** Seqs restart with the node's history: a stream asked for another run cannot continue. */
function checkIncarnation(node: NodeContext, asked: string | undefined): void {
  if (!asked || asked === node.incarnation) return;
  throw new ShardsnapError(
    ErrorCodes.failedPrecondition,
    `this node restarted (incarnation ${node.incarnation}, asked for ${asked}); ` +
      'its seqs belong to another history, take a new snapshot',
  );
}

/** `Snapshots.StreamChanges`, merged into the Snapshots service. */
export function changesService(
  node: NodeContext,
  hooks: CallHooks,
): Pick<SnapshotsHandlers, 'StreamChanges'> {
  return {
    StreamChanges: serverStream<StreamChangesRequest__Output, ChangeBatch>(
      'StreamChanges',
      hooks,
      async (request, send, signal) => {
        const slots = slotRangesFromWire(request.slots);
        const fromSeq = fromSeqOf(request);
        checkIncarnation(node, request.incarnation);
        // `send` waits while the client reads slowly, and the log advances only when pulled.
        for await (const batch of node.changeLog.changes(slots, fromSeq, signal)) {
          await send({
            seq: batch.seq,
            mutations: mutationsToWire(batch.mutations),
            headSeq: batch.headSeq,
            incarnation: node.incarnation,
            appliedAtMs: batch.atMs,
          });
        }
      },
    ),
  };
}
