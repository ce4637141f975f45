import type { Command } from 'commander';
import { type SlotRange, formatSlotRanges } from '../../core';
import { migrateSlots } from '../../client';
import { Connection } from '../../wire';
import type { MigrationPhase, MigrationStatus } from '../../migration';
import {
  type ClientFlags,
  action,
  address,
  clientSecurity,
  globals,
  nodeOption,
  positiveInt,
  reaching,
  slots,
} from '../common';
import { emit, formatBytes, mibPerSecond } from '../output';
import { type Progress, progressBar } from '../progress';

interface SplitOptions {
  source: string;
  target: string;
  slots: SlotRange[];
  maxPause?: number;
}

/** One bar per phase on stderr: snapshot bytes, then changes caught up, then the handoff. */
function phaseDisplay(enabled: boolean): { update(status: MigrationStatus): void; stop(): void } {
  let phase: MigrationPhase | undefined;
  let bar: Progress | undefined;
  let note = '';
  return {
    update(status) {
      if (status.phase !== phase) {
        bar?.stop();
        bar = undefined;
        phase = status.phase;
        if (phase === 'SNAPSHOT') bar = progressBar('snapshot', enabled);
        if (phase === 'CATCH_UP') bar = progressBar('catch-up', enabled, 'changes');
        if (phase === 'HANDOFF' && enabled)
          process.stderr.write('handoff   pausing writes on the source\n');
      }
      if (enabled && status.detail && status.detail !== note) {
        note = status.detail;
        if (phase !== 'DONE') process.stderr.write(`          ${note}\n`);
      }
      if (phase === 'SNAPSHOT') bar?.update(status.bytes, status.totalBytes || status.bytes);
      if (phase === 'CATCH_UP') {
        bar?.update(status.changesApplied, status.changesApplied + status.lag);
      }
    },
    stop() {
      bar?.stop();
    },
  };
}

export function registerSplit(program: Command): void {
  program
    .command('split')
    .description(
      'move slots from a source node to a target node under live writes (runs on the target)',
    )
    .requiredOption('--source <host:port>', 'node that owns the slots now', address)
    .addOption(nodeOption('--target <host:port>', 'node that takes the slots (and runs the split)'))
    .requiredOption('--slots <ranges>', 'slot ranges to move (A-B[,C-D])', slots)
    .option(
      '--max-pause <ms>',
      'longest write pause the handoff may cause (default 1000)',
      positiveInt,
    )
    .action(
      action(async (options: SplitOptions, command: Command) => {
        const json = globals(command).json ?? false;
        const display = phaseDisplay(!json);
        const controller = new AbortController();
        const onSignal = (): void => controller.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        const conn = new Connection(options.target, {
          security: await clientSecurity(options as ClientFlags),
        });
        try {
          const status = await reaching(options.target, conn.shard.getChannel(), options, () =>
            migrateSlots(
              conn,
              { source: options.source, slots: options.slots, maxPauseMs: options.maxPause },
              { signal: controller.signal, onEvent: (event) => display.update(event) },
            ),
          );
          display.stop();
          const seconds = status.elapsedMs / 1000;
          const rate = mibPerSecond(status.bytes, status.elapsedMs);
          emit(
            globals(command),
            { ok: true, ...status, mibPerSecond: rate },
            () =>
              `moved slots ${formatSlotRanges(status.slots)} from ${status.source} to ${status.target}: ` +
              `${status.keys} keys, ${formatBytes(status.bytes)} in ${seconds.toFixed(2)} s (${rate.toFixed(1)} MiB/s), ` +
              `write pause ${status.writePauseMs} ms, ${status.changesApplied} changes caught up` +
              (status.snapshotAttempts > 1 ? `, ${status.snapshotAttempts} snapshots` : '') +
              (status.handoffAttempts > 1 ? `, ${status.handoffAttempts} handoff attempts` : ''),
          );
        } finally {
          display.stop();
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          conn.close();
        }
      }),
    );
}
