import { Command, CommanderError } from 'commander';
import { registerArchive } from './commands/archive';
import { registerData } from './commands/data';
import { registerDemo } from './commands/demo';
import { registerServe } from './commands/serve';
import { registerSnapshots } from './commands/snapshots';
import { registerSplit } from './commands/split';
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
  return program;
}

export async function main(argv: string[]): Promise<void> {
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

if (require.main === module) {
  void main(process.argv);
}
