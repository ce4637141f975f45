import type { Readable } from 'node:stream';
import { asError } from '../core';

/** Buffered beyond this, the stream is paused (and the peer stops once its window is full). */
const PAUSE_AT_BYTES = 4 << 20;

/**
 * The buffers of a byte stream one at a time, as they were received. A Readable's own
 * async iterator reads in paused mode, where each read joins *everything* buffered into
 * one new buffer: with large HTTP/2 windows that is one copy of up to the whole window
 * (64 MiB) on the event loop at once, which stalls every other call of the process for
 * tens of milliseconds. Flowing mode hands over one received buffer at a time; pausing
 * past PAUSE_AT_BYTES keeps the backpressure.
 */
export async function* flowingChunks(stream: Readable): AsyncGenerator<Buffer> {
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resume = wake;
    wake = undefined;
    resume?.();
  };
  const onData = (data: Buffer): void => {
    queue.push(data);
    queued += data.length;
    if (queued >= PAUSE_AT_BYTES) stream.pause();
    notify();
  };
  const onEnd = (): void => {
    ended = true;
    notify();
  };
  const onError = (error: unknown): void => {
    failure = asError(error);
    notify();
  };
  stream.on('data', onData);
  stream.once('end', onEnd);
  stream.once('error', onError);
  // A stream destroyed without an error (a cancel) ends the iteration like an end.
  stream.once('close', onEnd);
  try {
    for (;;) {
      if (head < queue.length) {
        const data = queue[head] as Buffer;
        queue[head++] = EMPTY;
        if (head > 1024 && head * 2 > queue.length) {
          queue.splice(0, head);
          head = 0;
        }
        queued -= data.length;
        if (queued < PAUSE_AT_BYTES && stream.isPaused()) stream.resume();
        yield data;
        continue;
      }
      if (failure !== undefined) throw failure;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    stream.off('data', onData);
    stream.off('end', onEnd);
    stream.off('error', onError);
    stream.off('close', onEnd);
  }
}

const EMPTY = Buffer.alloc(0);
