/**
 * Proto enum values as the CLI spells them: the words its options accept (`none`,
 * `zstd`), lower-case for the others (`ready`, `catch-up`). The one place that knows the
 * wire spellings (`COMPRESSION_ZSTD`, `READY`, `CATCH_UP`).
 */
const PREFIXES: Record<string, string> = { compression: 'COMPRESSION_' };

/** Fields whose values are proto enums, by JSON key. */
export const ENUM_FIELDS = new Set(['compression', 'state', 'phase']);

/** `COMPRESSION_ZSTD` → `zstd`, `READY` → `ready`, `CATCH_UP` → `catch-up`. */
export function enumWord(field: string, value: string): string {
  const prefix = PREFIXES[field];
  const bare = prefix && value.startsWith(prefix) ? value.slice(prefix.length) : value;
  return bare.toLowerCase().replaceAll('_', '-');
}
