/**
 * Shared tools of the integration tests: nodes torn down with the test, raw gRPC calls
 * that keep the status code, chunk collection, a TCP proxy that can drop a connection,
 * and comparable forms of values read back from a node.
 */
import { createHash } from 'node:crypto';
import { rm } from 'node:fs/promises';
import * as net from 'node:net';
import type { ExecutionContext } from 'ava';
import type * as grpc from '@grpc/grpc-js';
import { credentials } from '@grpc/grpc-js';
import type { Connection } from '../../src/wire';
import { type Mutation, cloneEntry } from '../../src/core';
import type { SnapshotsClient } from '../../src/generated/shardsnap/v1/Snapshots';
import { RecordsWriter, encodeChunk } from '../../src/snapshot';
import {
  type SnapshotStrategy,
  type StrategyRegistry,
  defaultStrategies,
} from '../../src/strategies';
import { loadProto } from '../../src/wire/proto';
import type { FetchSnapshotRequest } from '../../src/generated/shardsnap/v1/FetchSnapshotRequest';
import type {
  SnapshotChunk,
  SnapshotChunk__Output,
} from '../../src/generated/shardsnap/v1/SnapshotChunk';
import type { Value__Output } from '../../src/generated/shardsnap/v1/Value';
import { type TestNode, startNode, tempDir } from './nodes';

export const b = (text: string): Buffer => Buffer.from(text);
export const sleep = (ms: number): Promise<void> =>
  new Promise((resolve) => setTimeout(resolve, ms));
export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** A node that is stopped (and its temp dir removed) when the test ends. */
export async function nodeFor(
  t: ExecutionContext,
  options: Parameters<typeof startNode>[0] = {},
): Promise<TestNode> {
  const node = await startNode(options);
  t.teardown(async () => {
    // ShardNode.stop() does not wait for snapshot builds to wind down (they may still
    // write into the data dir after it returns), so let running builds end first.
    await waitFor(() => node.node.catalog.buildingCount === 0, 5_000);
    await node.stop();
  });
  return node;
}

/** A temp dir removed when the test ends. */
export async function tempDirFor(t: ExecutionContext, prefix?: string): Promise<string> {
  const dir = await tempDir(prefix);
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Polls `check` until it returns a truthy value or `timeoutMs` passes (then returns the last value). */
export async function waitFor<T>(
  check: () => Promise<T> | T,
  timeoutMs = 3_000,
  pollMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || Date.now() >= deadline) return value;
    await sleep(pollMs);
  }
}

export type RawResult<T> = { ok: true; value: T } | { ok: false; error: grpc.ServiceError };

/** Calls a raw callback-style unary method and keeps the gRPC status of a failure. */
export function rawUnary<T>(
  invoke: (cb: (error: grpc.ServiceError | null, value?: T) => void) => unknown,
): Promise<RawResult<T>> {
  return new Promise((resolve) => {
    invoke((error, value) => {
      if (error) resolve({ ok: false, error });
      else resolve({ ok: true, value: value as T });
    });
  });
}

/** The gRPC status code of a raw unary call (0 = OK). */
export async function unaryCode(
  invoke: (cb: (error: grpc.ServiceError | null, value?: unknown) => void) => unknown,
): Promise<number> {
  const result = await rawUnary(invoke);
  return result.ok ? 0 : result.error.code;
}

export interface FetchOutcome {
  chunks: SnapshotChunk__Output[];
  error?: grpc.ServiceError;
}

/** Reads a raw FetchSnapshot stream to its end (or its error). */
export async function rawFetch(
  conn: Connection,
  request: FetchSnapshotRequest,
  timeoutMs = 15_000,
): Promise<FetchOutcome> {
  const stream = conn.snapshots.FetchSnapshot(request, { deadline: Date.now() + timeoutMs });
  const chunks: SnapshotChunk__Output[] = [];
  try {
    for await (const chunk of stream as AsyncIterable<SnapshotChunk__Output>) chunks.push(chunk);
    return { chunks };
  } catch (error) {
    return { chunks, error: error as grpc.ServiceError };
  }
}

/** The raw bytes of chunks fetched without compression. */
export function concatChunks(chunks: readonly SnapshotChunk__Output[]): Buffer {
  return Buffer.concat(chunks.map((c) => c.data));
}

/**
 * A TCP proxy on 127.0.0.1 in front of `target`. With `dropAfterBytes`, the first
 * connection that has carried that many bytes from the target to the client is
 * destroyed (both sides), once; later connections pass everything.
 */
export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  dropped = 0;
  connections = 0;

  private constructor(
    private readonly target: { host: string; port: number },
    private dropAfterBytes: number | undefined,
  ) {}

  /** Bytes from the target in which to flip one byte, once (see `corruptOnce`). */
  private needle: Buffer | undefined;
  corrupted = 0;

  /**
   * `dropAfterBytes`: destroy the first connection after it carried that many bytes from the
   * target. `corruptOnce`: flip the first byte of the first occurrence of these bytes in what
   * the target sends (once), leaving the connection up.
   */
  static async start(
    target: string,
    options: { dropAfterBytes?: number; corruptOnce?: Buffer } = {},
  ): Promise<TcpProxy> {
    const [host, port] = target.split(':');
    const proxy = new TcpProxy(
      { host: host as string, port: Number(port) },
      options.dropAfterBytes,
    );
    proxy.needle = options.corruptOnce;
    await proxy.listen();
    return proxy;
  }

  get address(): string {
    const address = this.server?.address() as net.AddressInfo;
    return `127.0.0.1:${address.port}`;
  }

  private listen(): Promise<void> {
    this.server = net.createServer((client) => this.handle(client));
    return new Promise((resolve) => this.server!.listen(0, '127.0.0.1', () => resolve()));
  }

  private handle(client: net.Socket): void {
    this.connections++;
    const upstream = net.connect(this.target.port, this.target.host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    let fromTarget = 0;
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => {
      this.sockets.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      this.sockets.delete(upstream);
      client.destroy();
    });
    client.pipe(upstream);
    // While a corruption is pending, the last bytes of each read are held back (and sent
    // soon after if nothing follows), so the needle is found even across reads.
    let held = Buffer.alloc(0);
    let flushTimer: NodeJS.Timeout | undefined;
    const forward = (data: Buffer): void => {
      if (data.length === 0 || client.destroyed) return;
      if (!client.write(data)) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    };
    upstream.on('data', (data: Buffer) => {
      fromTarget += data.length;
      if (this.dropAfterBytes !== undefined && fromTarget >= this.dropAfterBytes) {
        this.dropAfterBytes = undefined;
        this.dropped++;
        kill();
        return;
      }
      if (!this.needle) {
        forward(Buffer.concat([held, data]));
        held = Buffer.alloc(0);
        return;
      }
      const buf = Buffer.concat([held, data]);
      const at = buf.indexOf(this.needle);
      if (at >= 0) {
        buf[at] = (buf[at] as number) ^ 0xff;
        this.needle = undefined;
        this.corrupted++;
        held = Buffer.alloc(0);
        forward(buf);
        return;
      }
      const keep = Math.min(buf.length, this.needle.length - 1);
      forward(buf.subarray(0, buf.length - keep));
      held = Buffer.from(buf.subarray(buf.length - keep));
      clearTimeout(flushTimer);
      flushTimer = setTimeout(() => {
        forward(held);
        held = Buffer.alloc(0);
      }, 5);
    });
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
  }
}

/** A Read result in a form that compares by content (hash/set/zset members sorted). */
export function comparable(value: Value__Output | undefined): unknown {
  if (!value || !value.found) return { found: false };
  const hex = (x: Buffer): string => x.toString('hex');
  const base = { found: true, expireAtMs: Number(value.expireAtMs) };
  switch (value.kind) {
    case 'string':
      return { ...base, string: hex(value.string as Buffer) };
    case 'list':
      return { ...base, list: value.list!.items.map(hex) };
    case 'hash':
      return {
        ...base,
        hash: value
          .hash!.fields.map((f) => [hex(f.field), hex(f.value)])
          .sort((x, y) => (x[0]! < y[0]! ? -1 : 1)),
      };
    case 'set':
      return { ...base, set: value.set!.members.map(hex).sort() };
    case 'zset':
      return {
        ...base,
        zset: value
          .zset!.members.map((m) => [hex(m.member), m.score] as const)
          .sort((x, y) => (x[0] < y[0] ? -1 : 1)),
      };
    default:
      return { ...base, kind: value.kind };
  }
}

/** Keys of a given slot, made with a hash tag so the slot is known without search. */
export function keyInSlotOf(tag: string, name: string): Buffer {
  return b(`{${tag}}${name}`);
}

/** A batch of string sets of `count` keys `prefix<i>`. */
export function stringSets(prefix: string, count: number, valueSize = 32): Mutation[] {
  return Array.from({ length: count }, (_, i) => ({
    op: 'set' as const,
    key: b(`${prefix}${i}`),
    value: Buffer.alloc(valueSize, i % 251),
    expireAtMs: 0,
  }));
}

/**
 * A Snapshots client on its own channel with gRPC's default (small) HTTP/2 windows, so a
 * server stream that the test stops reading really waits for it (the shared client
 * channel's 32 MiB window would let the server send a whole small artifact at once).
 */
export function smallWindowSnapshots(address: string): SnapshotsClient {
  const proto = loadProto().shardsnap.v1;
  return new proto.Snapshots(address, credentials.createInsecure(), {});
}

/**
 * A records strategy like memory-scan that writes small batches with a pause after each
 * (a slow build), and can fail after a number of batches.
 */
export function slowScan(
  options: { name?: string; batch?: number; delayMs?: number; failAfterBatches?: number } = {},
): SnapshotStrategy {
  return {
    name: options.name ?? 'slow-scan',
    kind: 'records',
    unsupported: () => undefined,
    async prepare(store, request) {
      const view = await store.openView(request.slots);
      return {
        seq: view.seq,
        keyCountHint: view.keyCountHint,
        async write(out, header, signal) {
          const writer = new RecordsWriter(out);
          await writer.writeHeader(header);
          let batches = 0;
          for await (const batch of view.batches({
            maxRecords: options.batch ?? 100,
            maxBytes: 1 << 20,
            signal,
          })) {
            await writer.writeRecords(
              batch.map((r) => ({ key: r.key, entry: cloneEntry(r.entry) })),
            );
            if (++batches === options.failAfterBatches)
              throw new Error(`injected failure after ${batches} batches`);
            await sleep(options.delayMs ?? 20);
            signal.throwIfAborted();
          }
          await writer.writeTrailer();
          return { keyCount: writer.keyCount };
        },
        release() {
          view.close();
          return Promise.resolve();
        },
      };
    },
  };
}

/** The default strategies plus the given test ones (memory-scan stays the default). */
export function strategiesWith(...extra: SnapshotStrategy[]): StrategyRegistry {
  const registry = defaultStrategies();
  for (const strategy of extra) registry.register(strategy);
  return registry;
}

/** Flips the bits of `mask` in the byte at `at`, in place. */
export function flipByte(buf: Buffer, at: number, mask = 0x01): void {
  buf[at] = (buf[at] as number) ^ mask;
}

/**
 * Sends the messages on a raw InstallSnapshot stream, then ends it (unless `end` is
 * false: the stream stays open, as a client that stopped sending); resolves with the status.
 */
export function rawInstall(
  conn: Connection,
  messages: readonly SnapshotChunk[],
  options: { end?: boolean } = {},
): Promise<{ error?: grpc.ServiceError; keys?: number }> {
  return new Promise((resolve) => {
    const stream = conn.snapshots.InstallSnapshot(
      { deadline: Date.now() + 15_000 },
      (error, response) => {
        if (error) resolve({ error });
        else resolve({ keys: Number(response?.keysInstalled) });
      },
    );
    stream.on('error', () => undefined);
    void (async () => {
      for (const message of messages) {
        if (!stream.write(message)) await new Promise((r) => stream.once('drain', r));
      }
      if (options.end !== false) stream.end();
    })().catch(() => undefined);
  });
}

/** One uncompressed InstallSnapshot message of `raw` at `offset`; `fields` override. */
export function installMessage(
  offset: number,
  raw: Buffer,
  fields: Partial<SnapshotChunk> = {},
): SnapshotChunk {
  const chunk = encodeChunk(offset, raw, 'none');
  return {
    snapshotId: 'raw-install',
    offset,
    data: chunk.data,
    crc32c: chunk.crc32c,
    compression: 'COMPRESSION_NONE',
    rawLength: chunk.rawLength,
    last: false,
    sha256: '',
    info: null,
    force: false,
    ...fields,
  };
}
