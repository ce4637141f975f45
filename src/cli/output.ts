import { ErrorCodes, ShardsnapError, defaultReason, type ErrorCode } from '../core';
import { cliJson } from './json';

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
  [ErrorCodes.alreadyExists]: 5,
};

export interface OutputOptions {
  json?: boolean;
}

/** Prints a result: one JSON object with --json (see cliJson), otherwise the human lines. */
export function emit(options: OutputOptions, result: object, human: () => string | string[]): void {
  if (options.json) {
    writeJson(cliJson(result));
    return;
  }
  const lines = human();
  process.stdout.write(`${Array.isArray(lines) ? lines.join('\n') : lines}\n`);
}

function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/**
 * Prints a failure once (one JSON object on stdout with --json, one line on stderr
 * otherwise) and returns the exit code. `metadata` goes out as the node sent it: its keys
 * are those of the error's ErrorInfo.
 */
export function reportError(error: unknown, json: boolean): number {
  const code = error instanceof ShardsnapError ? error.code : ErrorCodes.internal;
  const message = error instanceof Error ? error.message : String(error);
  if (json) {
    const reason = error instanceof ShardsnapError ? error.reason : defaultReason(code);
    const metadata = error instanceof ShardsnapError ? error.metadata : {};
    const retryAfterMs = error instanceof ShardsnapError ? error.retryAfterMs : undefined;
    writeJson({
      ok: false,
      error: {
        code,
        reason,
        message,
        ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
        ...(retryAfterMs !== undefined ? { retryAfterMs: Math.round(retryAfterMs) } : {}),
      },
    });
  } else {
    process.stderr.write(`error: ${message}\n`);
  }
  return EXIT_CODES[code];
}

/** A command line the CLI could not parse, with --json (without, commander prints it). */
export function reportUsageError(message: string, reason: string): number {
  writeJson({ ok: false, error: { code: 'usage', reason, message } });
  return EXIT_CODES.usage;
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
