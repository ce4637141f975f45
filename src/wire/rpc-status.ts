import { dirname, join } from 'node:path';
import * as protobuf from 'protobufjs';
import { protoPath } from './proto';

/** The binary trailer of a google.rpc.Status, which gRPC libraries of every language read. */
export const STATUS_DETAILS_HEADER = 'grpc-status-details-bin';

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const ERROR_INFO = 'google.rpc.ErrorInfo';
const RETRY_INFO = 'google.rpc.RetryInfo';

/** The parts of a google.rpc.Status that shardsnap sends and reads. */
export interface RpcStatus {
  code: number;
  message: string;
  errorInfo?: { reason: string; domain: string; metadata: Record<string, string> };
  /** RetryInfo's delay, in milliseconds. */
  retryDelayMs?: number;
}

interface RpcTypes {
  status: protobuf.Type;
  errorInfo: protobuf.Type;
  retryInfo: protobuf.Type;
}

let types: RpcTypes | undefined;

/** Loaded once, from the .proto files that ship beside shardsnap's own. */
function rpcTypes(): RpcTypes {
  if (types) return types;
  const protoDir = join(dirname(protoPath()), '..', '..');
  const root = new protobuf.Root();
  // protobufjs bundles the well-known google/protobuf types; ours live under proto/.
  root.resolvePath = (_origin, target) =>
    target.startsWith('google/protobuf/') ? target : join(protoDir, target);
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto']);
  root.resolveAll();
  types = {
    status: root.lookupType('google.rpc.Status'),
    errorInfo: root.lookupType(ERROR_INFO),
    retryInfo: root.lookupType(RETRY_INFO),
  };
  return types;
}

export function encodeRpcStatus(status: RpcStatus): Buffer {
  const t = rpcTypes();
  const details: { type_url: string; value: Uint8Array }[] = [];
  if (status.errorInfo) {
    details.push({
      type_url: TYPE_URL_PREFIX + ERROR_INFO,
      value: t.errorInfo.encode(t.errorInfo.fromObject(status.errorInfo)).finish(),
    });
  }
  if (status.retryDelayMs !== undefined && Number.isFinite(status.retryDelayMs)) {
    const ms = Math.max(0, Math.round(status.retryDelayMs));
    const retryDelay = { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
    details.push({
      type_url: TYPE_URL_PREFIX + RETRY_INFO,
      value: t.retryInfo.encode(t.retryInfo.fromObject({ retryDelay })).finish(),
    });
  }
  const message = t.status.fromObject({ code: status.code, message: status.message, details });
  return Buffer.from(t.status.encode(message).finish());
}

const TO_OBJECT: protobuf.IConversionOptions = {
  longs: Number,
  defaults: true,
  arrays: true,
  objects: true,
};

/**
 * The Status in `bytes`, or undefined when they are not one (a peer that sends
 * something else under the header must not turn a clear status into a decoding error).
 * Details of other types are skipped, as the first of each known type is used.
 */
export function decodeRpcStatus(bytes: Uint8Array): RpcStatus | undefined {
  const t = rpcTypes();
  let decoded: {
    code: number;
    message: string;
    details: { type_url: string; value: Uint8Array }[];
  };
  try {
    decoded = t.status.toObject(t.status.decode(bytes), TO_OBJECT) as typeof decoded;
  } catch {
    return undefined;
  }
  const status: RpcStatus = { code: decoded.code, message: decoded.message };
  for (const detail of decoded.details) {
    const type = detail.type_url.slice(detail.type_url.lastIndexOf('/') + 1);
    try {
      if (type === ERROR_INFO && !status.errorInfo) {
        status.errorInfo = t.errorInfo.toObject(
          t.errorInfo.decode(detail.value),
          TO_OBJECT,
        ) as NonNullable<RpcStatus['errorInfo']>;
      } else if (type === RETRY_INFO && status.retryDelayMs === undefined) {
        const { retryDelay } = t.retryInfo.toObject(t.retryInfo.decode(detail.value), {
          longs: Number,
        }) as { retryDelay?: { seconds?: number; nanos?: number } };
        if (retryDelay) {
          status.retryDelayMs = (retryDelay.seconds ?? 0) * 1000 + (retryDelay.nanos ?? 0) / 1e6;
        }
      }
    } catch {
      // One undecodable detail does not hide the others.
    }
  }
  return status;
}
