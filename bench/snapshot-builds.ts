/**
 * Snapshot builds timed from CreateSnapshot until GetSnapshot (polled every ~5 ms) says
 * READY, optionally with the server's RSS sampled and single-key writes issued (one in
 * flight) for the whole build.
 */
import { randomBytes } from 'node:crypto';
import type { ShardsnapClient } from '../src/client/client';
import { keyName } from '../src/client/synthetic';
import type { SlotRange } from '../src/core';
import type { SnapshotInfo__Output } from '../src/generated/shardsnap/v1/SnapshotInfo';
import { type RssSummary, RssSampler } from './memory-snapshot';
import { now, sleep } from './util';

export interface BuildResult {
  id: string;
  ms: number;
  info: SnapshotInfo__Output;
  polls: number;
}

/**
 * CreateSnapshot (with the node's preferred strategy unless `strategy` is given), then
 * GetSnapshot every `pollMs` until READY (FAILED or timeout throws).
 */
export async function buildUntilReady(
  client: ShardsnapClient,
  slots: SlotRange[],
  options: { pollMs?: number; timeoutMs: number; strategy?: string },
): Promise<BuildResult> {
  const pollMs = options.pollMs ?? 5;
  const started = now();
  const created = await client.createSnapshot(
    options.strategy ? { slots, strategy: options.strategy } : { slots },
  );
  let polls = 0;
  for (;;) {
    const info = await client.getSnapshot({ snapshotId: created.id });
    polls++;
    if (info.state === 'READY') return { id: created.id, ms: now() - started, info, polls };
    if (info.state === 'FAILED') throw new Error(`snapshot ${created.id} failed: ${info.error}`);
    if (now() - started > options.timeoutMs) {
      throw new Error(
        `snapshot ${created.id} not READY after ${Math.round(options.timeoutMs / 1000)} s (${info.bytesWritten} bytes written)`,
      );
    }
    await sleep(pollMs);
  }
}

export interface SampledBuild extends BuildResult {
  rss: RssSummary;
}

/** A build with the server's VmRSS sampled every `intervalMs` from just before CreateSnapshot until READY. */
export async function sampledBuild(
  client: ShardsnapClient,
  pid: number,
  slots: SlotRange[],
  options: { timeoutMs: number; intervalMs?: number },
): Promise<SampledBuild> {
  const sampler = new RssSampler(pid, options.intervalMs ?? 10);
  let rss: RssSummary | undefined;
  try {
    const build = await buildUntilReady(client, slots, { timeoutMs: options.timeoutMs });
    rss = sampler.stop();
    return { ...build, rss };
  } finally {
    if (!rss) sampler.stop();
  }
}

export interface WriteLatencies {
  /** Milliseconds of each write, in order. */
  samples: number[];
  ms: number;
}

/**
 * Sequential single-key SETs (one in flight) of existing keys with fresh `valueSize`-byte
 * values until `done()` is true, at most `maxWrites` and `maxMs`.
 */
export async function writeLoop(
  client: ShardsnapClient,
  options: {
    keys: number;
    valueSize: number;
    done: () => boolean;
    maxWrites: number;
    maxMs: number;
  },
): Promise<WriteLatencies> {
  const values = Array.from({ length: 16 }, () => randomBytes(options.valueSize));
  const samples: number[] = [];
  let state = 0x9e3779b9;
  const started = now();
  while (!options.done() && samples.length < options.maxWrites && now() - started < options.maxMs) {
    // xorshift32: spread the writes over the whole key space, ahead of and behind the scan.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    const i = state % options.keys;
    const value = values[samples.length % values.length] as Buffer;
    const t0 = now();
    await client.write({ mutations: [{ op: 'set', key: keyName(i), value, expireAtMs: 0 }] });
    samples.push(now() - t0);
  }
  return { samples, ms: now() - started };
}

export interface BuildUnderWrites extends SampledBuild {
  writes: WriteLatencies;
}

/** A full build with RSS sampling while `writer` issues single-key writes until READY. */
export async function buildUnderWrites(
  client: ShardsnapClient,
  writer: ShardsnapClient,
  pid: number,
  options: { keys: number; valueSize: number; timeoutMs: number; maxWrites: number },
): Promise<BuildUnderWrites> {
  let finished = false;
  const writes = writeLoop(writer, {
    keys: options.keys,
    valueSize: options.valueSize,
    done: () => finished,
    maxWrites: options.maxWrites,
    maxMs: options.timeoutMs,
  });
  // Handled here so a failing write loop never becomes an unhandled rejection; its error
  // still surfaces through `await writes` below.
  void writes.catch(() => undefined);
  try {
    const build = await sampledBuild(client, pid, [], { timeoutMs: options.timeoutMs });
    finished = true;
    return { ...build, writes: await writes };
  } finally {
    finished = true;
    await writes.catch(() => undefined);
  }
}
