import { Readable } from 'node:stream';
import type * as S3 from '@aws-sdk/client-s3';
import type * as S3Storage from '@aws-sdk/lib-storage';
import { ErrorCodes, cancelled, throwIfAborted } from '../core';
import { s3Error } from './s3-errors';
import type { ResolvedS3Settings } from './s3-settings';
import type { ArchiveTarget, ArchiveTargets, PutOptions, StoredObject } from './target';
import { validateBucket } from './uri';

/** S3 allows at most this many parts per multipart upload. */
const MAX_PARTS = 10_000;
const CLEANUP_TIMEOUT_MS = 10_000;
const MIB = 1 << 20;

type S3Client = S3.S3Client;
let loadedSdk: { s3: typeof S3; storage: typeof S3Storage } | undefined;

/**
 * The AWS SDK, loaded on first use: it adds about 20 MiB and a few hundred ms to every
 * process that loads it, and most nodes and commands never talk to S3.
 */
function sdk(): { s3: typeof S3; storage: typeof S3Storage } {
  /* eslint-disable @typescript-eslint/no-require-imports -- a deliberate lazy load */
  loadedSdk ??= {
    s3: require('@aws-sdk/client-s3') as typeof S3,
    storage: require('@aws-sdk/lib-storage') as typeof S3Storage,
  };
  /* eslint-enable @typescript-eslint/no-require-imports */
  return loadedSdk;
}

export type WarningSink = (message: string, error: unknown) => void;

/** The buckets of one S3-compatible store (AWS S3, MinIO, ...), sharing one lazily made client. */
export class S3Targets implements ArchiveTargets {
  private client: S3Client | undefined;

  constructor(
    private readonly settings: ResolvedS3Settings,
    private readonly warn: WarningSink = () => undefined,
  ) {}

  open(bucket: string): ArchiveTarget {
    return new S3Target(this.getClient(), validateBucket(bucket), this.settings, this.warn);
  }

  close(): void {
    this.client?.destroy();
    this.client = undefined;
  }

  private getClient(): S3Client {
    const s = this.settings;
    this.client ??= new (sdk().s3.S3Client)({
      region: s.region,
      forcePathStyle: s.forcePathStyle,
      maxAttempts: s.maxAttempts,
      ...(s.endpoint !== undefined ? { endpoint: s.endpoint } : {}),
      ...(s.credentials ? { credentials: s.credentials } : {}),
      requestHandler: { connectionTimeout: s.connectTimeoutMs, socketTimeout: s.requestTimeoutMs },
      // The SDK's own warnings go where the node's go, not to the console.
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: (...content: unknown[]) =>
          this.warn(`object store client: ${content.map(String).join(' ')}`, undefined),
        error: (...content: unknown[]) =>
          this.warn(`object store client: ${content.map(String).join(' ')}`, undefined),
      },
    });
    return this.client;
  }
}

/**
 * The client as an Upload sees it: every request carries `signal`, so a cancelled call
 * stops the parts in flight too, except the abort of the multipart upload, which must
 * still reach the store.
 */
function withSignal(client: S3Client, signal: AbortSignal | undefined): S3Client {
  if (!signal) return client;
  return new Proxy(client, {
    get(target, property, receiver) {
      if (property !== 'send') return Reflect.get(target, property, receiver) as unknown;
      return (command: unknown, options?: object) =>
        command instanceof sdk().s3.AbortMultipartUploadCommand
          ? target.send(command, options)
          : target.send(command as S3.PutObjectCommand, { ...options, abortSignal: signal });
    },
  });
}

class S3Target implements ArchiveTarget {
  constructor(
    private readonly client: S3Client,
    readonly bucket: string,
    private readonly settings: ResolvedS3Settings,
    private readonly warn: WarningSink,
  ) {}

  async put(
    key: string,
    body: AsyncIterable<Buffer> | Buffer,
    options: PutOptions = {},
  ): Promise<void> {
    const { signal } = options;
    const context = { bucket: this.bucket, key };
    throwIfAborted(signal);
    if (Buffer.isBuffer(body) && body.length < this.settings.partSizeBytes) {
      try {
        await this.client.send(
          new (sdk().s3.PutObjectCommand)({
            Bucket: this.bucket,
            Key: key,
            Body: body,
            ContentType: options.contentType,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw s3Error(error, context, signal);
      }
      options.onProgress?.(body.length);
      return;
    }
    await this.abortUploads(key, signal);
    // A failure of the body (reading the artifact) is the failure to report, not what the
    // upload made of it.
    let bodyFailure: unknown;
    const source = Buffer.isBuffer(body)
      ? Readable.from([body])
      : Readable.from(
          (async function* guarded() {
            // Errors thrown in at the yield (the upload stopped reading) are not the body's.
            let yielding = false;
            try {
              for await (const piece of body) {
                yielding = true;
                yield piece;
                yielding = false;
              }
            } catch (error) {
              if (!yielding) bodyFailure = error;
              throw error;
            }
          })(),
          // One piece buffered ahead: the upload's parts are the only other copies in memory.
          { objectMode: true, highWaterMark: 1 },
        );
    // On cancel the body fails (the parts in flight are cancelled by the same signal, see
    // withSignal): unlike Upload.abort(), whose done() settles at once, done() then settles
    // only after the upload has wound down and sent its AbortMultipartUpload.
    const onAbort = (): void => {
      source.destroy(signal?.reason instanceof Error ? signal.reason : cancelled());
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const partSize = Math.max(
      this.settings.partSizeBytes,
      Math.ceil((options.size ?? 0) / MAX_PARTS / MIB) * MIB,
    );
    const upload = new (sdk().storage.Upload)({
      client: withSignal(this.client, signal),
      params: {
        Bucket: this.bucket,
        Key: key,
        Body: source,
        ContentType: options.contentType,
        ...(options.size !== undefined ? { ContentLength: options.size } : {}),
      },
      partSize,
      queueSize: this.settings.queueSize,
      leavePartsOnError: false,
    });
    // Bytes the store has confirmed: where a failed upload got to.
    let confirmed = 0;
    upload.on('httpUploadProgress', (p) => {
      confirmed = p.loaded ?? confirmed;
      options.onProgress?.(confirmed);
    });
    try {
      await upload.done();
    } catch (error) {
      await this.cleanUp(key);
      if (bodyFailure instanceof Error) throw bodyFailure;
      throw s3Error(error, { ...context, offset: confirmed }, signal);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      source.destroy();
    }
  }

  async *getRange(
    key: string,
    start: number,
    end?: number,
    signal?: AbortSignal,
  ): AsyncGenerator<Buffer> {
    const context = { bucket: this.bucket, key, offset: start };
    const range = start === 0 && end === undefined ? undefined : `bytes=${start}-${end ?? ''}`;
    let body: Readable;
    try {
      const response = await this.client.send(
        new (sdk().s3.GetObjectCommand)({ Bucket: this.bucket, Key: key, Range: range }),
        { abortSignal: signal },
      );
      body = response.Body as Readable;
    } catch (error) {
      throw s3Error(error, context, signal);
    }
    try {
      for await (const piece of body) yield piece as Buffer;
    } catch (error) {
      throw s3Error(error, context, signal);
    } finally {
      body.destroy();
    }
  }

  async head(key: string, signal?: AbortSignal): Promise<StoredObject | undefined> {
    try {
      const response = await this.client.send(
        new (sdk().s3.HeadObjectCommand)({ Bucket: this.bucket, Key: key }),
        { abortSignal: signal },
      );
      return {
        key,
        size: response.ContentLength ?? 0,
        lastModifiedMs: response.LastModified?.getTime() ?? 0,
      };
    } catch (error) {
      const failure = s3Error(error, { bucket: this.bucket, key }, signal);
      if (failure.code === ErrorCodes.notFound) return undefined;
      throw failure;
    }
  }

  async *list(prefix: string, signal?: AbortSignal): AsyncGenerator<StoredObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new (sdk().s3.ListObjectsV2Command)({
            Bucket: this.bucket,
            Prefix: prefix || undefined,
            ContinuationToken: token,
          }),
          { abortSignal: signal },
        );
      } catch (error) {
        throw s3Error(error, { bucket: this.bucket, key: prefix }, signal);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield {
          key: object.Key,
          size: object.Size ?? 0,
          lastModifiedMs: object.LastModified?.getTime() ?? 0,
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(
        new (sdk().s3.DeleteObjectCommand)({ Bucket: this.bucket, Key: key }),
        {
          abortSignal: signal,
        },
      );
    } catch (error) {
      throw s3Error(error, { bucket: this.bucket, key }, signal);
    }
  }

  /**
   * Aborts unfinished multipart uploads of `key` (left by a node that died mid-upload), so
   * their parts stop costing storage. Stores without ListMultipartUploads, or keys not
   * allowed to list uploads, only get a warning: this is housekeeping.
   */
  private async abortUploads(key: string, signal?: AbortSignal): Promise<number> {
    let aborted = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      for (;;) {
        const page = await this.client.send(
          new (sdk().s3.ListMultipartUploadsCommand)({
            Bucket: this.bucket,
            Prefix: key,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
          { abortSignal: signal },
        );
        for (const upload of page.Uploads ?? []) {
          if (upload.Key !== key || !upload.UploadId) continue;
          await this.client.send(
            new (sdk().s3.AbortMultipartUploadCommand)({
              Bucket: this.bucket,
              Key: key,
              UploadId: upload.UploadId,
            }),
            { abortSignal: signal },
          );
          aborted++;
        }
        if (!page.IsTruncated) break;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
    } catch (error) {
      const failure = s3Error(error, { bucket: this.bucket, key }, signal);
      const housekeeping =
        failure.code === ErrorCodes.failedPrecondition ||
        failure.code === ErrorCodes.permissionDenied;
      if (!housekeeping) throw failure;
      this.warn('could not look for unfinished multipart uploads', failure);
    }
    return aborted;
  }

  /** After a failed upload: abort what the upload itself may not have reached the store to abort. */
  private async cleanUp(key: string): Promise<void> {
    try {
      await this.abortUploads(key, AbortSignal.timeout(CLEANUP_TIMEOUT_MS));
    } catch (error) {
      this.warn('could not abort the multipart upload of a failed archive', error);
    }
  }
}
