import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { ShardNode, type StartOptions } from '../../src/server';
import { ShardsnapClient } from '../../src/client';
import type { ClientSecurity } from '../../src/wire';

export interface TestNode {
  node: ShardNode;
  client: ShardsnapClient;
  dataDir: string;
  stop(): Promise<void>;
}

export async function tempDir(prefix = 'shardsnap-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A real node on 127.0.0.1:0 with its own data dir, and a client for it. */
export async function startNode(
  options: Partial<StartOptions> = {},
  security: ClientSecurity = {},
): Promise<TestNode> {
  const dataDir = options.dataDir ?? (await tempDir());
  const node = await ShardNode.start({
    listen: '127.0.0.1:0',
    logger: pino({ level: process.env.SHARDSNAP_TEST_LOG ?? 'silent' }),
    ...options,
    dataDir,
  }).catch(async (error: unknown) => {
    if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    throw error;
  });
  const client = new ShardsnapClient(node.address, { security });
  return {
    node,
    client,
    dataDir,
    async stop() {
      client.close();
      await node.stop(500);
      if (!options.dataDir) await rm(dataDir, { recursive: true, force: true });
    },
  };
}
