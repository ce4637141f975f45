import type { Mutation, SlotRange } from '../core';
import type { ChangeBatch__Output } from '../generated/shardsnap/v1/ChangeBatch';
import { mutationsFromWire } from '../wire/convert';
import { fromServiceError } from '../wire/status';
import type { Connection } from '../wire/connection';

export interface StreamChangesOptions {
  /** Empty (or absent) = every slot. */
  slots?: readonly SlotRange[];
  /** The stream starts after this seq (a snapshot's seq, or the last one applied). */
  fromSeq: number;
  /** The node's incarnation the seqs belong to (ShardStats.incarnation); unset = any. */
  incarnation?: string;
  signal?: AbortSignal;
}

/** One write batch of the node in the requested slots; without mutations, a progress marker. */
export interface ChangeStreamBatch {
  seq: number;
  mutations: Mutation[];
  headSeq: number;
  incarnation: string;
  /** The source's clock reading for the batch; replay with it (`Store.write`'s `atMs`). */
  atMs: number;
}

/**
 * The node's changes to `slots` after `fromSeq`, in seq order, until cancelled. Fails with
 * OUT_OF_RANGE when the node's change log does not hold them (take a new snapshot), with
 * FAILED_PRECONDITION when the node restarted or an install replaced the slots.
 */
export async function* streamChanges(
  conn: Connection,
  options: StreamChangesOptions,
): AsyncGenerator<ChangeStreamBatch> {
  const stream = conn.snapshots.StreamChanges({
    slots: [...(options.slots ?? [])],
    fromSeq: options.fromSeq,
    incarnation: options.incarnation ?? '',
  });
  const onAbort = (): void => stream.cancel();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const batch of stream as AsyncIterable<ChangeBatch__Output>) {
      yield {
        seq: Number(batch.seq),
        // A progress marker has none, which a write request would refuse.
        mutations: batch.mutations.length > 0 ? mutationsFromWire(batch.mutations) : [],
        headSeq: Number(batch.headSeq),
        incarnation: batch.incarnation,
        atMs: Number(batch.appliedAtMs),
      };
    }
  } catch (error) {
    throw fromServiceError(error, 'StreamChanges');
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    stream.cancel();
  }
}
