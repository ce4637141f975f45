import { ErrorCodes, ShardsnapError, type ErrorCode } from '../core';

/** Exit codes of the CLI, by error code (documented in the README). */
export const EXIT_CODES: Record<ErrorCode | 'usage', number> = {
  usage: 2,
  [ErrorCodes.invalidArgument]: 2,
  [ErrorCodes.notFound]: 3,
  [ErrorCodes.dataLoss]: 4,
  [ErrorCodes.failedPrecondition]: 5,
  [ErrorCodes.wrongType]: 5,
  [ErrorCodes.resourceExhausted]: 6,
  [ErrorCodes.unavailable]: 7,
  [ErrorCodes.cancelled]: 8,
  [ErrorCodes.outOfRange]: 2,
  [ErrorCodes.permissionDenied]: 9,
  [ErrorCodes.unauthenticated]: 9,
  [ErrorCodes.internal]: 1,
  [ErrorCodes.moved]: 5,
  [ErrorCodes.tryAgain]: 7,
  [ErrorCodes.deadlineExceeded]: 7,
  [ErrorCodes.unimplemented]: 1,
};

export interface OutputOptions {
  json?: boolean;
}

/** Prints a result: one JSON object with --json, otherwise the human lines. */
export function emit(options: OutputOptions, result: object, human: () => string | string[]): void {
  if (options.json) {
    process.stdout.write(`${JSON.stringify(result, jsonReplacer)}\n`);
    return;
  }
  const lines = human();
  process.stdout.write(`${Array.isArray(lines) ? lines.join('\n') : lines}\n`);
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value && typeof value === 'object' && 'type' in value && value.type === 'Buffer') {
    return Buffer.from((value as unknown as { data: number[] }).data).toString('base64');
  }
  return value;
}

export function reportError(error: unknown, json: boolean): number {
  const code = error instanceof ShardsnapError ? error.code : ErrorCodes.internal;
  const exitCode = EXIT_CODES[code];
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: { code, message } })}\n`);
  } else {
    process.stderr.write(`error: ${message}\n`);
  }
  return exitCode;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export function mibPerSecond(bytes: number, ms: number): number {
  return ms > 0 ? bytes / (1 << 20) / (ms / 1000) : 0;
}

/** A plain text table with aligned columns. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  '),
    )
    .join('\n');
}
