import type { Lease } from 'etcd3';
import { abortableSleep, asError } from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';
import type { NodeInfo } from './node-info';
import { commitIf, putOp } from './txn';

export interface RegistrationEvents {
  onRegistered(leaseId: string): void;
  onLost(error: Error): void;
  /** A remove-node deregistered this node: it stays out of the cluster. */
  onRemoved(): void;
}

/**
 * Keeps `/shardsnap/NAME/nodes/<id>` alive under a lease while the node runs. A lost
 * lease (etcd down or the node stalled past the TTL) is taken again as soon as etcd
 * answers; a node that remove-node deregistered does not come back.
 */
export class NodeRegistration {
  private readonly stopping = new AbortController();
  private lease: Lease | undefined;
  private loop: Promise<void> | undefined;
  registered = false;
  removed = false;

  constructor(
    private readonly conn: EtcdConnection,
    private readonly keys: ClusterKeys,
    private readonly info: NodeInfo,
    private readonly ttlSeconds: number,
    private readonly events: RegistrationEvents,
  ) {}

  start(): void {
    this.loop ??= this.keepRegistered();
  }

  private async keepRegistered(): Promise<void> {
    const signal = this.stopping.signal;
    let delayMs = 200;
    while (!signal.aborted && !this.removed) {
      try {
        const { lost } = await this.registerOnce();
        delayMs = 200;
        await lost;
      } catch (error) {
        if (signal.aborted) break;
        this.events.onLost(asError(error));
        await abortableSleep(delayMs, signal, 'registration').catch(() => undefined);
        delayMs = Math.min(delayMs * 2, 5_000);
      }
    }
  }

  /** Registers under a fresh lease; resolves once registered, with a promise of its loss. */
  private async registerOnce(): Promise<{ lost: Promise<void> }> {
    const lease = this.conn.client.lease(this.ttlSeconds);
    this.lease = lease;
    let onLost: (error: Error) => void = () => undefined;
    let onStop: () => void = () => undefined;
    const lost = new Promise<void>((resolve, reject) => {
      onLost = reject;
      onStop = resolve;
      this.stopping.signal.addEventListener('abort', onStop, { once: true });
    }).finally(() => this.stopping.signal.removeEventListener('abort', onStop));
    void lost.catch(() => undefined);
    lease.on('lost', (error) => onLost(error));
    try {
      const leaseId = await etcdCall(this.conn, 'granting the node lease', () => lease.grant());
      const { succeeded } = await commitIf(
        this.conn,
        `registering node ${this.info.id}`,
        [{ key: this.keys.removedNode(this.info.id), target: 'Create', op: '==', value: 0 }],
        [putOp(this.keys.node(this.info.id), JSON.stringify(this.info), leaseId)],
      );
      if (!succeeded) {
        this.removed = true;
        this.registered = false;
        await lease.revoke().catch(() => undefined);
        this.events.onRemoved();
        onStop();
        return { lost: Promise.resolve() };
      }
      this.registered = true;
      this.events.onRegistered(leaseId);
    } catch (error) {
      onStop();
      lease.release();
      throw error;
    }
    return {
      lost: lost.finally(() => {
        this.registered = false;
        lease.release();
      }),
    };
  }

  /** Deregisters at once (revokes the lease) rather than waiting for the TTL. */
  async close(): Promise<void> {
    this.stopping.abort();
    const lease = this.lease;
    if (lease && !lease.revoked()) await lease.revoke().catch(() => undefined);
    await this.loop;
  }
}
