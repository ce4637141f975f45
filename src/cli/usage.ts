import { ADDR_ENV } from './common';

/**
 * Commander's error text as the CLI prints it: without its `error: ` prefix when the
 * text goes into JSON, and with a hint when a node option is missing that the
 * environment could have given.
 */
export function usageMessage(text: string): string {
  const missingNode = /required option '(--[a-z-]+) <host:port>' not specified/.exec(text);
  const hinted = missingNode
    ? text.replace(missingNode[0], `${missingNode[0]} (give it, or set ${ADDR_ENV})`)
    : text;
  return hinted;
}

/** `commander.unknownOption` → `UNKNOWN_OPTION`: the kind of usage error, for programs. */
export function usageReason(code: string): string {
  const name = code.replace(/^commander\./, '');
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase() || 'USAGE';
}
