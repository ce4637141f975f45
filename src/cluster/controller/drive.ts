import { internal } from '../../core';
import { ShardsnapClient } from '../../client';
import type { MigrationStatus } from '../../migration';
import type { ClientSecurity } from '../../wire/security';
import type { MigrationRecord } from '../migration-records';
import type { Controller } from './controller';

const PHASE_POINTS = new Set(['SNAPSHOT', 'CATCH_UP', 'HANDOFF'] as const);

/**
 * Runs the recorded migration with MigrateSlots on its target (the record's id is the
 * migration's id there, so a later controller can ask about it) and resolves with the
 * DONE status. Losing the lead cancels the call, which cancels the migration unless its
 * commit was already sent.
 */
export async function driveMigration(
  controller: Controller,
  record: MigrationRecord,
  options: {
    maxPauseMs: number | undefined;
    security: ClientSecurity | undefined;
    onEvent: (status: MigrationStatus) => void;
  },
): Promise<MigrationStatus> {
  const target = new ShardsnapClient(record.toAddress, { security: options.security ?? {} });
  const seen = new Set<string>();
  try {
    let last: MigrationStatus | undefined;
    const events = target.migrateSlots(
      {
        source: record.fromAddress,
        slots: record.slots,
        migrationId: record.id,
        ...(options.maxPauseMs === undefined ? {} : { maxPauseMs: options.maxPauseMs }),
      },
      { signal: controller.signal },
    );
    for await (const status of events) {
      last = status;
      options.onEvent(status);
      if (!seen.has(status.phase)) {
        seen.add(status.phase);
        for (const point of PHASE_POINTS) if (point === status.phase) controller.crash(point);
      }
    }
    if (last?.phase !== 'DONE') {
      throw internal(
        `MigrateSlots on ${record.toAddress} ended before DONE [migration=${record.id}]`,
      );
    }
    return last;
  } finally {
    target.close();
  }
}
