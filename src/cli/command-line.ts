/**
 * The command the user ran, as a line to paste back into a shell: `shardsnap` and the
 * arguments, quoted where a shell would split or expand them, with some options dropped
 * (`drop`: flags, and options with their value) or added. Hints print it ("resume with").
 */
export function commandLine(
  args: readonly string[],
  edit: {
    drop?: readonly string[];
    dropWithValue?: readonly string[];
    add?: readonly string[];
  } = {},
): string {
  const kept: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const name = arg.split('=', 1)[0] as string;
    if (edit.drop?.includes(arg)) continue;
    if (edit.dropWithValue?.includes(name)) {
      if (!arg.includes('=')) i++;
      continue;
    }
    kept.push(arg);
  }
  for (const extra of edit.add ?? []) if (!kept.includes(extra)) kept.push(extra);
  return ['shardsnap', ...kept].map(shellQuote).join(' ');
}

function shellQuote(arg: string): string {
  if (/^[\w@%+=:,./-]+$/.test(arg)) return arg;
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}
