import { ErrorCodes, ShardsnapError, dataLoss, normalizeSlotRanges } from '../core';
import type { StagedInstall, Store } from '../store';
import { RecordsDecoder } from './records-decoder';
import { sha256Stream } from './sha256-stream';

export interface InstallOutcome {
  snapshotId: string;
  keysInstalled: number;
  seq: number;
  sha256: string;
  bytes: number;
}

/**
 * Installs a records artifact fed in order, piece by piece. Records are staged in the
 * store as they arrive; nothing is visible until `finish` has checked the SHA-256 of the
 * whole artifact and its trailer. Any failure or `abort` drops what was staged.
 */
export class ArtifactInstaller {
  private readonly decoder = new RecordsDecoder();
  private readonly hash = sha256Stream();
  private received = 0;
  private staged: StagedInstall | undefined;

  constructor(private readonly store: Store) {}

  get bytesReceived(): number {
    return this.received;
  }

  get recordsStaged(): number {
    return this.decoder.recordCount;
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
    const records = this.decoder.push(raw);
    if (!this.staged && this.decoder.header) {
      const header = this.decoder.header;
      if (header.kind !== 'records') {
        throw new ShardsnapError(
          ErrorCodes.failedPrecondition,
          `a ${this.store.backend} node cannot install a "${header.kind}" artifact`,
        );
      }
      this.staged = await this.store.beginInstall({
        slots: normalizeSlotRanges(header.slots),
        full: header.full,
        seq: header.seq,
      });
    }
    if (records.length > 0) await this.staged?.add(records);
  }

  async finish(expectedSha256: string): Promise<InstallOutcome> {
    const sha256 = await this.hash.digest();
    if (sha256 !== expectedSha256.toLowerCase()) {
      throw dataLoss(`artifact SHA-256 mismatch: got ${sha256}, expected ${expectedSha256}`);
    }
    const { header } = this.decoder.finish();
    if (!this.staged) throw dataLoss('artifact has no records section');
    const { seq, keysInstalled } = await this.staged.commit();
    return { snapshotId: header.snapshot_id, keysInstalled, seq, sha256, bytes: this.received };
  }

  /** Drops what was staged; a no-op after a successful `finish`. */
  async abort(): Promise<void> {
    this.hash.discard();
    await this.staged?.abort();
  }
}
