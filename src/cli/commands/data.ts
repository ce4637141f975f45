import { type Command, Option } from 'commander';
import { loadSynthetic } from '../../client';
import type { SlotRange } from '../../core';
import { formatSlotRanges } from '../../core';
import { action, globals, nodeOption, positiveInt, slots, withClient } from '../common';
import { emit, formatBytes, mibPerSecond } from '../output';
import { progressBar } from '../progress';

export function registerData(program: Command): void {
  program
    .command('load')
    .description('write synthetic data into a node')
    .addOption(nodeOption('--to <host:port>', 'node to load'))
    .requiredOption('--keys <n>', 'number of keys', positiveInt)
    .requiredOption('--value-size <bytes>', 'bytes per value', positiveInt)
    .addOption(
      new Option('--types <kind>', 'string | mixed (every type, some expiries)')
        .choices(['string', 'mixed'])
        .default('string'),
    )
    .option('--seed <n>', 'random seed', positiveInt, 1)
    .option('--concurrency <n>', 'write batches in flight', positiveInt, 4)
    .action(
      action(
        async (
          options: {
            to: string;
            keys: number;
            valueSize: number;
            types: string;
            seed: number;
            concurrency: number;
          },
          command: Command,
        ) => {
          const json = globals(command).json ?? false;
          const bar = progressBar('load', !json, 'keys');
          const result = await withClient(options.to, options, (client) =>
            loadSynthetic(client, {
              keys: options.keys,
              valueSize: options.valueSize,
              types: options.types as 'string' | 'mixed',
              seed: options.seed,
              concurrency: options.concurrency,
              onProgress: (done) => bar.update(done, options.keys),
            }),
          );
          bar.stop();
          emit(
            globals(command),
            { ok: true, ...result },
            () =>
              `loaded ${result.keys} keys (${formatBytes(result.bytes)}) in ${(result.elapsedMs / 1000).toFixed(2)} s, ` +
              `${Math.round(result.keys / (result.elapsedMs / 1000))} keys/s, ${mibPerSecond(result.bytes, result.elapsedMs).toFixed(1)} MiB/s, seq ${result.lastSeq}`,
          );
        },
      ),
    );

  program
    .command('digest')
    .description('order-independent content digest of a node (or of some slots)')
    .addOption(nodeOption('--at <host:port>', 'node'))
    .option('--slots <ranges>', 'A-B[,C-D]', slots)
    .action(
      action(async (options: { at: string; slots?: SlotRange[] }, command: Command) => {
        const result = await withClient(options.at, options, (client) =>
          client.digest({ slots: options.slots ?? [] }),
        );
        emit(
          globals(command),
          { ok: true, ...result },
          () =>
            `${result.digest}  ${result.keyCount} keys at seq ${result.seq}${options.slots ? ` (slots ${formatSlotRanges(options.slots)})` : ''}`,
        );
      }),
    );

  program
    .command('stats')
    .description('key count, seq, sizes and snapshot activity of a node')
    .addOption(nodeOption('--at <host:port>', 'node'))
    .action(
      action(async (options: { at: string }, command: Command) => {
        const stats = await withClient(options.at, options, (client) => client.stats());
        emit(globals(command), { ok: true, ...stats }, () => [
          `node        ${stats.nodeId} (${stats.backend})`,
          `keys        ${stats.keyCount}`,
          `seq         ${stats.seq}`,
          `data        ${formatBytes(Number(stats.dataBytes))}`,
          `owned       ${formatSlotRanges(stats.ownedSlots) || 'none'}`,
          `views open  ${stats.activeSnapshots}`,
          `builds      ${stats.activeBuilds}`,
          `streams     ${stats.activeStreams}`,
          `snapshots   ${stats.storedSnapshots} (${formatBytes(Number(stats.storedBytes))})`,
          ...(stats.recovery
            ? [
                `wal         ${formatBytes(Number(stats.recovery.walBytes))}, fsync ${stats.recovery.walFsync}, ${stats.recovery.localSnapshots} local snapshots`,
                `recovery    ${stats.recovery.snapshotPath ? `snapshot at seq ${stats.recovery.snapshotSeq}` : 'no snapshot'} + ${stats.recovery.recordsReplayed} records replayed in ${stats.recovery.durationMs} ms${Number(stats.recovery.truncatedBytes) > 0 ? ` (torn tail of ${stats.recovery.truncatedBytes} bytes cut)` : ''}`,
              ]
            : []),
        ]);
      }),
    );
}
