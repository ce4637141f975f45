import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { ErrorCodes, ShardsnapError, invalidArgument } from '../../core';
import { parseHostPort } from '../config';

interface HostRule {
  host: string;
  port: number | undefined;
}

const unbracket = (host: string): string => host.replace(/^\[(.*)\]$/, '$1');
const familyOf = (ip: string): 'ipv4' | 'ipv6' => (isIP(ip) === 6 ? 'ipv6' : 'ipv4');

/**
 * `--allow-peers`: the addresses this node may dial for pulls and splits. An entry is a
 * host name, an IP address (either optionally with `:port`), or a CIDR block. A name in
 * a request matches a name entry as written; it matches IP and CIDR entries only if
 * every address it resolves to does. The check runs before any connection is opened.
 */
export class PeerPolicy {
  private readonly blocks = new BlockList();
  private hasBlocks = false;
  private readonly ips: HostRule[] = [];
  private readonly names: HostRule[] = [];

  private constructor(readonly entries: readonly string[]) {}

  static parse(list: readonly string[]): PeerPolicy {
    const entries = list.map((e) => e.trim()).filter((e) => e.length > 0);
    if (entries.length === 0) throw invalidArgument('--allow-peers: the list is empty');
    const policy = new PeerPolicy(entries);
    for (const entry of entries) policy.add(entry);
    return policy;
  }

  private add(entry: string): void {
    const cidr = /^([^/]+)\/(\d{1,3})$/.exec(entry);
    if (cidr) {
      const ip = unbracket(cidr[1] as string);
      const prefix = Number(cidr[2]);
      const family = familyOf(ip);
      if (!isIP(ip) || prefix > (family === 'ipv4' ? 32 : 128)) {
        throw invalidArgument(`--allow-peers: "${entry}" is not a CIDR block`);
      }
      this.blocks.addSubnet(ip, prefix, family);
      this.hasBlocks = true;
      return;
    }
    let rule: HostRule;
    if (isIP(unbracket(entry))) {
      rule = { host: unbracket(entry), port: undefined };
    } else if (/:\d+$/.test(entry)) {
      const { host, port } = parseHostPort(entry);
      rule = { host: unbracket(host), port };
    } else {
      rule = { host: entry, port: undefined };
    }
    if (!/^[A-Za-z0-9.:_-]+$/.test(rule.host)) {
      throw invalidArgument(`--allow-peers: "${entry}" is not a host, host:port or CIDR`);
    }
    if (isIP(rule.host)) this.ips.push(rule);
    else this.names.push({ host: rule.host.toLowerCase(), port: rule.port });
  }

  private ipAllowed(ip: string, port: number): boolean {
    if (this.hasBlocks && this.blocks.check(ip, familyOf(ip))) return true;
    return this.ips.some((r) => sameIp(r.host, ip) && (r.port === undefined || r.port === port));
  }

  /** Throws PERMISSION_DENIED unless `address` (host:port) may be dialed. */
  async check(address: string, what: string): Promise<void> {
    const { host: bracketed, port } = parseHostPort(address);
    const host = unbracket(bracketed);
    const portOk = (r: HostRule): boolean => r.port === undefined || r.port === port;
    if (isIP(host)) {
      if (this.ipAllowed(host, port)) return;
    } else {
      const name = host.toLowerCase();
      if (this.names.some((r) => r.host === name && portOk(r))) return;
      if (this.hasBlocks || this.ips.length > 0) {
        // Resolving is not dialing: no connection reaches the address before the answer.
        const resolved = await lookup(host, { all: true }).catch(() => []);
        if (resolved.length > 0 && resolved.every((r) => this.ipAllowed(r.address, port))) return;
      }
    }
    throw new ShardsnapError(
      ErrorCodes.permissionDenied,
      `${what}: ${address} is not among the peers this node may dial (--allow-peers ${this.entries.join(',')})`,
    );
  }
}

function sameIp(a: string, b: string): boolean {
  if (a === b) return true;
  const list = new BlockList();
  list.addAddress(a, familyOf(a));
  return list.check(b, familyOf(b));
}
