/** Certificates and token files for tests, made with the openssl command line tool. */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ClientSecurity } from '../../src/wire';

const run = promisify(execFile);

export interface Pki {
  dir: string;
  ca: string;
  /** A node's certificate and key (SAN: localhost, 127.0.0.1), also usable as a client cert. */
  nodeCert: string;
  nodeKey: string;
  /** A client certificate signed by the CA. */
  clientCert: string;
  clientKey: string;
  /** A CA nobody else uses, and a client certificate it signed. */
  otherCa: string;
  strangerCert: string;
  strangerKey: string;
  read(path: string): Promise<Buffer>;
}

async function openssl(cwd: string, args: string[]): Promise<void> {
  await run('openssl', args, { cwd });
}

async function makeCa(dir: string, name: string): Promise<void> {
  await openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
  ]);
}

async function makeLeaf(dir: string, ca: string, name: string, san: string): Promise<void> {
  await openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.csr`,
    '-subj',
    `/CN=${name}`,
  ]);
  await writeFile(
    join(dir, `${name}.ext`),
    `subjectAltName=${san}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}.pem`,
    '-CAkey',
    `${ca}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.pem`,
    '-days',
    '2',
    '-extfile',
    `${name}.ext`,
  ]);
}

/** A CA, a node certificate, a client certificate and a stranger from another CA. */
export async function makePki(): Promise<Pki> {
  const dir = await mkdtemp(join(tmpdir(), 'shardsnap-pki-'));
  await makeCa(dir, 'ca');
  await makeCa(dir, 'other-ca');
  await makeLeaf(dir, 'ca', 'node', 'DNS:localhost,IP:127.0.0.1');
  await makeLeaf(dir, 'ca', 'client', 'DNS:client');
  await makeLeaf(dir, 'other-ca', 'stranger', 'DNS:stranger');
  const at = (file: string): string => join(dir, file);
  return {
    dir,
    ca: at('ca.pem'),
    nodeCert: at('node.pem'),
    nodeKey: at('node.key'),
    clientCert: at('client.pem'),
    clientKey: at('client.key'),
    otherCa: at('other-ca.pem'),
    strangerCert: at('stranger.pem'),
    strangerKey: at('stranger.key'),
    read: (path) => readFile(path),
  };
}

/** Client settings trusting the test CA, with the client certificate when `mutual`. */
export async function clientTls(
  pki: Pki,
  options: { mutual?: boolean; token?: string } = {},
): Promise<ClientSecurity> {
  return {
    tls: {
      ca: await pki.read(pki.ca),
      ...(options.mutual
        ? { cert: await pki.read(pki.clientCert), key: await pki.read(pki.clientKey) }
        : {}),
    },
    ...(options.token ? { token: options.token } : {}),
  };
}

export const TOKENS = {
  read: 'read-token-0123456789abcdef',
  write: 'write-token-0123456789abcdef',
  admin: 'admin-token-0123456789abcdef',
} as const;

/** A `--auth-tokens` file with one token per role, in `dir`. */
export async function writeTokenFile(dir: string): Promise<string> {
  const path = join(dir, 'tokens.json');
  await writeFile(
    path,
    JSON.stringify({
      tokens: Object.entries(TOKENS).map(([role, token]) => ({
        name: `${role}-user`,
        token,
        role,
      })),
    }),
  );
  return path;
}
