/**
 * Child process of the raw TCP baseline (no gRPC, no framing, no checksums).
 *
 *   node tcp-child.js recv <out-file>        listens on 127.0.0.1:0, prints `port N`, accepts
 *                                            one connection, writes every byte to <out-file>,
 *                                            fsyncs, prints one JSON line and exits.
 *   node tcp-child.js send <file> <port>     connects to 127.0.0.1:<port>, streams <file>, exits.
 *
 * Both sides use 1 MiB buffers, like the 1 MiB chunks of a snapshot fetch. The receiver
 * fsyncs before reporting because fetchToFile fsyncs too: both produce a durable file.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { open } from 'node:fs/promises';
import * as net from 'node:net';
import { pipeline } from 'node:stream/promises';

const BUFFER = 1 << 20;
const LIMIT_MS = 20 * 60_000;

async function receive(out: string): Promise<void> {
  const server = net.createServer();
  const connection = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  process.stdout.write(`port ${port}\n`);
  const socket = await connection;
  server.close();
  const started = performance.now();
  const file = await open(out, 'w');
  try {
    const stream = createWriteStream('', {
      fd: file.fd,
      autoClose: false,
      highWaterMark: BUFFER,
    });
    let bytes = 0;
    socket.on('data', (piece: Buffer) => (bytes += piece.length));
    await pipeline(socket, stream);
    const receivedMs = performance.now() - started;
    await file.sync();
    const ms = performance.now() - started;
    process.stdout.write(`${JSON.stringify({ bytes, ms, receivedMs })}\n`);
  } finally {
    await file.close();
  }
}

async function send(path: string, port: number): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  await pipeline(createReadStream(path, { highWaterMark: BUFFER }), socket);
}

async function main(): Promise<void> {
  const [mode, a, b] = process.argv.slice(2);
  const limit = setTimeout(() => {
    process.stderr.write(`tcp-child ${mode}: gave up after ${LIMIT_MS} ms\n`);
    process.exit(3);
  }, LIMIT_MS);
  limit.unref();
  if (mode === 'recv' && a) await receive(a);
  else if (mode === 'send' && a && b) await send(a, Number(b));
  else throw new Error('usage: tcp-child.js recv <out> | send <file> <port>');
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`tcp-child: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
