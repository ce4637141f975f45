import { Command, CommanderError } from 'commander';
import { registerArchive } from './commands/archive';
import { registerData } from './commands/data';
import { registerDemo } from './commands/demo';
import { registerServe } from './commands/serve';
import { registerSnapshots } from './commands/snapshots';
import { registerSplit } from './commands/split';
import { addClientOptions } from './common';
import { EXIT_CODES } from './output';

export function buildProgram(): Command {
  const program = new Command('shardsnap')
    .description(
      'shard node that streams full and slot-range snapshots over gRPC in verified, resumable chunks',
    )
    .option('--json', 'print one JSON object instead of human output')
    .showHelpAfterError()
    .exitOverride();
  registerServe(program);
  registerData(program);
  registerSnapshots(program);
  registerArchive(program);
  registerSplit(program);
  registerDemo(program);
  addClientOptionsEverywhere(program);
  return program;
}

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
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      process.exitCode = error.exitCode === 0 ? 0 : EXIT_CODES.usage;
      return;
    }
    throw error;
  }
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
