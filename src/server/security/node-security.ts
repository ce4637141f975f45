import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import { invalidArgument } from '../../core';
import { type ClientSecurity, validateToken } from '../../wire/security';
import type { NodeConfig } from '../config';
import { AccessControl, type RejectReason } from './access';
import { PeerPolicy } from './peer-policy';
import { TokenTable } from './tokens';

/** What a node's flags say about who may call it and how it calls others. */
export interface NodeSecurity {
  /** The listener's credentials: TLS (and client certificates) or plaintext. */
  server: grpc.ServerCredentials;
  /** Who may call what. */
  access: AccessControl;
  /** How this node dials other nodes (pulls, splits and their handoff calls). */
  peer: ClientSecurity;
  /** Which addresses this node may dial; undefined = any. */
  peers: PeerPolicy | undefined;
}

async function readFlagFile(path: string, flag: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (error) {
    throw invalidArgument(`${flag} ${path}: ${(error as Error).message}`, error);
  }
}

export async function loadNodeSecurity(
  config: NodeConfig,
  onReject?: (reason: RejectReason, method: string) => void,
): Promise<NodeSecurity> {
  let server = grpc.ServerCredentials.createInsecure();
  let own: { cert: Buffer; key: Buffer } | undefined;
  if (config.tls) {
    own = {
      cert: await readFlagFile(config.tls.cert, '--tls-cert'),
      key: await readFlagFile(config.tls.key, '--tls-key'),
    };
    const clientCa = config.tls.clientCa
      ? await readFlagFile(config.tls.clientCa, '--tls-client-ca')
      : null;
    try {
      server = grpc.ServerCredentials.createSsl(
        clientCa,
        [{ cert_chain: own.cert, private_key: own.key }],
        clientCa !== null,
      );
    } catch (error) {
      throw invalidArgument(`--tls-cert/--tls-key: ${(error as Error).message}`, error);
    }
  }
  const peer: ClientSecurity = {};
  if (config.peerTlsCa) {
    peer.tls = { ca: await readFlagFile(config.peerTlsCa, '--peer-tls-ca'), ...own };
  }
  if (config.peerTokenFile && !config.peerTlsCa && !config.allowPeers) {
    // A request names the address a pull or split dials: without TLS and without a list of
    // peers, anyone who may start one could have the token sent to them in clear.
    throw invalidArgument(
      '--peer-token-file needs --peer-tls-ca (the token then travels over TLS) or --allow-peers ' +
        '(the token goes only to the listed peers)',
    );
  }
  if (config.peerTokenFile) {
    const token = (await readFlagFile(config.peerTokenFile, '--peer-token-file'))
      .toString('utf8')
      .trim();
    peer.token = validateToken(token, `--peer-token-file ${config.peerTokenFile}`);
  }
  const tokens = config.authTokensFile ? await TokenTable.load(config.authTokensFile) : undefined;
  return {
    server,
    access: new AccessControl(tokens, onReject),
    peer,
    peers: config.allowPeers ? PeerPolicy.parse(config.allowPeers) : undefined,
  };
}
