import { type Command, InvalidArgumentError, Option } from 'commander';
import { infoPath } from '../../transfer';
import { type SlotRange, formatSlotRanges, internal, invalidArgument } from '../../core';
import type { SnapshotInfo__Output } from '../../generated/shardsnap/v1/SnapshotInfo';
import { unpackArtifactFile, verifyArtifactFile } from '../../snapshot';
import { action, address, globals, nodeOption, positiveInt, slots, withClient } from '../common';
import { enumWord } from '../enums';
import { emit, formatBytes, mibPerSecond, table } from '../output';
import { type FetchFlags, runFetch } from './fetch';
import { progressBar } from '../progress';
import { readFile } from 'node:fs/promises';

function describe(info: SnapshotInfo__Output): string[] {
  return [
    info.id,
    enumWord('state', info.state),
    info.strategy,
    formatSlotRanges(info.slots),
    String(info.seq),
    String(info.keyCount),
    formatBytes(Number(info.state === 'READY' ? info.sizeBytes : info.bytesWritten)),
    new Date(Number(info.createdAtMs)).toISOString(),
  ];
}

async function readSidecarSha(file: string): Promise<string | undefined> {
  const sidecar = await readFile(infoPath(file), 'utf8').then(
    (text) => JSON.parse(text) as { sha256?: string },
    () => undefined,
  );
  return sidecar?.sha256 || undefined;
}

/** `--compression none|zstd` (a usage error otherwise). */
function compressionOption(): Option {
  return new Option('--compression <kind>', 'none | zstd, for chunks in transit')
    .choices(['none', 'zstd'])
    .default('none');
}

function compression(value: string): 'none' | 'zstd' {
  if (value !== 'none' && value !== 'zstd')
    throw invalidArgument(`--compression must be none or zstd, not "${value}"`);
  return value;
}

export function registerSnapshots(program: Command): void {
  program
    .command('fetch')
    .description(
      'fetch a snapshot into a file (re-running resumes from FILE.part), or to stdout with --out -',
    )
    .addOption(nodeOption('--from <host:port>', 'node to fetch from'))
    .option('--slots <ranges>', 'slot ranges for a new snapshot (A-B[,C-D]); default all', slots)
    .option('--id <id>', 'fetch this existing snapshot instead of creating one')
    .option('--since <seq>', 'a new snapshot holds only the changes after this seq', positiveInt)
    .addOption(compressionOption())
    .option('--chunk-size <bytes>', 'bytes per chunk', positiveInt)
    .option(
      '--parallel <n>',
      'concurrent ranged streams for a READY snapshot (default by size: 1 below 1 GiB, 2 below 8 GiB, else 4)',
      positiveInt,
    )
    .requiredOption('--out <file>', 'where to write the artifact ("-": stdout, not resumable)')
    .option('--restart', 'discard FILE.part (and the snapshot it was fetching) and fetch afresh')
    .option(
      '--keep',
      'keep the snapshot the fetch creates on the node (deleted once complete otherwise)',
    )
    .action(action((options: FetchFlags, command: Command) => runFetch(options, command)));

  program
    .command('verify <file>')
    .description('check an artifact file: every record, its trailer and its SHA-256')
    .action(
      action(async (file: string, _options: unknown, command: Command) => {
        const sidecar = await readFile(infoPath(file), 'utf8').then(
          (text) => JSON.parse(text) as { sha256?: string },
          () => undefined,
        );
        const result = await verifyArtifactFile(file, sidecar?.sha256);
        emit(
          globals(command),
          { ok: true, ...result, checkedAgainstInfo: Boolean(sidecar?.sha256) },
          () =>
            `ok: ${file} is snapshot ${result.header.snapshot_id} (seq ${result.header.seq}, slots ` +
            `${formatSlotRanges(result.header.slots)}), ${result.keyCount} keys, ${formatBytes(result.bytes)}, sha256 ${result.sha256}` +
            (sidecar?.sha256 ? ' (matches its .json)' : ''),
        );
      }),
    );

  program
    .command('unpack <file>')
    .description('write the files of a checkpoint artifact into a RocksDB database directory')
    .requiredOption('--out <dir>', 'directory to create (must not hold the files yet)')
    .action(
      action(async (file: string, options: { out: string }, command: Command) => {
        const result = await unpackArtifactFile(file, options.out);
        emit(
          globals(command),
          { ok: true, ...result, dir: options.out },
          () =>
            `unpacked checkpoint ${result.header.snapshot_id} (seq ${result.header.seq}, ${result.files.length} files, ` +
            `${formatBytes(result.bytes)}) into ${options.out}`,
        );
      }),
    );

  program
    .command('install <file>')
    .description('push an artifact file into a node (all-or-nothing)')
    .addOption(nodeOption('--to <host:port>', 'node to install into'))
    .addOption(compressionOption())
    .option('--force', 'seed a node that owns no slots (it then owns the slots of the artifact)')
    .action(
      action(
        async (
          file: string,
          options: { to: string; compression: string; force?: boolean },
          command: Command,
        ) => {
          const json = globals(command).json ?? false;
          const bar = progressBar('install', !json);
          const started = performance.now();
          const expectedSha256 = await readSidecarSha(file);
          const result = await withClient(options.to, options, (client) =>
            client.installFile({
              path: file,
              expectedSha256,
              compression: compression(options.compression),
              force: options.force === true,
              onProgress: (sent, total) => bar.update(sent, total),
            }),
          );
          bar.stop();
          const ms = performance.now() - started;
          emit(
            globals(command),
            { ok: true, ...result, elapsedMs: ms },
            () =>
              `installed snapshot ${result.snapshotId}: ${result.keysInstalled} keys, node seq now ${result.seq}, ` +
              `${(ms / 1000).toFixed(2)} s, ${Math.round(Number(result.keysInstalled) / (ms / 1000))} keys/s`,
          );
        },
      ),
    );

  program
    .command('pull')
    .description('make a node fetch a snapshot from another node and install it')
    .addOption(nodeOption('--to <host:port>', 'node that pulls and installs'))
    .requiredOption('--from <host:port>', 'node to pull from', address)
    .option('--slots <ranges>', 'slot ranges (A-B[,C-D]); default all', slots)
    .option('--id <id>', 'pull this existing snapshot')
    .option('--force', 'seed a node that owns no slots (it then owns the pulled ones)')
    .option(
      '--since <seq>',
      'pull only the changes after this seq (the node must be at it)',
      positiveInt,
    )
    .action(
      action(
        async (
          options: {
            to: string;
            from: string;
            slots?: SlotRange[];
            id?: string;
            force?: boolean;
            since?: number;
          },
          command: Command,
        ) => {
          const json = globals(command).json ?? false;
          const bar = progressBar('pull', !json);
          const started = performance.now();
          const result = await withClient(options.to, options, async (client) => {
            for await (const progress of client.pull({
              source: options.from,
              slots: options.slots,
              snapshotId: options.id,
              force: options.force === true,
              ...(options.since !== undefined ? { sinceSeq: options.since } : {}),
            })) {
              bar.update(Number(progress.bytesReceived), Number(progress.totalBytes));
              if (progress.done && progress.result)
                return { ...progress.result, resumes: progress.resumes };
            }
            throw internal('pull ended without a result');
          });
          bar.stop();
          const ms = performance.now() - started;
          emit(
            globals(command),
            { ok: true, ...result, elapsedMs: ms },
            () =>
              `pulled snapshot ${result.snapshotId} from ${options.from} into ${options.to}: ${result.keysInstalled} keys, ` +
              `${formatBytes(Number(result.bytes))} in ${(ms / 1000).toFixed(2)} s (${mibPerSecond(Number(result.bytes), ms).toFixed(1)} MiB/s, ` +
              `${Math.round(Number(result.keysInstalled) / (ms / 1000))} keys/s), seq ${result.seq}, ${result.resumes} resumes`,
          );
        },
      ),
    );

  const group = program.command('snapshots').description('manage the snapshots of a node');
  group
    .command('create')
    .addOption(nodeOption('--at <host:port>', 'node'))
    .option('--slots <ranges>', 'slot ranges (A-B[,C-D]); default all', slots)
    .option('--strategy <name>', 'snapshot strategy (default: the backend best)')
    .option('--wait', 'wait until the snapshot is READY')
    .option(
      '--since <seq>',
      'an incremental snapshot: only the changes after this seq',
      positiveInt,
    )
    .option('--label <key=value>', 'a label carried in the snapshot (repeatable)', label, {})
    .action(
      action(
        async (
          options: {
            at: string;
            slots?: SlotRange[];
            strategy?: string;
            wait?: boolean;
            since?: number;
            label: Record<string, string>;
          },
          command: Command,
        ) => {
          const info = await withClient(options.at, options, async (client) => {
            const created = await client.createSnapshot({
              slots: options.slots,
              strategy: options.strategy,
              labels: options.label,
              ...(options.since !== undefined ? { sinceSeq: options.since } : {}),
            });
            return options.wait ? client.waitReady({ snapshotId: created.id }) : created;
          });
          emit(
            globals(command),
            { ok: true, ...info },
            () =>
              `snapshot ${info.id} ${enumWord('state', info.state)} at seq ${info.seq} (${info.strategy})`,
          );
        },
      ),
    );
  group
    .command('list')
    .addOption(nodeOption('--at <host:port>', 'node'))
    .action(
      action(async (options: { at: string }, command: Command) => {
        const snapshots = await withClient(options.at, options, (client) => client.listSnapshots());
        emit(globals(command), { ok: true, snapshots }, () =>
          snapshots.length === 0
            ? 'no snapshots'
            : table([
                ['id', 'state', 'strategy', 'slots', 'seq', 'keys', 'size', 'created'],
                ...snapshots.map(describe),
              ]),
        );
      }),
    );
  group
    .command('delete')
    .addOption(nodeOption('--at <host:port>', 'node'))
    .requiredOption('--id <id>', 'snapshot to delete')
    .option('--force', 'delete although streams read it (they finish first)')
    .action(
      action(async (options: { at: string; id: string; force?: boolean }, command: Command) => {
        await withClient(options.at, options, (client) =>
          client.deleteSnapshot({ snapshotId: options.id, force: options.force === true }),
        );
        emit(
          globals(command),
          { ok: true, deleted: options.id },
          () => `deleted snapshot ${options.id}`,
        );
      }),
    );
}

/** `--label key=value`, repeatable: collected into one object (the last value of a key wins). */
function label(value: string, previous: Record<string, string>): Record<string, string> {
  const at = value.indexOf('=');
  if (at <= 0) throw new InvalidArgumentError(`"${value}" is not key=value`);
  return { ...previous, [value.slice(0, at)]: value.slice(at + 1) };
}
