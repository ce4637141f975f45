import { Command, CommanderError } from 'commander';
import { registerArchive } from './commands/archive';
import { CLUSTER_ENV, ETCD_ENV, registerCluster } from './commands/cluster';
import { registerController } from './commands/controller';
import { registerData } from './commands/data';
import { registerDemo } from './commands/demo';
import { registerServe } from './commands/serve';
import { registerSnapshots } from './commands/snapshots';
import { registerSplit } from './commands/split';
import { ADDR_ENV, CONNECT_TIMEOUT_ENV, TOKEN_ENV, addClientOptions } from './common';
import { EXIT_CODES, reportError, reportUsageError } from './output';
import { usageMessage, usageReason } from './usage';
import { packageVersion } from './version';

export interface ProgramOptions {
  /**
   * `--json` is on the command line: commander then prints nothing itself (no error text,
   * no help after an error) and main prints the one JSON object.
   */
  json?: boolean;
  /** Where help and the version go with --json (main wraps them in its JSON object). */
  writeOut?: (text: string) => void;
}

export function buildProgram(options: ProgramOptions = {}): Command {
  // Set before the commands are added: subcommands copy these settings when created.
  const program = new Command('shardsnap')
    .description(
      'shard node that streams full and slot-range snapshots over gRPC in verified, resumable chunks',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--json', 'print one JSON object instead of human output')
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => {
        if (!options.json) write(usageMessage(text));
      },
      // With --json, the help commander prints on its own errors is no use to a program.
      ...(options.json ? { writeErr: () => undefined, writeOut: options.writeOut } : {}),
    });
  if (!options.json) program.showHelpAfterError();
  program.addHelpText('after', ENVIRONMENT);
  registerServe(program);
  registerData(program);
  registerSnapshots(program);
  registerArchive(program);
  registerSplit(program);
  registerCluster(program);
  registerController(program);
  registerDemo(program);
  addClientOptionsEverywhere(program);
  return program;
}

const ENVIRONMENT = `
Environment:
  ${ADDR_ENV}             the node a command calls when its --at, --to, fetch --from
                             or split --target is not given
  ${TOKEN_ENV}            bearer token of the calls when --token is not given
  ${CONNECT_TIMEOUT_ENV}  --connect-timeout when not given (e.g. 10s)
  ${ETCD_ENV}             cluster and controller --etcd when not given
  ${CLUSTER_ENV}          cluster and controller --cluster when not given

Exit codes: 0 ok, 1 internal, 2 usage or invalid argument, 3 not found, 4 data loss,
5 failed precondition (MOVED, CONTROLLER_BUSY, TOPOLOGY_CHANGED), 6 resource exhausted,
7 unavailable (TRYAGAIN, a node that cannot be reached, deadline exceeded), 8 cancelled,
9 permission denied or unauthenticated.`;

/** Commands that talk to no node over gRPC, or run nodes themselves. */
const NO_CLIENT = new Set(['serve', 'demo', 'verify', 'unpack']);

/** Every command that calls a node takes the same TLS and token flags. */
function addClientOptionsEverywhere(command: Command): void {
  for (const sub of command.commands) {
    if (NO_CLIENT.has(sub.name())) continue;
    if (sub.commands.length > 0) addClientOptionsEverywhere(sub);
    else addClientOptions(sub);
  }
}

export async function main(argv: string[]): Promise<void> {
  dropIpServerNameWarning();
  const json = jsonRequested(argv);
  let printed = '';
  try {
    const program = buildProgram({ json, writeOut: (text) => (printed += text) });
    await program.parseAsync(argv);
  } catch (error) {
    process.exitCode = failed(error, json, printed);
  }
}

/** The exit code of a parse that threw; prints what the user needs to see. */
function failed(error: unknown, json: boolean, printed: string): number {
  if (!(error instanceof CommanderError)) return reportError(error, json);
  // --help and --version end the parse this way too, successfully.
  if (error.exitCode === 0) {
    if (json) {
      const result =
        error.code === 'commander.version' ? { version: packageVersion() } : { help: printed };
      process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`);
    }
    return 0;
  }
  if (!json) return EXIT_CODES.usage;
  if (error.code === 'commander.help') {
    return reportUsageError('a command is required (see shardsnap --help)', 'MISSING_COMMAND');
  }
  const message = usageMessage(error.message).replace(/^error: /, '');
  return reportUsageError(message.trim(), usageReason(error.code));
}

/** `--json` among the arguments (before a `--`), known before commander parses them. */
function jsonRequested(argv: readonly string[]): boolean {
  const args = argv.slice(2);
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

/**
 * grpc-js gives an IP address as the TLS server name when a node is addressed by IP, and
 * Node warns about that (DEP0123) on every such connection, although the certificate is
 * checked against the IP all the same: nothing for the user to act on, so not printed.
 */
function dropIpServerNameWarning(): void {
  const printers = process.listeners('warning');
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.code === 'DEP0123') return;
    for (const print of printers) print(warning);
  });
}

if (require.main === module) {
  void main(process.argv);
}
