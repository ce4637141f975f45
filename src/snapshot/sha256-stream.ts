import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { failedPrecondition, internal } from '../core';

/**
 * SHA-256 over a stream of pieces, computed on a background thread (on machines with
 * cores to spare) so that hashing a large artifact overlaps with receiving, decoding or
 * encoding it on the main thread.
 * Pieces are copied before they are handed over, so callers may reuse their buffers.
 * Streams shorter than a few MiB are hashed on the main thread, where starting the
 * thread would cost more than it saves.
 */
export interface Sha256Stream {
  update(piece: Buffer): void;
  /** The digest of everything so far, while the stream goes on. */
  peek(): Promise<Buffer>;
  /** The hex digest of everything given to `update`. */
  digest(): Promise<string>;
  /** Drops the stream without a digest; idempotent, and a no-op after `digest`. */
  discard(): void;
}

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = new Map();
parentPort.on('message', (m) => {
  let h = hashes.get(m.id);
  if (!h) { h = createHash('sha256'); hashes.set(m.id, h); }
  if (m.drop) { hashes.delete(m.id); return; }
  if (m.data) {
    h.update(new Uint8Array(m.data, 0, m.length));
    parentPort.postMessage({ recycle: m.data }, [m.data]);
  }
  if (m.peek) parentPort.postMessage({ id: m.id, hex: h.copy().digest('hex'), peek: true });
  if (m.digest) {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, hex: h.digest('hex') });
  }
});
`;

type Settle = { resolve: (hex: string) => void; reject: (error: Error) => void };

/** One hashing thread per process, shared by all streams, kept alive only while used. */
class HashThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiting = new Map<number, Settle>();
  private open = 0;
  private readonly free: ArrayBuffer[] = [];

  begin(): number {
    const worker = this.ensure();
    if (this.open++ === 0) worker.ref();
    return this.nextId++;
  }

  /**
   * Copies `piece` into a transferable buffer and hands it over. Buffers come back from
   * the thread once hashed and are reused, so a long stream allocates (and faults in) no
   * fresh memory per piece.
   */
  send(id: number, piece: Buffer): void {
    let data = this.free.pop();
    if (!data || data.byteLength < piece.length)
      data = new ArrayBuffer(Math.max(piece.length, POOLED_BYTES));
    new Uint8Array(data).set(piece);
    this.ensure().postMessage({ id, data, length: piece.length }, [data]);
  }

  finish(id: number, peek = false): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ensure().postMessage(peek ? { id, peek: true } : { id, digest: true });
    });
  }

  drop(id: number): void {
    this.worker?.postMessage({ id, drop: true });
    if (this.worker && --this.open === 0) this.worker.unref();
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on(
      'message',
      (m: { id: number; hex: string; peek?: boolean; recycle?: ArrayBuffer }) => {
        if (m.recycle) {
          if (this.free.length < MAX_POOLED) this.free.push(m.recycle);
          return;
        }
        this.waiting.get(m.id)?.resolve(m.hex);
        this.waiting.delete(m.id);
        if (!m.peek && --this.open === 0) worker.unref();
      },
    );
    const fail = (error: Error): void => {
      this.worker = undefined;
      this.open = 0;
      for (const settle of this.waiting.values()) settle.reject(error);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(internal(`hashing thread exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }
}

const POOLED_BYTES = 1 << 20;
const MAX_POOLED = 16;
const thread = new HashThread();
const BACKGROUND_AFTER_BYTES = 4 << 20;

class AdaptiveSha256 implements Sha256Stream {
  /** Copies of the first pieces, until the stream proves long enough for the thread. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  private id = 0;
  private done = false;

  update(piece: Buffer): void {
    if (this.done) throw failedPrecondition('hash stream already finished');
    if (this.id === 0) {
      this.held.push(Buffer.from(piece));
      this.heldBytes += piece.length;
      if (this.heldBytes <= BACKGROUND_AFTER_BYTES) return;
      this.id = thread.begin();
      for (const held of this.held) this.post(held);
      this.held = [];
      return;
    }
    this.post(piece);
  }

  private post(piece: Buffer): void {
    thread.send(this.id, piece);
  }

  private localHash(): ReturnType<typeof createHash> {
    const hash = createHash('sha256');
    for (const held of this.held) hash.update(held);
    return hash;
  }

  async peek(): Promise<Buffer> {
    if (this.id !== 0) return Buffer.from(await thread.finish(this.id, true), 'hex');
    return this.localHash().digest();
  }

  digest(): Promise<string> {
    if (this.done) throw failedPrecondition('hash stream already finished');
    this.done = true;
    if (this.id !== 0) return thread.finish(this.id);
    const hex = this.localHash().digest('hex');
    this.held = [];
    return Promise.resolve(hex);
  }

  discard(): void {
    if (this.done) return;
    this.done = true;
    this.held = [];
    if (this.id !== 0) thread.drop(this.id);
  }
}

/** Hashing on the calling thread. */
class LocalSha256 implements Sha256Stream {
  private readonly hash = createHash('sha256');
  update(piece: Buffer): void {
    this.hash.update(piece);
  }
  peek(): Promise<Buffer> {
    return Promise.resolve(this.hash.copy().digest());
  }
  digest(): Promise<string> {
    return Promise.resolve(this.hash.digest('hex'));
  }
  discard(): void {
    // Nothing is held.
  }
}

/**
 * On two cores or fewer every thread competes with the node's own work and the handover
 * copy costs more than it saves (measured on the fetch path), so hashing stays on the
 * calling thread there.
 */
const BACKGROUND_BY_DEFAULT = availableParallelism() > 2;

export function sha256Stream(options: { background?: boolean } = {}): Sha256Stream {
  return (options.background ?? BACKGROUND_BY_DEFAULT) ? new AdaptiveSha256() : new LocalSha256();
}
