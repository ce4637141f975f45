import { ENUM_FIELDS, enumWord } from './enums';

/**
 * Shapes a command's result for `--json`, so that every command speaks alike: keys in
 * camelCase (artifact headers and manifests use snake_case on disk), milliseconds
 * (`...Ms`) as whole numbers, rates (`...PerSecond`) with two decimals, enums as the CLI's words, bytes as base64, and 64-bit
 * integers as numbers (strings past 2^53, which JSON numbers cannot hold exactly).
 */
export function cliJson(value: unknown, key = ''): unknown {
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER)
      ? Number(value)
      : value.toString();
  }
  if (typeof value === 'number') {
    if (key.endsWith('Ms')) return Math.round(value);
    // Rates are measurements: two decimals say all there is to say.
    if (key.endsWith('PerSecond')) return Math.round(value * 100) / 100;
    return value;
  }
  if (typeof value === 'string') return ENUM_FIELDS.has(key) ? enumWord(key, value) : value;
  if (Buffer.isBuffer(value)) return value.toString('base64');
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((item) => cliJson(item));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [name, item] of Object.entries(value)) {
      if (item === undefined || typeof item === 'function') continue;
      const camel = camelCase(name);
      out[camel] = cliJson(item, camel);
    }
    return out;
  }
  return value;
}

/** `snapshot_id` → `snapshotId`; camelCase names stay as they are. */
export function camelCase(name: string): string {
  return name.replace(/_+([a-z0-9])/g, (_match, letter: string) => letter.toUpperCase());
}
