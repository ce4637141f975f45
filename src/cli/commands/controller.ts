import { type Command, Option } from 'commander';
import {
  type ClientFlags,
  action,
  clientSecurity,
  duration,
  globals,
  positiveInt,
} from '../common';
import { emit } from '../output';
import { CLUSTER_ENV, ETCD_ENV } from './cluster';

interface ControllerFlags extends ClientFlags {
  etcd: string;
  cluster: string;
  id?: string;
  autoRebalance?: boolean;
  checkEvery: number;
  leaseTtl: number;
  maxPause?: number;
  parallel: number;
  logLevel: string;
}

export function registerController(program: Command): void {
  program
    .command('controller')
    .description(
      "run the cluster's controller for good: it waits for the leader lease (run two: one acts, one stands by), settles unfinished migrations, runs the moves queued by `cluster`, and can keep the slots spread",
    )
    .addOption(
      new Option('--etcd <endpoints>', 'etcd endpoints (host:port[,host:port])')
        .env(ETCD_ENV)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--cluster <name>', 'cluster name').env(CLUSTER_ENV).makeOptionMandatory(),
    )
    .option('--id <id>', 'name of this controller (default: host and a random suffix)')
    .option('--auto-rebalance', 'rebalance by itself when nodes join or leave')
    .option('--check-every <duration>', 'look at the cluster at least this often', duration, 10_000)
    .option('--lease-ttl <seconds>', 'leader lease TTL', positiveInt, 5)
    .option('--max-pause <ms>', 'longest write pause a handoff may cause', positiveInt)
    .option('--parallel <n>', 'migrations run at once (each to its own node)', positiveInt, 2)
    .option('--log-level <level>', 'log level (logs go to stderr)', 'info')
    .action(
      action(async (flags: ControllerFlags, command: Command) => {
        const [{ runStandingController }, { default: pino }] = await Promise.all([
          import('../../cluster'),
          import('pino'),
        ]);
        const logger = pino({ level: flags.logLevel }, pino.destination(2));
        const stop = new AbortController();
        const onSignal = (): void => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        emit(
          globals(command),
          { ok: true, cluster: flags.cluster, etcd: flags.etcd },
          () =>
            `controller of cluster ${flags.cluster} started (etcd ${flags.etcd}); waiting for the lead`,
        );
        await runStandingController({
          endpoints: flags.etcd,
          cluster: flags.cluster,
          ...(flags.id ? { id: flags.id } : {}),
          autoRebalance: flags.autoRebalance ?? false,
          checkEveryMs: Math.max(100, flags.checkEvery),
          leaseTtlSeconds: Math.max(1, flags.leaseTtl),
          parallel: Math.max(1, flags.parallel),
          ...(flags.maxPause ? { maxPauseMs: flags.maxPause } : {}),
          security: await clientSecurity(flags),
          log: logger,
          onEvent: (event) => {
            if (event.kind === 'progress') return;
            logger.info(
              'record' in event
                ? {
                    migration: event.record.id,
                    slots: event.record.slots,
                    from: event.record.from,
                    to: event.record.to,
                  }
                : { id: event.id },
              event.kind === 'leader' ? 'took the leader lease' : `migration ${event.kind}`,
            );
          },
          signal: stop.signal,
        });
        logger.info('controller stopped');
      }),
    );
}
