import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { invalidArgument } from '../core';

/** Names of clusters, nodes and controllers: safe in an etcd key and a log line. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function validName(value: string, what: string): string {
  if (!NAME.test(value)) {
    throw invalidArgument(
      `${what} ${JSON.stringify(value)} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return value;
}

/** A default name for this process's node or controller: the host name and a random suffix. */
export function hostDerivedName(prefix = ''): string {
  const host = hostname().replace(/[^A-Za-z0-9._-]/g, '-');
  return validName(`${prefix}${host}-${randomBytes(3).toString('hex')}`, 'name');
}

/** Where one cluster keeps its state in etcd (see docs/design/cluster.md). */
export class ClusterKeys {
  readonly prefix: string;

  constructor(readonly cluster: string) {
    this.prefix = `/shardsnap/${validName(cluster, 'cluster name')}/`;
  }

  get topology(): string {
    return `${this.prefix}topology`;
  }

  get leader(): string {
    return `${this.prefix}leader`;
  }

  get nodes(): string {
    return `${this.prefix}nodes/`;
  }

  node(id: string): string {
    return `${this.nodes}${id}`;
  }

  /** Nodes drained and deregistered by remove-node: they may not register again. */
  get removed(): string {
    return `${this.prefix}removed/`;
  }

  removedNode(id: string): string {
    return `${this.removed}${id}`;
  }

  get migrations(): string {
    return `${this.prefix}migrations/`;
  }

  migration(id: string): string {
    return `${this.migrations}${id}`;
  }

  /** Operations handed to a long-running controller (`shardsnap controller`). */
  get requests(): string {
    return `${this.prefix}requests/`;
  }

  request(id: string): string {
    return `${this.requests}${id}`;
  }

  /** The last path element of a key under `dir`. */
  nameIn(dir: string, key: string): string {
    return key.slice(dir.length);
  }
}
