import type { Command } from 'commander';
import { ShardNode } from '../../server';
import { parseDuration } from '../../server/config';
import { action, address, globals, positiveInt } from '../common';
import { emit } from '../output';

interface ServeOptions {
  listen: string;
  backend: string;
  dataDir: string;
  nodeId?: string;
  snapshotTtl: string;
  maxBuilds: number;
  keepRecent: number;
  restoreFrom?: string;
  logLevel: string;
}

export function registerServe(program: Command): void {
  program
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
    .action(
      action(async (options: ServeOptions, command: Command) => {
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
