/**
 * A TCP proxy on 127.0.0.1 that adds a fixed delay to every byte in each direction, to
 * measure transfers over a link with latency (a round trip gains twice the delay).
 *
 *   node delay-proxy.js <target-port> <one-way-delay-ms> [<MiB/s per connection>]
 *
 * Prints `port N` once listening; runs until killed (or for at most an hour). Bytes are
 * forwarded in order, each piece `delay` ms after it arrived; reading stops while more
 * than LINK_BUFFER bytes are in flight, like a link whose queue is full. With a rate,
 * each connection's traffic from the target is paced to it, like a path that limits
 * every flow (shaping, or a congestion window held down by loss).
 */
import * as net from 'node:net';

const LINK_BUFFER = 256 << 20;
const LIMIT_MS = 60 * 60_000;

function relay(from: net.Socket, to: net.Socket, delayMs: number, bytesPerMs = 0): void {
  const queue: Array<{ at: number; data: Buffer }> = [];
  /** When the paced link is free again (rate-limited relays only). */
  let linkFreeAt = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  const full = (): boolean => queued + to.writableLength > LINK_BUFFER;
  const resumeIfRoom = (): void => {
    if (!full() && from.isPaused()) from.resume();
  };
  to.on('drain', resumeIfRoom);
  const pump = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && (queue[0] as { at: number }).at <= now) {
      const { data } = queue.shift() as { data: Buffer };
      queued -= data.length;
      to.write(data);
    }
    resumeIfRoom();
    if (queue.length > 0) {
      timer = setTimeout(pump, Math.max(0, (queue[0] as { at: number }).at - performance.now()));
    }
  };
  from.on('data', (data: Buffer) => {
    let at = performance.now() + delayMs;
    if (bytesPerMs > 0) {
      linkFreeAt = Math.max(linkFreeAt, performance.now()) + data.length / bytesPerMs;
      at = linkFreeAt + delayMs;
    }
    queue.push({ at, data });
    queued += data.length;
    if (full()) from.pause();
    timer ??= setTimeout(pump, delayMs);
  });
  from.on('end', () => {
    const finish = (): void => {
      if (queue.length > 0) setTimeout(finish, delayMs);
      else to.end();
    };
    finish();
  });
}

function main(): void {
  const [targetPort, delay, mibPerSecond = 0] = process.argv.slice(2).map(Number);
  if (!targetPort || delay === undefined || !Number.isFinite(delay)) {
    throw new Error(
      'usage: delay-proxy.js <target-port> <one-way-delay-ms> [<MiB/s per connection>]',
    );
  }
  const bytesPerMs = (mibPerSecond * (1 << 20)) / 1000;
  setTimeout(() => process.exit(3), LIMIT_MS).unref();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    // A reset tears down both sides; an orderly end is relayed after the queued bytes.
    const close = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    relay(client, upstream, delay);
    relay(upstream, client, delay, bytesPerMs);
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`port ${(server.address() as net.AddressInfo).port}\n`);
  });
}

main();
