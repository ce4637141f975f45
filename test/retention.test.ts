import { existsSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { startNode } from './helpers/nodes';

test('--keep-recent keeps only the newest ready snapshots', async (t) => {
  const node = await startNode({ keepRecent: 2 });
  t.teardown(() => node.stop());
  await node.client.write({
    mutations: [{ op: 'set', key: Buffer.from('k'), value: Buffer.from('v'), expireAtMs: 0 }],
  });
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const created = await node.client.createSnapshot();
    await node.client.waitReady({ snapshotId: created.id });
    ids.push(created.id);
    await node.client.write({
      mutations: [{ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from('v'), expireAtMs: 0 }],
    });
  }
  const listed = (await node.client.listSnapshots()).map((s) => s.id);
  t.deepEqual(listed, ids.slice(2));
  for (const id of ids.slice(0, 2)) t.false(existsSync(join(node.dataDir, 'snapshots', id)));
  for (const id of ids.slice(2)) t.true(existsSync(join(node.dataDir, 'snapshots', id)));
});
