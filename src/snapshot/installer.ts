import {
  ErrorCodes,
  ShardsnapError,
  checksumMismatch,
  dataLoss,
  normalizeSlotRanges,
} from '../core';
import {
  type StagedDelta,
  type StagedImage,
  type StagedInstall,
  type Store,
  canInstallDeltas,
  canInstallImages,
} from '../store';
import { FilesDecoder } from './files-format';
import { type ArtifactHeader, tryDecodeHeader } from './format';
import { RecordsDecoder } from './records-decoder';
import { sha256Stream } from './sha256-stream';

export interface InstallOutcome {
  snapshotId: string;
  keysInstalled: number;
  seq: number;
  sha256: string;
  bytes: number;
  /** The artifact's labels (empty when it has none). */
  labels: Record<string, string>;
  /** Set when the artifact was incremental: the seq it applied on top of. */
  baseSeq?: number;
}

/** Stages an incremental artifact: upserts and tombstones, applied together at commit. */
async function beginDelta(store: Store, header: ArtifactHeader): Promise<StagedDelta> {
  if (!canInstallDeltas(store)) {
    throw new ShardsnapError(
      ErrorCodes.unimplemented,
      `a ${store.backend} node cannot install an incremental snapshot (yet); install a full one`,
    );
  }
  return store.beginDeltaInstall({
    slots: normalizeSlotRanges(header.slots),
    full: header.full,
    baseSeq: header.base_seq ?? 0,
    seq: header.seq,
  });
}

/** Where the artifact's bytes go once its header tells its kind. */
interface Sink {
  push(bytes: Buffer): Promise<void>;
  readonly recordsStaged: number;
  finish(): Promise<{ seq: number; keysInstalled: number }>;
  abort(): Promise<void>;
}

/** Records are staged in the store as they arrive (any backend). */
class RecordsSink implements Sink {
  private decoder: RecordsDecoder | undefined;
  private staged: StagedInstall | undefined;
  private delta: StagedDelta | undefined;

  constructor(
    private readonly store: Store,
    private readonly header: ArtifactHeader,
  ) {}

  private async begin(): Promise<StagedInstall> {
    if (this.header.base_seq !== undefined) {
      this.delta = await beginDelta(this.store, this.header);
      return this.delta;
    }
    return this.store.beginInstall({
      slots: normalizeSlotRanges(this.header.slots),
      full: this.header.full,
      seq: this.header.seq,
    });
  }

  get recordsStaged(): number {
    return this.decoder?.recordCount ?? 0;
  }

  async push(bytes: Buffer): Promise<void> {
    this.staged ??= await this.begin();
    // A store that copies what it stages can take records that are views of `bytes`.
    this.decoder ??= new RecordsDecoder({ views: this.staged.copiesRecords === true });
    const records = this.decoder.push(bytes);
    if (records.length > 0) await this.staged.add(records);
    const deleted = this.decoder.takeTombstones();
    if (deleted.length > 0) {
      if (!this.delta) throw dataLoss('a tombstone in an artifact that is not incremental');
      await this.delta.delete(deleted);
    }
  }

  async finish(): Promise<{ seq: number; keysInstalled: number }> {
    if (!this.decoder) throw dataLoss('artifact has no records section');
    this.decoder.finish();
    if (!this.staged) throw dataLoss('artifact has no records section');
    return this.staged.commit();
  }

  async abort(): Promise<void> {
    await this.staged?.abort();
  }
}

/** A checkpoint's files are staged beside the database, which is swapped at the end. */
class FilesSink implements Sink {
  private readonly decoder: FilesDecoder;
  private staged: Promise<StagedImage> | undefined;

  constructor(store: Store) {
    if (!canInstallImages(store)) {
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        `a ${store.backend} node cannot install a "files" artifact (a RocksDB checkpoint); fetch a records snapshot instead`,
      );
    }
    this.decoder = new FilesDecoder(async (file, index, data) => {
      this.staged ??= store.beginImageInstall({
        seq: this.decoder.header?.seq ?? 0,
        files: this.decoder.header?.files ?? [],
      });
      await (await this.staged).write(file, index, data);
    });
  }

  get recordsStaged(): number {
    return 0;
  }

  push(bytes: Buffer): Promise<void> {
    return this.decoder.push(bytes);
  }

  async finish(): Promise<{ seq: number; keysInstalled: number }> {
    this.decoder.finish();
    if (!this.staged) throw dataLoss('files artifact holds no files');
    return (await this.staged).commit();
  }

  async abort(): Promise<void> {
    await (await this.staged?.catch(() => undefined))?.abort();
  }
}

const EMPTY = Buffer.alloc(0);

export interface InstallerOptions {
  /** Sees the artifact's header before anything is staged; throws to refuse the install. */
  admit?: (header: ArtifactHeader) => void | Promise<void>;
}

/**
 * Installs an artifact fed in order, piece by piece: records are staged in the store,
 * checkpoint files beside its database. Nothing is visible until `finish` has checked
 * the SHA-256 of the whole artifact and its trailer. Any failure or `abort` drops what
 * was staged. It keeps no view of the bytes it is given once `push` has resolved.
 */
export class ArtifactInstaller {
  private readonly hash = sha256Stream();
  private received = 0;
  private head: Buffer = EMPTY;
  private sink: Sink | undefined;
  private header: ArtifactHeader | undefined;

  constructor(
    private readonly store: Store,
    private readonly options: InstallerOptions = {},
  ) {}

  /** The artifact's header, once its bytes have arrived. */
  get artifactHeader(): ArtifactHeader | undefined {
    return this.header;
  }

  get bytesReceived(): number {
    return this.received;
  }

  get recordsStaged(): number {
    return this.sink?.recordsStaged ?? 0;
  }

  async push(offset: number, raw: Buffer): Promise<void> {
    if (offset !== this.received) {
      throw new ShardsnapError(
        ErrorCodes.invalidArgument,
        `install chunks must be contiguous from 0: got offset ${offset}, expected ${this.received}`,
      );
    }
    this.received += raw.length;
    this.hash.update(raw);
    if (this.sink) return this.sink.push(raw);
    // A copy: callers may reuse `raw` once this returns (see VerifiedChunk.release).
    const head = Buffer.concat([this.head, raw]);
    const parsed = tryDecodeHeader(head);
    if (!parsed) {
      this.head = head;
      return;
    }
    this.header = parsed.header;
    // Before anything is staged: a refused install leaves no trace.
    await this.options.admit?.(parsed.header);
    this.sink =
      parsed.header.kind === 'files'
        ? new FilesSink(this.store)
        : new RecordsSink(this.store, parsed.header);
    this.head = EMPTY;
    await this.sink.push(head);
  }

  async finish(expectedSha256: string): Promise<InstallOutcome> {
    const sha256 = await this.hash.digest();
    if (sha256 !== expectedSha256.toLowerCase()) {
      throw checksumMismatch(
        `artifact SHA-256 mismatch: got ${sha256}, expected ${expectedSha256}`,
        {
          snapshotId: this.header?.snapshot_id,
          offset: 0,
        },
      );
    }
    if (!this.sink || !this.header) throw dataLoss('artifact ended before its header');
    const { seq, keysInstalled } = await this.sink.finish();
    return {
      snapshotId: this.header.snapshot_id,
      keysInstalled,
      seq,
      sha256,
      bytes: this.received,
      labels: { ...(this.header.labels ?? {}) },
      ...(this.header.base_seq !== undefined ? { baseSeq: this.header.base_seq } : {}),
    };
  }

  /** Drops what was staged; a no-op after a successful `finish`. */
  async abort(): Promise<void> {
    this.hash.discard();
    await this.sink?.abort();
  }
}
