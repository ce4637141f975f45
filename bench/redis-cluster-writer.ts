/**
 * A steady single-key writer against a Redis Cluster, one SET in flight, that follows
 * MOVED and ASK by hand the way a cluster client does, so a slot migration shows up as
 * redirections and as the latency of the writes that wait on it.
 */
import { type Arg, type Reply, RespConnection, RespError } from './resp';
import { pacedWrites } from './paced-writes';
import { percentile, sleep } from './util';

export interface WriterKey {
  key: Buffer;
  slot: number;
}

export interface WriteSample {
  /** performance.now() when the write was sent. */
  startedAt: number;
  ms: number;
}

export interface WriterStats {
  /** Acknowledged writes in the window. */
  writes: number;
  writesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Longest time between two consecutive acknowledgements in the window. */
  maxGapMs: number;
}

/** Value of write `seq`: its number up front, then a byte pattern, exactly `size` bytes. */
export function writerValue(seq: number, size: number): Buffer {
  const value = Buffer.alloc(size, 0x61 + (seq % 26));
  value.write(`w${seq}:`, 0, 'latin1');
  return value;
}

const parseAddress = (text: string | undefined): number => {
  // Redirections name the announced address; everything here lives on loopback.
  const match = /^127\.0\.0\.1:(\d+)$/.exec(text ?? '');
  if (!match) throw new Error(`redirection to an unexpected address "${text ?? ''}"`);
  return Number(match[1]);
};

/** Slot → port map of a cluster, from CLUSTER SLOTS. */
export function slotPorts(reply: Reply): Int32Array {
  const map = new Int32Array(16384).fill(-1);
  if (!Array.isArray(reply)) throw new Error(`CLUSTER SLOTS: unexpected reply`);
  for (const entry of reply) {
    if (!Array.isArray(entry)) continue;
    const [start, end, master] = entry;
    if (typeof start !== 'number' || typeof end !== 'number' || !Array.isArray(master)) continue;
    const port = master[1];
    if (typeof port !== 'number') continue;
    map.fill(port, start, end + 1);
  }
  return map;
}

export class ClusterWriter {
  private readonly connections = new Map<number, Promise<RespConnection>>();
  private stopped = false;
  private loop: Promise<void> | undefined;
  private seq = 0;
  readonly samples: WriteSample[] = [];
  /** Index into `keys` → seq of its last acknowledged write. */
  readonly lastAcked = new Map<number, number>();
  moved = 0;
  asks = 0;
  retries = 0;

  constructor(
    private readonly keys: readonly WriterKey[],
    private readonly valueBytes: number,
    private slotPort: Int32Array,
    private readonly callTimeoutMs = 10_000,
  ) {
    if (keys.length === 0) throw new Error('the writer has no keys to write');
  }

  private connection(port: number): Promise<RespConnection> {
    let conn = this.connections.get(port);
    if (!conn) {
      conn = RespConnection.connect(port);
      // A failed connect is not cached: the next write tries again.
      conn.catch(() => this.connections.delete(port));
      this.connections.set(port, conn);
    }
    return conn;
  }

  private async send(port: number, commands: Arg[][]): Promise<Reply[]> {
    const conn = await this.connection(port);
    try {
      return await conn.pipeline(commands, this.callTimeoutMs);
    } catch (error) {
      this.connections.delete(port);
      throw error;
    }
  }

  /** One SET, following redirections; resolves once a node acknowledged it. */
  async set(key: WriterKey, value: Buffer): Promise<void> {
    let port = this.slotPort[key.slot] ?? -1;
    let asking = false;
    for (let attempt = 0; attempt < 50; attempt++) {
      if (port < 0) throw new Error(`no node serves slot ${key.slot}`);
      const set: Arg[] = ['SET', key.key, value];
      const replies = await this.send(port, asking ? [['ASKING'], set] : [set]);
      const reply = replies[replies.length - 1];
      asking = false;
      if (!(reply instanceof RespError)) {
        if (reply !== 'OK') throw new Error(`SET answered ${JSON.stringify(reply)}`);
        return;
      }
      const [kind, , address] = reply.message.split(' ');
      if (kind === 'MOVED') {
        port = parseAddress(address);
        this.slotPort[key.slot] = port;
        this.moved++;
      } else if (kind === 'ASK') {
        port = parseAddress(address);
        asking = true;
        this.asks++;
      } else if (kind === 'TRYAGAIN' || kind === 'CLUSTERDOWN') {
        this.retries++;
        port = this.slotPort[key.slot] ?? -1;
        await sleep(5);
      } else {
        throw new Error(`SET ${key.key.toString()}: ${reply.message}`);
      }
    }
    throw new Error(`SET ${key.key.toString()}: still redirected after 50 attempts`);
  }

  /** Writes random keys of the pool until stop() or `maxMs` (see pacedWrites). */
  start(maxMs: number, ratePerSec = 0): void {
    if (this.loop) throw new Error('the writer is already running');
    this.loop = pacedWrites({
      maxMs,
      ratePerSec,
      keyCount: this.keys.length,
      stopped: () => this.stopped,
      step: async (index) => {
        const key = this.keys[index] as WriterKey;
        const seq = ++this.seq;
        const startedAt = performance.now();
        await this.set(key, writerValue(seq, this.valueBytes));
        this.samples.push({ startedAt, ms: performance.now() - startedAt });
        this.lastAcked.set(index, seq);
      },
    });
    // Errors surface from stop(); this only keeps an early failure from going unhandled.
    this.loop.catch(() => undefined);
  }

  /** Stops the loop and waits for the write in flight; rethrows the loop's error. */
  async stop(): Promise<void> {
    this.stopped = true;
    try {
      if (this.loop) await this.loop;
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    for (const conn of this.connections.values()) {
      try {
        (await conn).close();
      } catch {
        // Never connected.
      }
    }
    this.connections.clear();
  }

  /** Latency figures of the writes started within [from, to). */
  stats(from: number, to: number): WriterStats {
    const window = this.samples.filter((s) => s.startedAt >= from && s.startedAt < to);
    const ms = window.map((s) => s.ms);
    let maxGap = 0;
    let previous = from;
    for (const s of window) {
      const ackedAt = s.startedAt + s.ms;
      maxGap = Math.max(maxGap, ackedAt - previous);
      previous = ackedAt;
    }
    const seconds = (to - from) / 1000;
    return {
      writes: window.length,
      writesPerSec: seconds > 0 ? window.length / seconds : 0,
      p50Ms: percentile(ms, 50),
      p99Ms: percentile(ms, 99),
      maxMs: ms.length > 0 ? Math.max(...ms) : NaN,
      maxGapMs: maxGap,
    };
  }

  /**
   * Reads back every key the writer acknowledged, routed by `slotPort` (fresh after the
   * migration), and counts those whose value is not the last acknowledged one.
   */
  async verify(slotPort: Int32Array): Promise<{ checked: number; lost: string[] }> {
    this.slotPort = slotPort;
    const byPort = new Map<number, [number, number][]>();
    for (const [index, seq] of this.lastAcked) {
      const key = this.keys[index] as WriterKey;
      const port = slotPort[key.slot] ?? -1;
      if (port < 0) throw new Error(`no node serves slot ${key.slot}`);
      let list = byPort.get(port);
      if (!list) byPort.set(port, (list = []));
      list.push([index, seq]);
    }
    const lost: string[] = [];
    let checked = 0;
    for (const [port, list] of byPort) {
      for (let at = 0; at < list.length; at += 500) {
        const batch = list.slice(at, at + 500);
        const replies = await this.send(
          port,
          batch.map(([index]) => ['GET', (this.keys[index] as WriterKey).key]),
        );
        batch.forEach(([index, seq], i) => {
          const reply = replies[i];
          checked++;
          if (!Buffer.isBuffer(reply) || !reply.equals(writerValue(seq, this.valueBytes))) {
            const key = (this.keys[index] as WriterKey).key.toString();
            const got =
              reply instanceof RespError
                ? reply.message
                : Buffer.isBuffer(reply)
                  ? reply.subarray(0, 12).toString('latin1')
                  : String(reply);
            lost.push(`${key}: expected w${seq}, got ${got}`);
          }
        });
      }
    }
    return { checked, lost };
  }
}
