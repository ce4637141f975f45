import type { Command } from 'commander';
import {
  type ArchiveSummary,
  type ArchiveTargets,
  type S3Settings,
  S3Targets,
  deleteArchive,
  listArchives,
  parseArchiveUri,
  resolveS3Settings,
  summarizeArchive,
  verifyArchive,
} from '../../archive';
import { formatSlotRanges, internal } from '../../core';
import { action, address, globals, nodeOption, withClient } from '../common';
import { emit, formatBytes, mibPerSecond, table } from '../output';
import { progressBar } from '../progress';

export interface S3Flags {
  s3Endpoint?: string;
  s3Region?: string;
  s3ForcePathStyle?: boolean;
}

/** `--s3-endpoint`, `--s3-region`, `--[no-]s3-force-path-style`; unset ones come from the AWS_* env. */
export function addS3Options(command: Command): Command {
  return command
    .option('--s3-endpoint <url>', 'S3-compatible endpoint (default: AWS_ENDPOINT_URL, else AWS)')
    .option('--s3-region <region>', 'region (default: AWS_REGION, AWS_DEFAULT_REGION, us-east-1)')
    .option('--s3-force-path-style', 'path-style bucket URLs (default with a custom endpoint)')
    .option('--no-s3-force-path-style', 'virtual-hosted bucket URLs even with a custom endpoint');
}

export function s3Settings(flags: S3Flags): S3Settings {
  return {
    ...(flags.s3Endpoint ? { endpoint: flags.s3Endpoint } : {}),
    ...(flags.s3Region ? { region: flags.s3Region } : {}),
    ...(flags.s3ForcePathStyle !== undefined ? { forcePathStyle: flags.s3ForcePathStyle } : {}),
  };
}

/** Runs a body with this process's own S3 client (for commands that need no node). */
async function withTargets<T>(
  flags: S3Flags,
  body: (targets: ArchiveTargets) => Promise<T>,
): Promise<T> {
  const targets = new S3Targets(resolveS3Settings(s3Settings(flags)));
  try {
    return await body(targets);
  } finally {
    targets.close();
  }
}

function describe(a: ArchiveSummary): string[] {
  return [
    a.uri,
    a.nodeId,
    formatSlotRanges(a.slots),
    String(a.seq),
    a.kind,
    formatBytes(Number(a.sizeBytes)),
    new Date(Number(a.uploadedAtMs)).toISOString(),
  ];
}

export function registerArchive(program: Command): void {
  program
    .command('archive')
    .description("make a node upload a snapshot to its object store; prints the archive's URI")
    .addOption(nodeOption('--at <host:port>', 'node holding the snapshot'))
    .requiredOption('--id <id>', 'snapshot to archive (READY, or waited for)')
    .requiredOption('--bucket <bucket>', 'bucket to upload to')
    .option('--prefix <prefix>', 'key prefix in the bucket', '')
    .action(
      action(
        async (
          options: { at: string; id: string; bucket: string; prefix: string },
          command: Command,
        ) => {
          const json = globals(command).json ?? false;
          const bar = progressBar('archive', !json);
          const started = performance.now();
          const info = await withClient(options.at, options, async (client) => {
            for await (const progress of client.archive({
              snapshotId: options.id,
              bucket: options.bucket,
              prefix: options.prefix,
            })) {
              bar.update(Number(progress.bytesUploaded), Number(progress.totalBytes));
              if (progress.done && progress.info) return progress.info;
            }
            throw internal('archive ended without a result');
          });
          bar.stop();
          const ms = performance.now() - started;
          emit(globals(command), { ok: true, ...info, elapsedMs: ms }, () => [
            `archived snapshot ${info.snapshotId} (seq ${info.seq}, slots ${formatSlotRanges(info.slots)}, ` +
              `${formatBytes(Number(info.sizeBytes))}) in ${(ms / 1000).toFixed(2)} s, ` +
              `${mibPerSecond(Number(info.sizeBytes), ms).toFixed(1)} MiB/s`,
            info.uri,
          ]);
        },
      ),
    );

  program
    .command('restore <uri>')
    .description('make a node download an archive (s3://bucket/<dir>/manifest.json) and install it')
    .addOption(nodeOption('--to <host:port>', 'node that restores (all-or-nothing)'))
    .option('--force', 'seed a node that owns no slots (it then owns the restored ones)')
    .action(
      action(async (uri: string, options: { to: string; force?: boolean }, command: Command) => {
        parseArchiveUri(uri);
        const json = globals(command).json ?? false;
        const bar = progressBar('restore', !json);
        const started = performance.now();
        const result = await withClient(options.to, options, async (client) => {
          for await (const progress of client.restore({
            uri,
            force: options.force === true,
          })) {
            bar.update(Number(progress.bytesReceived), Number(progress.totalBytes));
            if (progress.done && progress.result)
              return { ...progress.result, resumes: progress.resumes };
          }
          throw internal('restore ended without a result');
        });
        bar.stop();
        const ms = performance.now() - started;
        emit(
          globals(command),
          { ok: true, uri, ...result, elapsedMs: ms },
          () =>
            `restored snapshot ${result.snapshotId} from ${uri} into ${options.to}: ${result.keysInstalled} keys, ` +
            `${formatBytes(Number(result.bytes))} in ${(ms / 1000).toFixed(2)} s, seq ${result.seq}, ${result.resumes} resumes`,
        );
      }),
    );

  const group = program
    .command('archives')
    .description('archives in an S3-compatible object store');

  addS3Options(
    group
      .command('list')
      .description('complete archives (those with a manifest) in a bucket')
      .requiredOption('--bucket <bucket>', 'bucket')
      .option('--prefix <prefix>', 'key prefix', '')
      .option(
        '--at <host:port>',
        "ask this node (its object store) instead of this process's",
        address,
      ),
  ).action(
    action(
      async (
        options: S3Flags & { bucket: string; prefix: string; at?: string },
        command: Command,
      ) => {
        const archives: ArchiveSummary[] = options.at
          ? await withClient(options.at, options, (client) =>
              client.listArchives({ bucket: options.bucket, prefix: options.prefix }),
            )
          : await withTargets(options, async (targets) =>
              (await listArchives(targets.open(options.bucket), options.prefix)).map(
                summarizeArchive,
              ),
            );
        emit(globals(command), { ok: true, archives }, () =>
          archives.length === 0
            ? 'no archives'
            : table([
                ['uri', 'node', 'slots', 'seq', 'kind', 'size', 'uploaded'],
                ...archives.map(describe),
              ]),
        );
      },
    ),
  );

  addS3Options(
    group
      .command('verify <uri>')
      .description(
        'download an archive and check it against its manifest (every chunk CRC32C, SHA-256) without installing',
      ),
  ).action(
    action(async (uri: string, options: S3Flags, command: Command) => {
      const json = globals(command).json ?? false;
      const bar = progressBar('verify', !json);
      const started = performance.now();
      const result = await withTargets(options, (targets) =>
        verifyArchive(targets, uri, { onProgress: (done, total) => bar.update(done, total) }),
      );
      bar.stop();
      const ms = performance.now() - started;
      const info = summarizeArchive(result);
      emit(
        globals(command),
        {
          ok: true,
          ...info,
          bytes: result.bytes,
          chunks: result.chunks,
          resumes: result.resumes,
          elapsedMs: ms,
        },
        () =>
          `ok: ${info.uri} is snapshot ${info.snapshotId} (seq ${info.seq}, slots ${formatSlotRanges(info.slots)}, ` +
          `${info.kind}), ${result.chunks} chunks, ${formatBytes(result.bytes)}, sha256 ${info.sha256}`,
      );
    }),
  );

  addS3Options(
    group
      .command('delete <uri>')
      .description('delete an archive (its manifest first, then its artifact)')
      .option(
        '--at <host:port>',
        "ask this node (its object store) instead of this process's",
        address,
      ),
  ).action(
    action(async (uri: string, options: S3Flags & { at?: string }, command: Command) => {
      const location = parseArchiveUri(uri);
      if (options.at) {
        await withClient(options.at, options, (client) => client.deleteArchive({ uri }));
      } else {
        await withTargets(options, (targets) =>
          deleteArchive(targets.open(location.bucket), location),
        );
      }
      emit(globals(command), { ok: true, deleted: uri }, () => `deleted archive ${uri}`);
    }),
  );
}
