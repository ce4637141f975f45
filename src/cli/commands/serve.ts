import { type Command, InvalidArgumentError } from 'commander';
import { type SlotRange, invalidArgument } from '../../core';
import { parseOwnedSlots } from '../../ownership';
import { parseDuration, parseSize } from '../../server/config';
import { action, address, globals, positiveInt } from '../common';
import { emit } from '../output';
import { type S3Flags, addS3Options, s3Settings } from './archive';

interface ServeOptions extends S3Flags {
  listen: string;
  backend: string;
  dataDir: string;
  nodeId?: string;
  snapshotTtl: string;
  maxBuilds: number;
  keepRecent: number;
  restoreFrom?: string;
  logLevel: string;
  changeLogSize?: number;
  slots?: SlotRange[];
  archiveEvery?: string;
  archiveBucket?: string;
  archivePrefix: string;
  archiveKeep: number;
}

/** `--archive-every` and `--archive-bucket` go together. */
function archiveSchedule(options: ServeOptions) {
  if (!options.archiveEvery && !options.archiveBucket) return {};
  if (!options.archiveEvery || !options.archiveBucket) {
    throw invalidArgument('--archive-every and --archive-bucket must be given together');
  }
  return {
    archive: {
      everyMs: parseDuration(options.archiveEvery),
      bucket: options.archiveBucket,
      prefix: options.archivePrefix,
      keep: options.archiveKeep,
    },
  };
}

/** `--change-log-size`: `64MiB`, `512KiB` or plain bytes. */
function byteSize(value: string): number {
  try {
    const bytes = parseSize(value);
    if (bytes < 1) throw new Error(`"${value}" is not a positive size`);
    return bytes;
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** `--slots`: ranges, `all` or `none`. */
function ownedSlots(value: string): SlotRange[] {
  try {
    return parseOwnedSlots(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

export function registerServe(program: Command): void {
  const serve = program
    .command('serve')
    .description('run a shard node')
    .option(
      '--listen <host:port>',
      'address to listen on (port 0 picks one)',
      address,
      '127.0.0.1:7420',
    )
    .option('--backend <name>', 'storage backend', 'memory')
    .requiredOption('--data-dir <dir>', 'where snapshots are spooled')
    .option('--node-id <id>', 'name of this node in snapshots and logs')
    .option('--snapshot-ttl <duration>', 'remove unused snapshots after this long', '1h')
    .option('--max-builds <n>', 'snapshot builds allowed at once', positiveInt, 2)
    .option(
      '--keep-recent <n>',
      'keep at most N ready snapshots, removing the oldest (0 = no limit)',
      positiveInt,
      0,
    )
    .option('--restore-from <path>', 'start from a RocksDB checkpoint dir or an artifact file')
    .option('--log-level <level>', 'pino log level (logs go to stderr)', 'info')
    .option(
      '--change-log-size <size>',
      'recent changes kept for change streams, e.g. 64MiB, 512KiB or bytes (default 64MiB)',
      byteSize,
    )
    .option(
      '--slots <ranges>',
      'slots a new node owns: A-B[,C-D], all or none (default all; later starts keep what is recorded)',
      ownedSlots,
    )
    .option('--archive-every <duration>', 'archive a full snapshot this often (e.g. 1h)')
    .option('--archive-bucket <bucket>', 'bucket of the scheduled archives')
    .option('--archive-prefix <prefix>', 'key prefix of the scheduled archives', '')
    .option(
      '--archive-keep <n>',
      "keep this node's newest N archives, deleting older ones (0 = keep all)",
      positiveInt,
      0,
    );
  addS3Options(serve).action(
    action(async (options: ServeOptions, command: Command) => {
      // Loaded here, not at start-up: the node's modules cost every other command ~0.1 s.
      const { ShardNode } = await import('../../server/node');
      const node = await ShardNode.start({
        listen: options.listen,
        backend: options.backend,
        dataDir: options.dataDir,
        ...(options.nodeId ? { nodeId: options.nodeId } : {}),
        snapshotTtlMs: parseDuration(options.snapshotTtl),
        maxConcurrentBuilds: options.maxBuilds,
        keepRecent: options.keepRecent,
        ...(options.restoreFrom ? { restoreFrom: options.restoreFrom } : {}),
        logLevel: options.logLevel,
        ...(options.changeLogSize ? { changeLogBytes: options.changeLogSize } : {}),
        ...(options.slots ? { slots: options.slots } : {}),
        s3: s3Settings(options),
        ...archiveSchedule(options),
      });
      emit(
        globals(command),
        { listening: node.address, backend: node.store.backend },
        () => `listening on ${node.address}`,
      );
      const shutdown = (signal: string): void => {
        node.logger.info({ signal }, 'stopping');
        node.stop().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.once('SIGINT', shutdown);
      process.once('SIGTERM', shutdown);
    }),
  );
}
