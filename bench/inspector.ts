/**
 * A full garbage collection in a node process from outside, through the V8 inspector: the
 * node is started with `--inspect-port=0` (which only picks the port), SIGUSR1 opens the
 * inspector (Node prints `Debugger listening on ws://...` on stderr), and one Chrome
 * DevTools Protocol command, `HeapProfiler.collectGarbage`, goes over a minimal WebSocket
 * client: one masked text frame out, text frames in until the reply with our id.
 */
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Tail } from './node-process';
import { sleep, withTimeout } from './util';

const LISTENING = /Debugger listening on (ws:\/\/\S+)/;

/** A client → server WebSocket text frame (always masked, RFC 6455 §5.3). */
function textFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  let header: Buffer;
  if (payload.length < 126) {
    header = Buffer.from([0x81, 0x80 | payload.length]);
  } else if (payload.length < 65_536) {
    header = Buffer.alloc(4);
    header[0] = 0x81;
    header[1] = 0x80 | 126;
    header.writeUInt16BE(payload.length, 2);
  } else {
    header = Buffer.alloc(10);
    header[0] = 0x81;
    header[1] = 0x80 | 127;
    header.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  for (let i = 0; i < payload.length; i++)
    payload[i] = (payload[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([header, mask, payload]);
}

/** Complete server frames at the start of `buf` (servers do not mask). */
function readFrames(buf: Buffer): {
  frames: { opcode: number; fin: boolean; data: Buffer }[];
  rest: Buffer;
} {
  const frames: { opcode: number; fin: boolean; data: Buffer }[] = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const b0 = buf[pos] as number;
    const b1 = buf[pos + 1] as number;
    let length = b1 & 0x7f;
    let at = pos + 2;
    if (length === 126) {
      if (buf.length - at < 2) break;
      length = buf.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      if (buf.length - at < 8) break;
      length = Number(buf.readBigUInt64BE(at));
      at += 8;
    }
    if (b1 & 0x80) at += 4;
    if (buf.length - at < length) break;
    frames.push({ opcode: b0 & 0x0f, fin: (b0 & 0x80) !== 0, data: buf.subarray(at, at + length) });
    pos = at + length;
  }
  return { frames, rest: buf.subarray(pos) };
}

function upgrade(url: string): Promise<Duplex> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({
      host: u.hostname,
      port: Number(u.port),
      path: u.pathname,
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Version': '13',
      },
    });
    req.once('upgrade', (_res, socket, head) => {
      if (head.length > 0) socket.unshift(head);
      resolve(socket);
    });
    req.once('response', (res) => {
      res.resume();
      reject(new Error(`the inspector answered HTTP ${res.statusCode} instead of upgrading`));
    });
    req.once('error', reject);
    req.end();
  });
}

/** One DevTools Protocol command; resolves with its result, rejects with its error. */
export async function inspectorCall(
  url: string,
  method: string,
  timeoutMs: number,
  params: Record<string, unknown> = {},
): Promise<unknown> {
  const socket = await withTimeout(upgrade(url), timeoutMs, `inspector ${url}`);
  try {
    const reply = new Promise<unknown>((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      let message: Buffer[] = [];
      socket.on('data', (piece: Buffer) => {
        const { frames, rest } = readFrames(Buffer.concat([buffered, piece]));
        buffered = Buffer.from(rest);
        for (const frame of frames) {
          if (frame.opcode === 0x8) return reject(new Error('the inspector closed the connection'));
          if (frame.opcode !== 0x1 && frame.opcode !== 0x0) continue;
          message.push(frame.data);
          if (!frame.fin) continue;
          const text = Buffer.concat(message).toString('utf8');
          message = [];
          const parsed = JSON.parse(text) as { id?: number; result?: unknown; error?: unknown };
          if (parsed.id !== 1) continue;
          if (parsed.error) reject(new Error(`${method}: ${JSON.stringify(parsed.error)}`));
          else resolve(parsed.result);
        }
      });
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('the inspector connection closed')));
    });
    socket.write(textFrame(JSON.stringify({ id: 1, method, params })));
    return await withTimeout(reply, timeoutMs, method);
  } finally {
    socket.destroy();
  }
}

/**
 * Opens the inspector of node process `pid` (started with `--inspect-port=0`, its stderr
 * in `stderr`) and runs a full collection that also gives memory back
 * (`HeapProfiler.collectGarbage`). Returns the inspector's address.
 */
export async function collectGarbageInNode(
  pid: number,
  stderr: Tail,
  timeoutMs = 60_000,
): Promise<string> {
  let match = LISTENING.exec(stderr.toString());
  if (!match) {
    process.kill(pid, 'SIGUSR1');
    const started = performance.now();
    while (!(match = LISTENING.exec(stderr.toString()))) {
      if (performance.now() - started > 10_000)
        throw new Error('the node did not open its inspector after SIGUSR1');
      await sleep(20);
    }
  }
  const url = match[1] as string;
  await inspectorCall(url, 'HeapProfiler.collectGarbage', timeoutMs);
  return url;
}
