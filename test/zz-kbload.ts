import { randomBytes } from 'node:crypto';
const { MemoryStore } = require(process.env.REPO + '/src/store');
async function main() {
  const n = Number(process.argv[2] ?? 1000000), size = Number(process.argv[3] ?? 1000);
  const store = new MemoryStore();
  const pool = randomBytes(size * 64);
  const batches = [];
  const t0 = performance.now();
  for (let i = 0; i < n; i += 500) {
    const batch = [];
    for (let j = i; j < Math.min(n, i + 500); j++) {
      const off = (j * 7919) % (size * 63);
      batch.push({ op: 'set', key: Buffer.from(`key:${String(j).padStart(9, '0')}`), value: Buffer.from(pool.subarray(off, off + size)), expireAtMs: 0 });
    }
    await store.write(batch);
  }
  const t1 = performance.now();
  global.gc?.(); await new Promise((r) => setTimeout(r, 200)); global.gc?.();
  const mu = process.memoryUsage();
  let gcs = 0; const { PerformanceObserver } = require('node:perf_hooks');
  let gcMs = 0; const obs = new PerformanceObserver((l: any) => { for (const e of l.getEntries()) { gcs++; gcMs += e.duration; } }); obs.observe({ entryTypes: ['gc'] });
  const v = await store.openView([]);
  const t2 = performance.now(); let c = 0; let junk = 0;
  for await (const b of v.batches({ maxRecords: 512, maxBytes: 256 << 10 })) { c += b.length; const x = Buffer.allocUnsafe(256 << 10); junk += x.length; }
  const t3 = performance.now();
  await new Promise((r) => setTimeout(r, 100));
  console.log(`${process.env.REPO} ${n}x${size}: load ${(t1 - t0).toFixed(0)} ms; rss ${(mu.rss / 2**20).toFixed(0)} MiB heap ${(mu.heapUsed / 2**20).toFixed(0)} MiB; scan ${c} in ${(t3 - t2).toFixed(0)} ms, ${gcs} gcs ${gcMs.toFixed(0)} ms`);
}
void main();
