/** An object as listed or looked up. */
export interface StoredObject {
  key: string;
  size: number;
  lastModifiedMs: number;
}

export interface PutOptions {
  /** Total bytes of the body, when known (a stream's progress and part count). */
  size?: number;
  contentType?: string;
  signal?: AbortSignal;
  /** Bytes the store has accepted so far. */
  onProgress?: (bytesUploaded: number) => void;
}

/**
 * One bucket of an object store, reduced to what archives need. Failures are
 * ShardsnapErrors with stable codes: NOT_FOUND (no such bucket or object),
 * PERMISSION_DENIED (credentials refused), UNAVAILABLE (store unreachable after the
 * client's retries), CANCELLED (the signal fired).
 */
export interface ArchiveTarget {
  readonly bucket: string;
  /**
   * Writes an object from a stream of pieces, reading it with backpressure. The object
   * appears only once it is complete; a failed or cancelled put leaves nothing behind
   * that a later put of the same key would trip over.
   */
  put(key: string, body: AsyncIterable<Buffer> | Buffer, options?: PutOptions): Promise<void>;
  /** The bytes of an object from `start` to `end` (inclusive; omitted = to its end). */
  getRange(key: string, start: number, end?: number, signal?: AbortSignal): AsyncIterable<Buffer>;
  /** Size and date of an object; undefined when there is no such object. */
  head(key: string, signal?: AbortSignal): Promise<StoredObject | undefined>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string, signal?: AbortSignal): AsyncIterable<StoredObject>;
  /** Removes an object (removing a missing object is not an error). */
  delete(key: string, signal?: AbortSignal): Promise<void>;
}

/** Opens the buckets of one object store (one client, shared). */
export interface ArchiveTargets {
  open(bucket: string): ArchiveTarget;
  /** Releases the client's connections. */
  close(): void;
}
