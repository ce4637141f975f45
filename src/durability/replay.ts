import { ErrorCodes, ShardsnapError, dataLoss, throwIfAborted } from '../core';
import type { StagedInstall } from '../store';
import type { MemoryStore } from '../store/memory/memory-store';
import type { WalRecord } from '../wal';
import { type JournalTarget, decodeJournalEntry } from './journal-codec';

/** The log lacks records `from..to` (lsns): the start fails rather than serve a partial state. */
export function walGap(from: number, to: number, detail: string): ShardsnapError {
  return new ShardsnapError(
    ErrorCodes.dataLoss,
    `the write-ahead log is missing records ${from}..${to} (${detail}); ` +
      'starting would serve a partial state, so the node refuses to start ' +
      '(restore this node from an artifact or another node, or move DIR/wal and DIR/snapshots aside to start empty)',
    { reason: 'WAL_GAP', metadata: { missing_from_lsn: from, missing_to_lsn: to } },
  );
}

const installTarget = (t: JournalTarget) => ({ slots: t.slots, full: t.full, seq: t.targetSeq });

/**
 * Applies logged changes to `store` in log order, from lsn `afterLsn + 1` on, checking
 * that the lsns follow each other and that the store lands on the seqs it had.
 * Installs are staged as their parts come; an install never committed (aborted, or cut
 * by the crash) is dropped at the end.
 */
export async function replayJournal(
  store: MemoryStore,
  records: AsyncIterable<WalRecord>,
  afterLsn: number,
  signal?: AbortSignal,
): Promise<{ replayed: number; lastLsn: number }> {
  const installs = new Map<bigint, StagedInstall>();
  let lsn = afterLsn;
  let replayed = 0;
  try {
    for await (const record of records) {
      throwIfAborted(signal);
      if (record.seq !== lsn + 1) {
        throw walGap(lsn + 1, record.seq - 1, `the log jumps from ${lsn} to ${record.seq}`);
      }
      lsn = record.seq;
      const entry = decodeJournalEntry(record.kind, record.payload);
      let seq: number;
      switch (entry.kind) {
        case 'write':
          seq = (await store.write(entry.mutations, { atMs: entry.atMs })).seq;
          break;
        case 'installPart': {
          let install = installs.get(entry.installId);
          if (!install) {
            install = await store.beginInstall(installTarget(entry.target));
            installs.set(entry.installId, install);
          }
          await install.add(entry.records);
          replayed++;
          continue;
        }
        case 'installCommit': {
          const install =
            installs.get(entry.installId) ??
            (await store.beginInstall(installTarget(entry.target)));
          installs.delete(entry.installId);
          if (install.recordCount !== entry.recordCount) {
            await install.abort();
            throw dataLoss(
              `log record ${lsn}: an install committed ${entry.recordCount} records, the log holds ${install.recordCount} of them`,
            );
          }
          seq = (await install.commit()).seq;
          break;
        }
        case 'delta': {
          const delta = await store.beginDeltaInstall({
            slots: entry.target.slots,
            full: entry.target.full,
            baseSeq: entry.baseSeq,
            seq: entry.target.targetSeq,
          });
          await delta.add(entry.upserts);
          await delta.delete(entry.deletes);
          seq = (await store.replayAt(entry.atMs, () => delta.commit())).seq;
          break;
        }
        case 'expired':
          store.replayExpired(entry.keys);
          replayed++;
          continue;
      }
      if (seq !== entry.seq) {
        throw dataLoss(
          `log record ${lsn}: replaying it gave seq ${seq}, the node had seq ${entry.seq}`,
        );
      }
      replayed++;
    }
  } finally {
    for (const install of installs.values()) await install.abort();
  }
  return { replayed, lastLsn: lsn };
}
