import { ErrorCodes, type ErrorCode, ShardsnapError, cancelled } from '../core';

/** Where a store call failed, appended to its message as `[bucket=…, key=…, offset=…]`. */
export interface S3Context {
  bucket: string;
  key?: string;
  offset?: number;
}

const NOT_FOUND = new Set(['NoSuchBucket', 'NoSuchKey', 'NotFound', 'NoSuchUpload']);
const DENIED = new Set([
  'AccessDenied',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AllAccessDisabled',
  'AccountProblem',
  'CredentialsProviderError',
]);
const UNSUPPORTED = new Set(['NotImplemented', 'MethodNotAllowed']);
const NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
]);

interface AwsLikeError {
  name?: string;
  code?: string;
  Code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

function where(context: S3Context): string {
  const parts = [`bucket=${context.bucket}`];
  if (context.key !== undefined) parts.push(`key=${context.key}`);
  if (context.offset !== undefined) parts.push(`offset=${context.offset}`);
  return parts.join(', ');
}

function classify(e: AwsLikeError): { code: ErrorCode; what: string } {
  const name = e.Code ?? e.name ?? '';
  const status = e.$metadata?.httpStatusCode;
  if (NOT_FOUND.has(name) || status === 404) return { code: ErrorCodes.notFound, what: name };
  if (DENIED.has(name) || status === 403 || status === 401) {
    return { code: ErrorCodes.permissionDenied, what: name || `HTTP ${status}` };
  }
  if (UNSUPPORTED.has(name) || status === 501 || status === 405)
    return { code: ErrorCodes.failedPrecondition, what: `${name}, not supported by this store` };
  if (name === 'InvalidBucketName') return { code: ErrorCodes.invalidArgument, what: name };
  if (name === 'InvalidRange' || status === 416) return { code: ErrorCodes.outOfRange, what: name };
  if (
    NETWORK.has(e.code ?? '') ||
    name === 'TimeoutError' ||
    name === 'RequestTimeout' ||
    name === 'SlowDown' ||
    (status !== undefined && status >= 500)
  ) {
    return { code: ErrorCodes.unavailable, what: name || e.code || `HTTP ${status}` };
  }
  // The SDK gave up without an HTTP answer: the connection failed in some other way.
  if (status === undefined && e.$metadata)
    return { code: ErrorCodes.unavailable, what: name || 'no response' };
  return { code: ErrorCodes.internal, what: name || `HTTP ${status}` };
}

/**
 * An object store failure as a ShardsnapError with a stable code and its context. A
 * failure after `signal` fired is CANCELLED, whatever the client made of it.
 */
export function s3Error(error: unknown, context: S3Context, signal?: AbortSignal): ShardsnapError {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    return reason instanceof ShardsnapError ? reason : cancelled('object store call cancelled');
  }
  if (error instanceof ShardsnapError) return error;
  const e = (typeof error === 'object' && error !== null ? error : {}) as AwsLikeError;
  const { code, what } = classify(e);
  const raw = error instanceof Error ? error.message : String(error);
  // The SDK says "UnknownError" for errors without a body (HEAD); the code says more.
  const detail = raw && raw !== 'UnknownError' ? `: ${raw}` : '';
  let message = `object store: ${what}${detail}`;
  if (code === ErrorCodes.permissionDenied) {
    message += ' (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the bucket policy)';
  } else if (code === ErrorCodes.unavailable) {
    message += ' (object store unreachable; check --s3-endpoint / AWS_ENDPOINT_URL)';
  }
  return new ShardsnapError(code, `${message} [${where(context)}]`, { cause: error });
}
