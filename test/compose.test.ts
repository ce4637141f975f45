import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';
import { type Command, CommanderError } from 'commander';
import { buildProgram } from '../src/cli/main';

/** The `command:` of every service built from this repository, as argument lists. */
async function nodeCommands(): Promise<Array<{ service: string; args: string[] }>> {
  const text = await readFile(join(__dirname, '..', 'docker-compose.yml'), 'utf8');
  const out: Array<{ service: string; args: string[] }> = [];
  let service = '';
  let builtHere = false;
  for (const line of text.split('\n')) {
    const name = /^ {2}([a-z0-9-]+):\s*$/.exec(line);
    if (name) {
      service = name[1] as string;
      builtHere = false;
    }
    if (/^ {4}build: \.\s*$/.test(line)) builtHere = true;
    const command = /^ {4}command: (\[.*\])\s*$/.exec(line);
    if (command && builtHere)
      out.push({ service, args: JSON.parse(command[1] as string) as string[] });
    if (command && !builtHere && service.startsWith('node'))
      throw new Error(`${service}: put build before command`);
  }
  return out;
}

/** Parses `args` with the real CLI definition, every action replaced by a no-op. */
async function accepts(args: string[]): Promise<string | undefined> {
  const program = buildProgram();
  const quiet = (command: Command): void => {
    command.configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
    if (command !== program) command.action(() => undefined);
    command.commands.forEach(quiet);
  };
  quiet(program);
  try {
    await program.parseAsync(['node', 'shardsnap', ...args]);
    return undefined;
  } catch (error) {
    return error instanceof CommanderError ? error.message : String(error);
  }
}

test('every node service of docker-compose.yml runs a command the CLI accepts', async (t) => {
  const commands = await nodeCommands();
  t.deepEqual(
    commands.map((c) => c.service),
    ['node-memory', 'node-rocksdb'],
  );
  for (const { service, args } of commands) {
    t.is(args[0], 'serve', service);
    t.is(await accepts(args), undefined, `${service}: ${args.join(' ')}`);
  }
  // The check itself rejects what the CLI rejects.
  t.truthy(await accepts(['serve', '--data-dir', '/data', '--no-such-flag']));
  t.truthy(await accepts(['serve', '--listen', 'nowhere', '--data-dir', '/data']));
  t.truthy(await accepts(['serve']));
});
