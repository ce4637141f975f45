import { type Client, connectivityState } from '@grpc/grpc-js';
import { ErrorCodes, ShardsnapError, defaultReason } from '../core';

const SERVE_HINT = 'is `shardsnap serve` running there?';

/**
 * Why a connection to a node failed, in a few words, from what the transport said
 * (grpc-js puts the socket's or the resolver's error text into the status details).
 */
const WHY: Array<{ pattern: RegExp; why: string; hint: string }> = [
  { pattern: /ECONNREFUSED/, why: 'connection refused', hint: SERVE_HINT },
  {
    pattern: /Name resolution failed|ENOTFOUND|EAI_AGAIN|EAI_NONAME/,
    why: 'no such host',
    hint: 'is the host name right?',
  },
  { pattern: /EHOSTUNREACH|ENETUNREACH/, why: 'no route to the host', hint: SERVE_HINT },
  { pattern: /ETIMEDOUT|timed out|[Dd]eadline/, why: 'no answer in time', hint: SERVE_HINT },
  {
    pattern:
      /SSL|TLS|certificate|CERT_|handshake|self[- ]signed|ERR_OSSL|wrong version number|packet length/i,
    why: 'TLS handshake failed',
    hint: 'does the node serve TLS, and do --tls-ca, --tls-cert and --tls-key match it?',
  },
  {
    // A TCP connection that closes before HTTP/2 is up: most often a TLS node dialed in
    // plaintext (grpc-js then says only "Failed to connect").
    pattern: /ECONNRESET|EPIPE|Connection dropped|socket hang up|closed|Failed to connect/i,
    why: 'the node closed the connection',
    hint: 'does it serve TLS? then give --tls-ca',
  },
];

/** The first line of a TLS error worth showing (`certificate has expired`, ...). */
const TLS_DETAIL =
  /(self[- ]signed certificate[^.;]*|unable to (?:get|verify)[^.;]*|certificate has expired|Hostname\/IP does not match[^.;]*|wrong version number|certificate required|unknown ca|bad certificate)/i;

/**
 * A failure to reach `address` at all as one plain sentence (code unavailable, metadata
 * `address`), or undefined when the node was reached and answered with this error. The
 * channel tells the two apart: a node that answered leaves it READY, whatever it said.
 */
export function unreachableError(
  error: unknown,
  address: string,
  channel: ReturnType<Client['getChannel']> | undefined,
): ShardsnapError | undefined {
  if (!(error instanceof ShardsnapError)) return undefined;
  if (error.code !== ErrorCodes.unavailable && error.code !== ErrorCodes.deadlineExceeded) {
    return undefined;
  }
  // A reason of its own (TRYAGAIN, SHUTTING_DOWN, ...) means the node said it.
  if (error.reason !== defaultReason(error.code)) return undefined;
  if (channel?.getConnectivityState(false) === connectivityState.READY) return undefined;
  const text = transportText(error);
  const found = WHY.find(({ pattern }) => pattern.test(text));
  const why = found?.why ?? 'no connection';
  const detail = why === 'TLS handshake failed' ? TLS_DETAIL.exec(text)?.[1] : undefined;
  return new ShardsnapError(
    ErrorCodes.unavailable,
    `cannot reach node ${address}: ${why}${detail ? ` (${detail})` : ''} (${found?.hint ?? SERVE_HINT})`,
    { cause: error, metadata: { address } },
  );
}

/** Every message and detail along the cause chain, where the transport's words are. */
function transportText(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; depth++) {
    if (typeof e !== 'object') break;
    const { message, details, cause } = e as {
      message?: unknown;
      details?: unknown;
      cause?: unknown;
    };
    if (typeof message === 'string') parts.push(message);
    if (typeof details === 'string') parts.push(details);
    e = cause;
  }
  return parts.join(' | ');
}
