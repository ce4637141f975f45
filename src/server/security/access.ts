import type * as grpc from '@grpc/grpc-js';
import { ErrorCodes, ShardsnapError } from '../../core';
import { AUTHORIZATION_HEADER } from '../../wire/security';
import { ROLE_RANK, type Role, type TokenHolder, type TokenTable } from './tokens';

/**
 * The role each RPC needs. Reads (and building a snapshot to read) need `read`,
 * foreground writes `write`; whatever replaces data, deletes it, makes the node dial
 * out or hands slots over needs `admin`. An RPC missing here needs `admin`.
 */
export const REQUIRED_ROLE: Readonly<Record<string, Role>> = {
  Read: 'read',
  Stats: 'read',
  Digest: 'read',
  SlotSizes: 'read',
  Topology: 'read',
  GetSnapshot: 'read',
  ListSnapshots: 'read',
  // A read token may delete the snapshots its own calls created (checked by the handler);
  // any other snapshot needs admin.
  DeleteSnapshot: 'read',
  CreateSnapshot: 'read',
  FetchSnapshot: 'read',
  StreamChanges: 'read',
  ListArchives: 'read',
  GetMigration: 'read',
  Write: 'write',
  InstallSnapshot: 'admin',
  PullSnapshot: 'admin',
  ArchiveSnapshot: 'admin',
  DeleteArchive: 'admin',
  MigrateSlots: 'admin',
  CancelMigration: 'admin',
  PrepareHandoff: 'admin',
  CommitHandoff: 'admin',
  AbortHandoff: 'admin',
};

export type RejectReason = 'unauthenticated' | 'permission_denied';

/** The bearer token of a call's metadata, if it carries one. */
function bearerToken(metadata: grpc.Metadata): string | undefined {
  const [value] = metadata.get(AUTHORIZATION_HEADER);
  if (typeof value !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(value);
  return match?.[1];
}

/**
 * Decides whether a call may run. Without a token table every call may (a node on a
 * trusted network); with one, a call needs a known token of a role high enough.
 */
export class AccessControl {
  constructor(
    private readonly tokens: TokenTable | undefined,
    private readonly onReject?: (reason: RejectReason, method: string) => void,
  ) {}

  get enabled(): boolean {
    return this.tokens !== undefined;
  }

  /** Throws UNAUTHENTICATED or PERMISSION_DENIED; returns who called (when tokens are on). */
  admit(method: string, metadata: grpc.Metadata): TokenHolder | undefined {
    if (!this.tokens) return undefined;
    const token = bearerToken(metadata);
    const holder = token === undefined ? undefined : this.tokens.holder(token);
    if (!holder) {
      this.onReject?.('unauthenticated', method);
      throw new ShardsnapError(
        ErrorCodes.unauthenticated,
        token === undefined
          ? `${method} needs a token (authorization: Bearer <token>)`
          : `${method}: unknown token`,
      );
    }
    const needed = REQUIRED_ROLE[method] ?? 'admin';
    if (ROLE_RANK[holder.role] < ROLE_RANK[needed]) {
      this.onReject?.('permission_denied', method);
      throw new ShardsnapError(
        ErrorCodes.permissionDenied,
        `${method} needs the ${needed} role; token "${holder.name}" has ${holder.role}`,
      );
    }
    return holder;
  }
}
