import type { SlotRange } from '../core';
import type { Store } from '../store';
import type { AbortHandoffResponse__Output } from '../generated/shardsnap/v1/AbortHandoffResponse';
import type { CommitHandoffResponse__Output } from '../generated/shardsnap/v1/CommitHandoffResponse';
import type { PrepareHandoffResponse__Output } from '../generated/shardsnap/v1/PrepareHandoffResponse';
import type { ShardStats__Output } from '../generated/shardsnap/v1/ShardStats';
import { type ChangeStreamBatch, streamChanges } from '../transfer/change-stream';
import { type PullOptions, pullIntoStore } from '../transfer/pull';
import { createSnapshot, deleteRemoteSnapshot } from '../transfer/remote-snapshot';
import { Connection } from '../wire/connection';
import type { CallOptions } from '../wire/call-options';
import { unary } from '../wire/unary';
import type { ClientSecurity } from '../wire/security';

/** Every call to the source takes these (the client's CallOptions); both are optional. */
export type PeerCallOptions = CallOptions;

export interface SourceStats {
  seq: number;
  incarnation: string;
  ownedSlots: SlotRange[];
}

export interface HandoffCommit {
  writePauseMs: number;
  waitedMs: number;
  persistMs: number;
}

// Its own channel with ordinary HTTP/2 windows: while a change feed's buffer is full, the
// stream waits in the source's change log rather than in transport buffers.
const CHANGE_STREAM_CHANNEL_OPTIONS = {
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 20_000,
  'grpc.max_receive_message_length': 64 << 20,
};

/**
 * The calls a migration target makes to its source, typed, on one connection. Errors are
 * domain errors (converted once, where the call ends); a cancelled call rejects with its
 * signal's error rather than with the transport's word for it.
 */
export class SourcePeer {
  constructor(readonly conn: Connection) {}

  static connect(address: string, security?: ClientSecurity): SourcePeer {
    return new SourcePeer(new Connection(address, { security }));
  }

  get address(): string {
    return this.conn.address;
  }

  async stats(options: PeerCallOptions = {}): Promise<SourceStats> {
    const stats = await unary<ShardStats__Output>(
      undefined,
      'Stats',
      (callOptions, cb) => this.conn.shard.Stats({}, callOptions, cb),
      options,
    );
    return {
      seq: Number(stats.seq),
      incarnation: stats.incarnation,
      ownedSlots: stats.ownedSlots.map((r) => ({ start: r.start, end: r.end })),
    };
  }

  /**
   * A slot-range snapshot on the source; resolves with its id and the seq it holds. Not
   * cancellable: a snapshot the source made after a cancel would have no id here to be
   * deleted by.
   */
  async createSnapshot(slots: readonly SlotRange[]): Promise<{ id: string; seq: number }> {
    const info = await createSnapshot(this.conn, { slots: [...slots] });
    return { id: info.id, seq: Number(info.seq) };
  }

  /** Best effort, with a short deadline: a snapshot left behind expires with the source's TTL. */
  deleteSnapshot(id: string): Promise<void> {
    return deleteRemoteSnapshot(this.conn, id);
  }

  /** Fetches a snapshot of the source into a staged install of `store`, on its own session. */
  pull(
    store: Store,
    options: Omit<PullOptions, 'source' | 'security'>,
  ): ReturnType<typeof pullIntoStore> {
    return pullIntoStore(store, {
      ...options,
      source: this.address,
      security: this.conn.security,
    });
  }

  /**
   * The source's changes to `slots` after `fromSeq`, on a channel of their own that is
   * opened on the first read and closed when the iteration ends.
   */
  async *streamChanges(
    request: { slots: readonly SlotRange[]; fromSeq: number; incarnation: string },
    options: Pick<PeerCallOptions, 'signal'> = {},
  ): AsyncGenerator<ChangeStreamBatch> {
    const conn = new Connection(this.address, {
      security: this.conn.security,
      channelOptions: CHANGE_STREAM_CHANNEL_OPTIONS,
    });
    try {
      yield* streamChanges(conn, { ...request, signal: options.signal });
    } finally {
      conn.close();
    }
  }

  /** Pauses writes to `slots` on the source; resolves with the seq that covers them. */
  async prepareHandoff(
    request: { migrationId: string; slots: SlotRange[]; target: string; maxPauseMs: number },
    options: PeerCallOptions = {},
  ): Promise<{ seq: number; incarnation: string }> {
    const prepared = await unary<PrepareHandoffResponse__Output>(
      undefined,
      'PrepareHandoff',
      (callOptions, cb) => this.conn.migration.PrepareHandoff(request, callOptions, cb),
      options,
    );
    return { seq: Number(prepared.seq), incarnation: prepared.incarnation };
  }

  /** Makes a prepared handoff final on the source; a repeated commit answers the same. */
  async commitHandoff(migrationId: string, options: PeerCallOptions = {}): Promise<HandoffCommit> {
    const committed = await unary<CommitHandoffResponse__Output>(
      undefined,
      'CommitHandoff',
      (callOptions, cb) => this.conn.migration.CommitHandoff({ migrationId }, callOptions, cb),
      options,
    );
    return {
      writePauseMs: Number(committed.writePauseMs),
      waitedMs: Number(committed.waitedMs),
      persistMs: Number(committed.persistMs),
    };
  }

  /**
   * Resumes writes on the source; tells whether the handoff had committed. `handedTo`
   * lets the source answer for a handoff whose id it no longer remembers.
   */
  async abortHandoff(
    migrationId: string,
    handedTo: { slots: SlotRange[]; target: string } | undefined,
    options: PeerCallOptions = {},
  ): Promise<{ aborted: boolean; committed: boolean }> {
    const answer = await unary<AbortHandoffResponse__Output>(
      undefined,
      'AbortHandoff',
      (callOptions, cb) =>
        this.conn.migration.AbortHandoff(
          { migrationId, slots: handedTo?.slots ?? [], target: handedTo?.target ?? '' },
          callOptions,
          cb,
        ),
      options,
    );
    return { aborted: answer.aborted, committed: answer.committed };
  }

  close(): void {
    this.conn.close();
  }
}
