import { type Mutation, ShardsnapError, invalidArgument, type StoreRecord } from '../core';
import type { DeltaTarget, InstallTarget } from '../store';
import type { DeltaChanges } from '../store/memory/staged-delta';
import type { MemoryJournal } from '../store/memory/journal';
import type { Wal } from '../wal';
import {
  JournalKinds,
  encodeDelta,
  encodeExpired,
  encodeInstallCommit,
  encodeInstallPart,
  encodeWrite,
} from './journal-codec';
import { PayloadPool } from './payload-pool';

/** The WAL's limit on a record's body (seq and kind take 9 bytes of it). */
const MAX_PAYLOAD_BYTES = 1024 ** 3 - 9;

/**
 * The memory store's journal over a WAL. The WAL's seq field is a log position (lsn) kept
 * here, one per record: the store's seq cannot serve, since a full install moves it to
 * the artifact's seq, backwards as well as forwards.
 */
export class WalJournal implements MemoryJournal {
  private readonly installPayloads = new PayloadPool();

  constructor(
    private readonly wal: Wal,
    /** The lsn of the last record (of the log, or of the snapshot the node started from). */
    private lsn: number,
  ) {}

  /** Position of the last record appended: a snapshot opened now covers every record up to it. */
  get position(): number {
    return this.lsn;
  }

  check(): void {
    const failure = this.wal.failure;
    if (!failure) return;
    throw new ShardsnapError(
      failure.code,
      `writes are refused until the write-ahead log can be written again (reads still work): ${failure.message}`,
      { cause: failure, reason: failure.reason, metadata: failure.metadata },
    );
  }

  write(batch: {
    mutations: readonly Mutation[];
    atMs: number | readonly number[];
    seq: number;
  }): Promise<void> {
    return this.append(JournalKinds.write, encodeWrite(batch.seq, batch.atMs, batch.mutations));
  }

  installPart(
    installId: bigint,
    target: InstallTarget,
    records: readonly StoreRecord[],
  ): Promise<void> {
    let release: (() => void) | undefined;
    const payload = encodeInstallPart(installId, target, records, (length) => {
      const taken = this.installPayloads.take(length);
      release = taken.release;
      return taken.payload;
    });
    return this.append(JournalKinds.installPart, payload, release);
  }

  installCommit(
    installId: bigint,
    commit: { target: InstallTarget; recordCount: number; seq: number },
  ): Promise<void> {
    return this.append(JournalKinds.installCommit, encodeInstallCommit(installId, commit));
  }

  delta(change: {
    target: DeltaTarget;
    changes: DeltaChanges;
    atMs: number;
    seq: number;
  }): Promise<void> {
    const { target, changes } = change;
    return this.append(
      JournalKinds.delta,
      encodeDelta({
        target: {
          slots: target.slots,
          full: target.full,
          seq: target.seq,
          baseSeq: target.baseSeq,
        },
        seq: change.seq,
        atMs: change.atMs,
        upserts: changes.upserts,
        deletes: changes.deletes,
      }),
    );
  }

  expired(keys: readonly Buffer[]): Promise<void> {
    return this.append(JournalKinds.expired, encodeExpired(keys));
  }

  private append(kind: number, payload: Buffer, release?: () => void): Promise<void> {
    try {
      this.check();
    } catch (error) {
      release?.();
      throw error;
    }
    // Refused here, before the store applies anything and before an lsn is spent (a
    // skipped lsn would read as a gap at the next start).
    if (payload.length > MAX_PAYLOAD_BYTES) {
      release?.();
      throw invalidArgument(
        `a change of ${payload.length} bytes is larger than the write-ahead log takes (${MAX_PAYLOAD_BYTES})`,
      );
    }
    this.lsn++;
    return this.wal.append({ seq: this.lsn, kind, payload, release });
  }
}
