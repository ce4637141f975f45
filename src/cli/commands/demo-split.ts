import { join } from 'node:path';
import type { Logger } from 'pino';
import { RoutingClient, ShardsnapClient, migrateSlots } from '../../client';
import { Connection } from '../../wire';
import { type SlotRange, formatSlotRanges, slotOf } from '../../core';
import type { MigrationStatus } from '../../migration';
import { progressBar } from '../progress';

export interface SplitStepResult {
  status: MigrationStatus;
  writesDuringSplit: number;
  writesFound: number;
  keysBefore: number;
  keysAfter: number;
  ok: boolean;
}

/**
 * Moves `range` from the node at `source` to a new empty memory node while a writer adds
 * new keys to the range through a RoutingClient; then checks that every acknowledged
 * write is on the new node and that its key count is the old count plus the writes.
 */
export async function splitStep(
  source: string,
  range: SlotRange[],
  dir: string,
  logger: Logger,
  showProgress: boolean,
): Promise<SplitStepResult> {
  const { ShardNode } = await import('../../server/node');
  const node = await ShardNode.start({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'node-d'),
    nodeId: 'node-d',
    slots: [],
    logger,
  });
  const sourceClient = new ShardsnapClient(source);
  const targetClient = new ShardsnapClient(node.address);
  const conn = new Connection(node.address);
  const writer = new RoutingClient(source);
  const inRange = (key: Buffer): boolean => {
    const slot = slotOf(key);
    return range.some((r) => slot >= r.start && slot <= r.end);
  };
  const acked: Array<{ key: Buffer; value: string }> = [];
  let writing = true;
  try {
    const keysBefore = Number((await sourceClient.digest({ slots: range })).keyCount);
    const writes = (async () => {
      for (let i = 0; writing; i++) {
        const key = Buffer.from(`demo:split:${i}`);
        if (!inRange(key)) continue;
        const value = `v${i}`;
        await writer.write({
          mutations: [{ op: 'set', key, value: Buffer.from(value), expireAtMs: 0 }],
        });
        acked.push({ key, value });
      }
    })();
    const bar = progressBar('split', showProgress);
    let status: MigrationStatus;
    try {
      status = await migrateSlots(
        conn,
        { source, slots: range },
        { onEvent: (event) => bar.update(event.bytes, event.totalBytes || event.bytes) },
      );
    } finally {
      writing = false;
      bar.stop();
      await writes;
    }
    const values = await targetClient.read({ keys: acked.map((a) => a.key) });
    const writesFound = values.filter(
      (v, i) => v.kind === 'string' && v.string?.toString() === acked[i]?.value,
    ).length;
    const keysAfter = Number((await targetClient.digest({ slots: range })).keyCount);
    const ok = writesFound === acked.length && keysAfter === keysBefore + acked.length;
    return { status, writesDuringSplit: acked.length, writesFound, keysBefore, keysAfter, ok };
  } finally {
    writing = false;
    writer.close();
    conn.close();
    sourceClient.close();
    targetClient.close();
    await node.stop(500);
  }
}

export function describeSplit(result: SplitStepResult): string {
  const { status } = result;
  return (
    `split ${formatSlotRanges(status.slots)} A → D: write pause ${status.writePauseMs} ms; ` +
    `${result.writesDuringSplit} writes during the split, ${result.writesFound} found on D; ` +
    `D holds ${result.keysAfter} keys = ${result.keysBefore} moved + ${result.writesDuringSplit} new  ${result.ok ? 'MATCH' : 'DIFFER'}`
  );
}
