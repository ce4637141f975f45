import type { Command } from 'commander';
import {
  ErrorCodes,
  ErrorReasons,
  type SlotRange,
  ShardsnapError,
  cancelled,
  defaultReason,
  hasReason,
  invalidArgument,
} from '../../core';
import {
  type FetchStatus,
  fetchToStream,
  isStalePartError,
  partPath,
  partProgress,
  readPartState,
} from '../../transfer';
import { commandLine } from '../command-line';
import { globals, withClient } from '../common';
import { cliJson } from '../json';
import { EXIT_CODES, emit, formatBytes, mibPerSecond, reportError } from '../output';
import { type PhasedProgress, progressBar } from '../progress';

export interface FetchFlags {
  from: string;
  slots?: SlotRange[];
  id?: string;
  since?: number;
  compression: string;
  chunkSize?: number;
  parallel?: number;
  out: string;
  restart?: boolean;
  keep?: boolean;
}

/** The exit code of a fetch stopped by Ctrl-C (128 + SIGINT, as shells report it). */
export const INTERRUPTED_EXIT_CODE = 130;

const STDOUT = '-';

/**
 * `shardsnap fetch`: into FILE (through FILE.part, resumable) or, with `--out -`, to
 * stdout. Ctrl-C stops the transfer (the node's stream is cancelled), restores the
 * terminal and says how to resume; a second Ctrl-C exits at once.
 */
export async function runFetch(options: FetchFlags, command: Command): Promise<void> {
  const json = globals(command).json ?? false;
  const toStdout = options.out === STDOUT;
  if (toStdout) checkStdoutFlags(options);
  const bar = progressBar('fetch', !json);
  const interrupt = new AbortController();
  const onSigint = (): void => {
    if (interrupt.signal.aborted) {
      bar.stop();
      process.exit(INTERRUPTED_EXIT_CODE);
    }
    interrupt.abort(cancelled('fetch interrupted'));
  };
  process.on('SIGINT', onSigint);
  const started = performance.now();
  try {
    if (toStdout) await toStream(options, command, bar, interrupt.signal, started);
    else await toFile(options, command, bar, interrupt.signal, started);
  } catch (error) {
    bar.stop();
    if (interrupt.signal.aborted) {
      await reportInterrupted(options, json);
      process.exitCode = INTERRUPTED_EXIT_CODE;
      return;
    }
    const failure = isStalePartError(error) ? withStartOverHint(error, options) : error;
    if (!toStdout) throw failure;
    process.exitCode = reportOnStderr(failure, json);
  } finally {
    bar.stop();
    process.off('SIGINT', onSigint);
  }
}

async function toFile(
  options: FetchFlags,
  command: Command,
  bar: PhasedProgress,
  signal: AbortSignal,
  started: number,
): Promise<void> {
  const result = await withClient(options.from, options, (client) =>
    client.fetchToFile(
      {
        out: options.out,
        snapshotId: options.id,
        slots: options.slots,
        ...(options.since !== undefined ? { sinceSeq: options.since } : {}),
        compression: options.compression as 'none' | 'zstd',
        chunkSize: options.chunkSize,
        parallel: options.parallel,
        restart: options.restart === true,
        keepSnapshot: options.keep === true,
        onStatus: (status) => bar.set(progressState(status)),
      },
      { signal },
    ),
  );
  bar.stop();
  const ms = performance.now() - started;
  const transferred = result.bytes - result.resumedFrom;
  const kept = result.created && options.keep === true;
  emit(
    globals(command),
    {
      ok: true,
      ...result,
      snapshotKept: kept,
      elapsedMs: ms,
      mibPerSecond: mibPerSecond(transferred, ms),
    },
    () =>
      `fetched snapshot ${result.info.id} (seq ${result.info.seq}, ${result.info.keyCount} keys) to ${result.path}: ` +
      `${formatBytes(result.bytes)}${result.resumedFrom ? ` (resumed at ${formatBytes(result.resumedFrom)})` : ''} in ` +
      `${(ms / 1000).toFixed(2)} s, ${mibPerSecond(transferred, ms).toFixed(1)} MiB/s` +
      `${result.streams > 1 ? ` over ${result.streams} streams` : ''}, sha256 ${result.sha256}` +
      (kept ? ` (snapshot kept on ${options.from})` : ''),
  );
}

/** `--out -`: the artifact on stdout, so the result (and any error) goes to stderr. */
async function toStream(
  options: FetchFlags,
  command: Command,
  bar: PhasedProgress,
  signal: AbortSignal,
  started: number,
): Promise<void> {
  const result = await withClient(options.from, options, (client) =>
    fetchToStream(client.connection, process.stdout, {
      snapshotId: options.id,
      slots: options.slots,
      ...(options.since !== undefined ? { sinceSeq: options.since } : {}),
      compression: options.compression as 'none' | 'zstd',
      chunkSize: options.chunkSize,
      keepSnapshot: options.keep === true,
      signal,
      onStatus: (status) => bar.set(progressState(status)),
    }),
  );
  bar.stop();
  const ms = performance.now() - started;
  const kept = result.created && options.keep === true;
  if (globals(command).json) {
    const summary = { ok: true, ...result, path: STDOUT, snapshotKept: kept, elapsedMs: ms };
    process.stderr.write(`${JSON.stringify(cliJson(summary))}\n`);
    return;
  }
  process.stderr.write(
    `fetched snapshot ${result.info.id} (seq ${result.info.seq}) to stdout: ${formatBytes(result.bytes)} in ` +
      `${(ms / 1000).toFixed(2)} s, ${mibPerSecond(result.bytes, ms).toFixed(1)} MiB/s, sha256 ${result.sha256}` +
      `${kept ? ` (snapshot kept on ${options.from})` : ''}\n`,
  );
}

function checkStdoutFlags(options: FetchFlags): void {
  if (options.restart) {
    throw invalidArgument(
      '--out - streams to stdout and keeps no FILE.part: a fetch to stdout cannot resume, so there is nothing to --restart',
    );
  }
  if (options.parallel !== undefined && options.parallel > 1) {
    throw invalidArgument('--out - is one stream in order: --parallel needs a file (--out FILE)');
  }
  if (process.stdout.isTTY) {
    throw invalidArgument(
      '--out - writes the binary artifact to stdout, which is a terminal: redirect it (> FILE, | command)',
    );
  }
}

/** What the progress line shows of a fetch's status. */
function progressState(status: FetchStatus): Parameters<PhasedProgress['set']>[0] {
  const building = status.total === undefined;
  return {
    phase: status.phase === 'fetching' ? undefined : status.phase,
    done: status.received,
    total: status.total ?? status.estimate,
    estimated: building,
    base: status.resumedFrom,
  };
}

/** One message after Ctrl-C: what was kept, and the command that resumes it. */
async function reportInterrupted(options: FetchFlags, json: boolean): Promise<void> {
  let message: string;
  let resume: string | undefined;
  if (options.out === STDOUT) {
    message =
      'fetch interrupted: what stdout received is incomplete, and a fetch to stdout cannot resume (run it again to fetch the whole artifact)';
  } else {
    const state = await readPartState(options.out);
    const kept = await partProgress(options.out, state);
    if (state && kept > 0) {
      resume = commandLine(process.argv.slice(2), { drop: ['--restart'] });
      message =
        `fetch interrupted: ${partPath(options.out)} keeps ${formatBytes(kept)} of snapshot ${state.snapshotId}; ` +
        `resume with:\n  ${resume}`;
    } else {
      message =
        'fetch interrupted before any byte arrived: nothing was kept, and no snapshot is left on the node for it';
    }
  }
  const error = new ShardsnapError(ErrorCodes.cancelled, message, {
    ...(resume ? { metadata: { part_file: partPath(options.out), resume } } : {}),
  });
  if (json) reportError(error, true);
  else process.stderr.write(`${message}\n`);
}

/** A part file that cannot resume: the same error, with the command that starts over. */
function withStartOverHint(error: ShardsnapError, options: FetchFlags): ShardsnapError {
  // A named snapshot that is gone cannot be fetched again: start over with a new one.
  const idGone =
    options.id !== undefined &&
    options.id === error.metadata.snapshot_id &&
    (hasReason(error, ErrorReasons.snapshotNotFound) ||
      hasReason(error, ErrorReasons.snapshotFailed));
  const restart = commandLine(process.argv.slice(2), {
    dropWithValue: idGone ? ['--id'] : [],
    add: ['--restart'],
  });
  const what = idGone ? 'discard it and fetch a new snapshot' : 'discard it and start over';
  return new ShardsnapError(error.code, `${error.message}.\nTo ${what}:\n  ${restart}`, {
    cause: error,
    reason: error.reason,
    metadata: { ...error.metadata, restart },
  });
}

/** Reports a failure when stdout carries the artifact: the JSON object goes to stderr. */
function reportOnStderr(error: unknown, json: boolean): number {
  if (!json) return reportError(error, false);
  const code = error instanceof ShardsnapError ? error.code : ErrorCodes.internal;
  const message = error instanceof Error ? error.message : String(error);
  const reason = error instanceof ShardsnapError ? error.reason : defaultReason(code);
  process.stderr.write(`${JSON.stringify({ ok: false, error: { code, reason, message } })}\n`);
  return EXIT_CODES[code];
}
