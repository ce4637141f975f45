import { hostname } from 'node:os';
import type { Lease, Watcher } from 'etcd3';
import { ErrorReasons, abortableSleep, failedPrecondition, throwIfAborted } from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';
import { type Compare, commitIf, putOp } from './txn';

/** Who holds the lead, as written at `/shardsnap/NAME/leader`. */
export interface LeaderIdentity {
  id: string;
  host: string;
  pid: number;
  /** What the controller is doing: move, rebalance, remove-node, controller. */
  purpose: string;
  sinceMs: number;
}

export interface CampaignOptions {
  ttlSeconds: number;
  /** How long to wait for another controller to let go; 0 = refuse at once. */
  waitMs: number;
  signal?: AbortSignal;
}

/**
 * The cluster's leader lease: at most one controller acts at a time. Every write a leader
 * makes carries `fence` (the leader key still has the create revision it wrote), so a
 * controller that lost the lease (paused past its TTL, cut off from etcd) cannot change
 * anything even before it notices.
 */
export class LeaderLease {
  private readonly lostController = new AbortController();

  private constructor(
    private readonly conn: EtcdConnection,
    private readonly keys: ClusterKeys,
    private readonly lease: Lease,
    readonly identity: LeaderIdentity,
    /** The leader key's create revision: the fencing token. */
    readonly token: string,
    private readonly watcher: Watcher | undefined,
  ) {
    lease.on('lost', () => this.lostController.abort(this.lostError('its lease expired')));
    watcher?.on('delete', () =>
      this.lostController.abort(this.lostError('the leader key was removed')),
    );
    watcher?.on('put', (kv) => {
      if (kv.create_revision !== token)
        this.lostController.abort(this.lostError('another controller took it'));
    });
    // A watch etcd cancels (a compacted revision after a disconnect) cannot say any more
    // whether the lead is still ours: give it up; the fence kept every write safe anyway.
    watcher?.on('error', (err) =>
      this.lostController.abort(this.lostError(`the leader key's watch failed: ${err.message}`)),
    );
  }

  static async campaign(
    conn: EtcdConnection,
    keys: ClusterKeys,
    who: { id: string; purpose: string },
    options: CampaignOptions,
  ): Promise<LeaderLease> {
    const identity: LeaderIdentity = {
      id: who.id,
      host: hostname(),
      pid: process.pid,
      purpose: who.purpose,
      sinceMs: Date.now(),
    };
    const giveUpAt = Date.now() + options.waitMs;
    for (;;) {
      throwIfAborted(options.signal);
      const lease = conn.client.lease(options.ttlSeconds);
      try {
        const leaseId = await etcdCall(conn, 'granting the leader lease', () => lease.grant());
        const { succeeded, revision } = await commitIf(
          conn,
          'taking the leader lease',
          [{ key: keys.leader, target: 'Create', op: '==', value: 0 }],
          [putOp(keys.leader, JSON.stringify(identity), leaseId)],
        );
        if (succeeded) {
          const watcher = await etcdCall(conn, 'watching the leader key', () =>
            conn.client.watch().key(keys.leader).create(),
          ).catch(async (error: unknown) => {
            // The key is ours: let it go now rather than make others wait out its TTL.
            await lease.revoke().catch(() => undefined);
            throw error;
          });
          return new LeaderLease(conn, keys, lease, identity, revision, watcher);
        }
      } catch (error) {
        lease.release();
        throw error;
      }
      await lease.revoke().catch(() => lease.release());
      const holder = await currentLeader(conn, keys);
      if (Date.now() >= giveUpAt) {
        throw failedPrecondition(
          holder
            ? `controller ${holder.id} (${holder.purpose}, ${holder.host} pid ${holder.pid}) holds the cluster's leader lease; wait for it to finish, or pass --wait-leader`
            : 'another controller holds the cluster leader lease',
          {
            reason: ErrorReasons.controllerBusy,
            metadata: holder
              ? { holder: holder.id, purpose: holder.purpose, since_ms: holder.sinceMs }
              : {},
          },
        );
      }
      await abortableSleep(Math.min(250, giveUpAt - Date.now()), options.signal, 'campaign');
    }
  }

  /** The compare every write of this leader carries. */
  get fence(): Compare[] {
    return [{ key: this.keys.leader, target: 'Create', op: '==', value: this.token }];
  }

  /** Aborts when the lead is lost. */
  get lost(): AbortSignal {
    return this.lostController.signal;
  }

  private lostError(why: string) {
    return failedPrecondition(`controller ${this.identity.id} lost the leader lease: ${why}`, {
      reason: ErrorReasons.notLeader,
    });
  }

  /** Lets go of the lead (the key goes with the lease). */
  async resign(): Promise<void> {
    await this.watcher?.cancel().catch(() => undefined);
    if (!this.lease.revoked()) await this.lease.revoke().catch(() => this.lease.release());
  }
}

export async function currentLeader(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<LeaderIdentity | undefined> {
  const text = await etcdCall(conn, 'reading the leader key', () =>
    conn.client.get(keys.leader).string(),
  );
  if (text === null) return undefined;
  try {
    return JSON.parse(text) as LeaderIdentity;
  } catch {
    return undefined;
  }
}
