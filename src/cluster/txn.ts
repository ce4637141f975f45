import type { IOperation } from 'etcd3';
import { type EtcdConnection, etcdCall } from './etcd';

/** One compare of an etcd transaction: `key`'s `target` `op` `value`. */
export interface Compare {
  key: string;
  target: 'Mod' | 'Create' | 'Version' | 'Value' | 'Lease';
  op: '==' | '!=' | '<' | '>';
  value: string | number;
}

export type TxnOp = (conn: EtcdConnection) => IOperation;

export const putOp =
  (key: string, value: string, lease?: string): TxnOp =>
  (conn) => {
    const put = conn.client.put(key).value(value);
    return lease === undefined ? put : put.lease(lease);
  };

export const deleteOp =
  (key: string): TxnOp =>
  (conn) =>
    conn.client.delete().key(key);

/**
 * Runs `ops` when every compare holds, atomically (an etcd transaction). Returns whether
 * it did, and the revision etcd was at (the revision of the writes when it did).
 */
export async function commitIf(
  conn: EtcdConnection,
  what: string,
  compares: readonly Compare[],
  ops: readonly TxnOp[],
): Promise<{ succeeded: boolean; revision: string }> {
  return etcdCall(conn, what, async () => {
    const [first, ...rest] = compares;
    const builder = first
      ? conn.client.if(first.key, first.target, first.op, first.value)
      : conn.client.if('', 'Version', '>', -1);
    for (const c of rest) builder.and(c.key, c.target, c.op, c.value);
    const answer = await builder.then(...ops.map((op) => op(conn))).commit();
    return { succeeded: answer.succeeded, revision: answer.header.revision };
  });
}
