import { Worker } from 'node:worker_threads';
import { ShardsnapError, internal, isNoSpace, noSpace } from '../core';
import type { VerifiedChunk } from '../snapshot';

/**
 * The thread that writes a fetched artifact to its part file and hashes it, in the order
 * given: pieces arrive as transferred copies, are written synchronously (in pieces of at
 * most 256 KiB, cheaper here than larger writes) and then hashed, and their buffers go
 * back for reuse.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { writeSync } = require('node:fs');
const { createHash } = require('node:crypto');
const MAX_WRITE = 256 << 10;
let hash = createHash('sha256');
let failed = false;
parentPort.on('message', (m) => {
  if (m.reset) { hash = createHash('sha256'); failed = false; return; }
  if (m.data) {
    const view = new Uint8Array(m.data, 0, m.length);
    if (!failed) {
      try {
        let done = m.fd < 0 ? m.length : 0;
        while (done < m.length) {
          done += writeSync(m.fd, view, done, Math.min(MAX_WRITE, m.length - done), m.position + done);
        }
        hash.update(view);
      } catch (error) {
        failed = true;
        parentPort.postMessage({ error: String(error && error.message || error), code: error && error.code });
      }
    }
    parentPort.postMessage({ recycle: m.data, end: m.position + m.length }, [m.data]);
    return;
  }
  if (m.digest) parentPort.postMessage({ hex: hash.digest('hex') });
});
`;

let liveThreads = 0;

/** Writer threads running in this process (every fetch ends its own; tests check it). */
export function liveWriterThreads(): number {
  return liveThreads;
}

const POOLED_BYTES = 1 << 20;
const MAX_IN_FLIGHT = 16 << 20;

/**
 * Writes a fetch's verified bytes to the part file and hashes them on a second thread,
 * so the thread receiving the next chunks never waits for the disk or SHA-256. Bytes are
 * written strictly in order: the file is always a gapless prefix, what a later run
 * resumes from. At most 16 MiB are in flight; `add` waits beyond that.
 */
export class HashingWriter {
  private readonly worker = new Worker(WORKER_SOURCE, { eval: true });
  private readonly free: ArrayBuffer[] = [];
  private readonly returns: Array<((buffer: ArrayBuffer) => void) | undefined> = [];
  private inFlight = 0;
  private failure: ShardsnapError | undefined;
  private waiters: Array<() => void> = [];
  private digestWaiter: ((hex: string) => void) | undefined;
  /** End of what the thread has written so far. */
  written: number;

  constructor(
    private readonly fd: number,
    start: number,
  ) {
    this.written = start;
    liveThreads++;
    this.worker.once('exit', () => liveThreads--);
    this.worker.on(
      'message',
      (m: {
        recycle?: ArrayBuffer;
        end?: number;
        error?: string;
        code?: unknown;
        hex?: string;
      }) => {
        if (m.error) {
          const message = `writing the part file: ${m.error}`;
          // A full disk is the client's to free up, not a fault: it keeps its reason.
          this.failure = isNoSpace({ code: m.code }) ? noSpace(message) : internal(message);
        }
        if (m.recycle) {
          this.inFlight -= m.recycle.byteLength;
          if (m.end !== undefined && m.end > this.written && !this.failure) this.written = m.end;
          // Buffers come back in the order they went; a taken one goes back to its source.
          const giveBack = this.returns.shift();
          if (giveBack) giveBack(m.recycle);
          else if (this.free.length < MAX_IN_FLIGHT / POOLED_BYTES) this.free.push(m.recycle);
          this.wake();
        }
        if (m.hex !== undefined) this.digestWaiter?.(m.hex);
      },
    );
    this.worker.on('error', (error) => {
      this.failure = internal(`the part file writer failed: ${error.message}`, error);
      this.wake();
    });
  }

  /**
   * Writes `data` at `offset` and hashes it after what came before. With `take` (see
   * VerifiedChunk), the buffer under `data` is moved to the thread instead of copied,
   * and `data` is unusable afterwards.
   */
  add(offset: number, data: Buffer, take?: VerifiedChunk['take']): Promise<void> {
    return this.post(offset, data, this.fd, take);
  }

  /**
   * Hashes bytes that are already in the file (an earlier run's part file) without
   * writing them again. Call before any `add`.
   */
  async seed(pieces: AsyncIterable<Buffer>): Promise<void> {
    for await (const piece of pieces) await this.post(0, piece, -1);
  }

  private async post(
    offset: number,
    data: Buffer,
    fd: number,
    take?: VerifiedChunk['take'],
  ): Promise<void> {
    this.throwIfFailed();
    while (this.inFlight >= MAX_IN_FLIGHT) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      this.throwIfFailed();
    }
    const length = data.length;
    const taken = data.byteOffset === 0 ? take?.() : undefined;
    let buffer: ArrayBuffer;
    if (taken) {
      buffer = taken.buffer;
    } else {
      let pooled = this.free.pop();
      if (!pooled || pooled.byteLength < length) {
        pooled = new ArrayBuffer(Math.max(length, POOLED_BYTES));
      }
      new Uint8Array(pooled).set(data);
      buffer = pooled;
    }
    this.returns.push(taken?.giveBack);
    this.inFlight += buffer.byteLength;
    this.worker.postMessage({ data: buffer, length, fd, position: offset }, [buffer]);
  }

  /** Waits until everything given is written; returns the SHA-256 of everything. */
  async finish(): Promise<string> {
    await this.drain();
    this.throwIfFailed();
    const hex = await new Promise<string>((resolve) => {
      this.digestWaiter = resolve;
      this.worker.postMessage({ digest: true });
    });
    await this.worker.terminate();
    return hex;
  }

  /** Waits for the writes in flight (the file must not be closed under them), then stops. */
  async abandon(): Promise<void> {
    await this.drain().catch(() => undefined);
    await this.worker.terminate();
  }

  private async drain(): Promise<void> {
    while (this.inFlight > 0 && !this.failure) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const resolve of waiters) resolve();
  }

  private throwIfFailed(): void {
    if (this.failure) {
      const { code, message, reason, metadata } = this.failure;
      throw new ShardsnapError(code, message, { cause: this.failure, reason, metadata });
    }
  }
}
