import { invalidArgument } from '../core';

/** What a node or the CLI is told about its object store; unset fields come from the env. */
export interface S3Settings {
  /** e.g. http://127.0.0.1:9000 for MinIO; default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS. */
  endpoint?: string;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, then us-east-1. */
  region?: string;
  /** Default: true with a custom endpoint, false otherwise. */
  forcePathStyle?: boolean;
  /**
   * Default: the SDK's chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, then profiles
   * and instance roles). Never logged.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Multipart upload part size (≥ 5 MiB); default 8 MiB. */
  partSizeBytes?: number;
  /**
   * Parts uploaded at once; default 2. An upload holds about (queueSize + 2) × partSize
   * plus a few MiB (parts in flight, the one being assembled and its pieces, the reader's
   * read-ahead), whatever the artifact's size.
   */
  queueSize?: number;
  /** Attempts per request (the SDK's retries with backoff); default 3. */
  maxAttempts?: number;
  connectTimeoutMs?: number;
  /** A request with no progress for this long fails (and is retried). */
  requestTimeoutMs?: number;
}

export type ResolvedS3Settings = Required<Omit<S3Settings, 'endpoint' | 'credentials'>> &
  Pick<S3Settings, 'endpoint' | 'credentials'>;

export const MIN_PART_SIZE = 5 << 20;
export const DEFAULT_PART_SIZE = 8 << 20;

export function resolveS3Settings(
  settings: S3Settings = {},
  env: NodeJS.ProcessEnv = process.env,
): ResolvedS3Settings {
  const endpoint =
    settings.endpoint || env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined;
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch (cause) {
      throw invalidArgument(`S3 endpoint "${endpoint}" is not a URL`, cause);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw invalidArgument(`S3 endpoint "${endpoint}" must be http:// or https://`);
  }
  const resolved: ResolvedS3Settings = {
    ...(endpoint !== undefined ? { endpoint } : {}),
    ...(settings.credentials ? { credentials: settings.credentials } : {}),
    region: settings.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || 'us-east-1',
    forcePathStyle: settings.forcePathStyle ?? endpoint !== undefined,
    partSizeBytes: settings.partSizeBytes ?? DEFAULT_PART_SIZE,
    queueSize: settings.queueSize ?? 2,
    maxAttempts: settings.maxAttempts ?? 3,
    connectTimeoutMs: settings.connectTimeoutMs ?? 5_000,
    requestTimeoutMs: settings.requestTimeoutMs ?? 30_000,
  };
  if (!Number.isSafeInteger(resolved.partSizeBytes) || resolved.partSizeBytes < MIN_PART_SIZE)
    throw invalidArgument(`S3 part size must be at least ${MIN_PART_SIZE} bytes (5 MiB)`);
  if (!Number.isInteger(resolved.queueSize) || resolved.queueSize < 1)
    throw invalidArgument('S3 upload queue size must be a positive integer');
  if (!Number.isInteger(resolved.maxAttempts) || resolved.maxAttempts < 1)
    throw invalidArgument('S3 max attempts must be a positive integer');
  return resolved;
}
