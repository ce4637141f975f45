import { randomBytes } from 'node:crypto';
import {
  type ErrorCode,
  type ErrorReason,
  ErrorCodes,
  ShardsnapError,
  type SlotRange,
  abortableSleep,
  dataLoss,
  deadlineExceeded,
} from '../core';
import { type EtcdConnection, etcdCall } from './etcd';
import type { ClusterKeys } from './keys';
import { commitIf, putOp } from './txn';

/** What an operator asks a long-running controller to do. */
export type RequestedOperation =
  | { op: 'move'; slots: SlotRange[]; to: string; plannedRevision: string; plannedVersion: number }
  | { op: 'rebalance'; by?: 'slots' | 'bytes' }
  | { op: 'remove-node'; node: string };

/** What a move, rebalance or remove-node did (a request's result, the CLI's output). */
export interface OperationResult {
  version: number;
  elapsedMs: number;
  bytes: number;
  maxWritePauseMs: number;
  recovered: { committed: number; aborted: number };
  migrations: Array<{
    id: string;
    slots: SlotRange[];
    from: string;
    to: string;
    committedVersion?: number;
    bytes?: number;
    keys?: number;
    writePauseMs?: number;
  }>;
}

export interface RequestError {
  code: ErrorCode;
  reason: ErrorReason;
  message: string;
  metadata: Record<string, string>;
}

/**
 * An operation queued at `/shardsnap/NAME/requests/<id>`: a controller that holds the lead
 * for good (`shardsnap controller`) takes them oldest first, so `cluster move` and the
 * others work while it runs instead of being refused as busy.
 */
export type OperationRequest = RequestedOperation & {
  id: string;
  state: 'pending' | 'running' | 'done' | 'failed';
  createdAtMs: number;
  updatedAtMs: number;
  /** The run's summary (done) or the error (failed). */
  result?: OperationResult;
  error?: RequestError;
};

export async function submitRequest(
  conn: EtcdConnection,
  keys: ClusterKeys,
  operation: RequestedOperation,
): Promise<OperationRequest> {
  const now = Date.now();
  // Ids sort by time, so the queue's order is the keys' order.
  const id = `r${now.toString(36).padStart(9, '0')}-${randomBytes(3).toString('hex')}`;
  const request: OperationRequest = {
    ...operation,
    id,
    state: 'pending',
    createdAtMs: now,
    updatedAtMs: now,
  };
  await commitIf(
    conn,
    `queueing ${operation.op}`,
    [{ key: keys.request(id), target: 'Create', op: '==', value: 0 }],
    [putOp(keys.request(id), JSON.stringify(request))],
  );
  return request;
}

export async function listRequests(
  conn: EtcdConnection,
  keys: ClusterKeys,
): Promise<OperationRequest[]> {
  const answer = await etcdCall(conn, 'listing requests', () =>
    conn.client.getAll().prefix(keys.requests).exec(),
  );
  return answer.kvs
    .map((kv) => decodeRequest(kv.value.toString('utf8'), kv.key.toString('utf8')))
    .sort((a, b) => a.id.localeCompare(b.id));
}

export async function readRequest(
  conn: EtcdConnection,
  keys: ClusterKeys,
  id: string,
): Promise<OperationRequest | undefined> {
  const text = await etcdCall(conn, `reading request ${id}`, () =>
    conn.client.get(keys.request(id)).string(),
  );
  return text === null ? undefined : decodeRequest(text, keys.request(id));
}

/**
 * Waits until the controller finished the request: resolves with its result, or throws
 * its error as it was recorded (same code, reason and metadata).
 */
export async function awaitRequest(
  conn: EtcdConnection,
  keys: ClusterKeys,
  id: string,
  options: {
    timeoutMs: number;
    signal?: AbortSignal;
    onState?: (request: OperationRequest) => void;
  },
): Promise<OperationResult> {
  const giveUpAt = Date.now() + options.timeoutMs;
  let seen = '';
  for (;;) {
    const request = await readRequest(conn, keys, id);
    if (!request) throw dataLoss(`request ${id} disappeared from etcd`);
    if (request.state !== seen) {
      seen = request.state;
      options.onState?.(request);
    }
    if (request.state === 'done' && request.result) return request.result;
    if (request.state === 'failed') {
      const error = request.error;
      throw new ShardsnapError(
        error?.code ?? ErrorCodes.internal,
        error?.message ?? 'the request failed',
        {
          ...(error?.reason ? { reason: error.reason } : {}),
          ...(error?.metadata ? { metadata: error.metadata } : {}),
        },
      );
    }
    if (Date.now() >= giveUpAt) {
      throw deadlineExceeded(
        `request ${id} was not finished within ${options.timeoutMs} ms (it stays queued)`,
      );
    }
    await abortableSleep(200, options.signal, 'waiting for the controller');
  }
}

function decodeRequest(text: string, key: string): OperationRequest {
  try {
    const request = JSON.parse(text) as OperationRequest;
    if (typeof request.id !== 'string' || typeof request.op !== 'string')
      throw dataLoss('no id or op');
    return request;
  } catch (error) {
    throw dataLoss(`request ${key} is malformed: ${(error as Error).message}`, error);
  }
}
