import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { invalidArgument } from '../../core';
import { validateToken } from '../../wire/security';

export const ROLES = ['read', 'write', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** Each role may do what the roles before it may. */
export const ROLE_RANK: Record<Role, number> = { read: 0, write: 1, admin: 2 };

export interface TokenHolder {
  name: string;
  role: Role;
}

interface Entry extends TokenHolder {
  digest: Buffer;
}

/** Tokens shorter than this are refused: they could be guessed. */
const MIN_TOKEN_LENGTH = 16;

const digestOf = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * The tokens of `--auth-tokens`. Only their SHA-256 digests are kept, and a presented
 * token is compared with every one of them in constant time, so neither the time a
 * lookup takes nor a heap dump tells anything about the tokens.
 */
export class TokenTable {
  private constructor(private readonly entries: readonly Entry[]) {}

  static parse(text: string, where: string): TokenTable {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      // The parser's message quotes the text around the error: it could be a token.
      throw invalidArgument(`${where}: not valid JSON`);
    }
    const tokens = (json as { tokens?: unknown } | null)?.tokens;
    if (!Array.isArray(tokens) || tokens.length === 0) {
      throw invalidArgument(`${where}: expected {"tokens": [{"name", "token", "role"}, ...]}`);
    }
    const names = new Set<string>();
    const digests = new Set<string>();
    const entries = tokens.map((item: unknown, i): Entry => {
      const at = `${where}: tokens[${i}]`;
      const { name, token, role } = (item ?? {}) as Record<string, unknown>;
      if (typeof name !== 'string' || name.length === 0) throw invalidArgument(`${at}: no name`);
      if (names.has(name)) throw invalidArgument(`${at}: the name "${name}" is used twice`);
      if (typeof token !== 'string') throw invalidArgument(`${at} (${name}): no token`);
      validateToken(token, `${at} (${name})`);
      if (token.length < MIN_TOKEN_LENGTH) {
        throw invalidArgument(
          `${at} (${name}): a token needs at least ${MIN_TOKEN_LENGTH} characters`,
        );
      }
      if (!ROLES.includes(role as Role)) {
        throw invalidArgument(`${at} (${name}): role must be one of ${ROLES.join(', ')}`);
      }
      const digest = digestOf(token);
      const hex = digest.toString('hex');
      if (digests.has(hex))
        throw invalidArgument(`${at} (${name}): the same token is listed twice`);
      names.add(name);
      digests.add(hex);
      return { name, role: role as Role, digest };
    });
    return new TokenTable(entries);
  }

  static async load(path: string): Promise<TokenTable> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      throw invalidArgument(`--auth-tokens ${path}: ${(error as Error).message}`, error);
    }
    return TokenTable.parse(text, `--auth-tokens ${path}`);
  }

  get size(): number {
    return this.entries.length;
  }

  /** Who holds `token`, or undefined. Looks at every entry whatever matches. */
  holder(token: string): TokenHolder | undefined {
    const digest = digestOf(token);
    let found: Entry | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && !found) found = entry;
    }
    return found && { name: found.name, role: found.role };
  }
}
