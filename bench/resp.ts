/**
 * A minimal RESP2 client over one loopback socket: pipelined commands, replies in order.
 * Error replies resolve as `RespError` values instead of rejecting, because cluster
 * redirections (MOVED, ASK, TRYAGAIN) are answers the caller acts on, not failures.
 */
import * as net from 'node:net';

export class RespError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RespError';
  }
}

export type Reply = null | number | string | Buffer | RespError | Reply[];

export type Arg = string | Buffer | number;

export function encodeCommand(args: readonly Arg[]): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** One reply starting at `pos`, or undefined when `buf` does not hold all of it yet. */
function parseReply(buf: Buffer, pos: number): { value: Reply; next: number } | undefined {
  const eol = buf.indexOf('\r\n', pos, 'latin1');
  if (eol < 0) return undefined;
  const type = buf[pos];
  const line = buf.toString('latin1', pos + 1, eol);
  const after = eol + 2;
  switch (type) {
    case 0x2b: // +
      return { value: line, next: after };
    case 0x2d: // -
      return { value: new RespError(line), next: after };
    case 0x3a: // :
      return { value: Number(line), next: after };
    case 0x24: {
      // $
      const length = Number(line);
      if (length < 0) return { value: null, next: after };
      if (buf.length < after + length + 2) return undefined;
      return { value: buf.subarray(after, after + length), next: after + length + 2 };
    }
    case 0x2a: {
      // *
      const count = Number(line);
      if (count < 0) return { value: null, next: after };
      const items: Reply[] = [];
      let next = after;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, next);
        if (!item) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`unexpected RESP type byte ${String(type)} in "${line.slice(0, 80)}"`);
  }
}

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

export class RespConnection {
  private readonly pending: Pending[] = [];
  private buffer: Buffer = Buffer.alloc(0);
  private failure: Error | undefined;

  private constructor(
    private readonly socket: net.Socket,
    readonly port: number,
  ) {
    socket.on('data', (piece: Buffer) => this.onData(piece));
    socket.on('error', (error) => this.fail(error));
    socket.on('close', () => this.fail(new Error(`connection to 127.0.0.1:${port} closed`)));
  }

  static connect(port: number, timeoutMs = 5_000): Promise<RespConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connect to 127.0.0.1:${port} timed out`));
      }, timeoutMs);
      socket.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new RespConnection(socket, port));
      });
    });
  }

  private onData(piece: Buffer): void {
    this.buffer = this.buffer.length === 0 ? piece : Buffer.concat([this.buffer, piece]);
    let pos = 0;
    try {
      while (this.pending.length > 0 && pos < this.buffer.length) {
        const parsed = parseReply(this.buffer, pos);
        if (!parsed) break;
        pos = parsed.next;
        this.pending.shift()?.resolve(parsed.value);
      }
    } catch (error) {
      this.fail(error as Error);
      return;
    }
    // Copy the remainder, so replies handed out do not pin a large receive buffer.
    this.buffer = pos === 0 ? this.buffer : Buffer.from(this.buffer.subarray(pos));
  }

  private fail(error: Error): void {
    if (!this.failure) this.failure = error;
    this.socket.destroy();
    for (const p of this.pending.splice(0)) p.reject(this.failure);
  }

  /**
   * Sends the commands in one write and resolves with their replies in order. After a
   * timeout the connection is closed: which replies still belong to whom is unknown.
   */
  pipeline(commands: readonly (readonly Arg[])[], timeoutMs = 10_000): Promise<Reply[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (commands.length === 0) return Promise.resolve([]);
    const replies = commands.map(
      () =>
        new Promise<Reply>((resolve, reject) => {
          this.pending.push({ resolve, reject });
        }),
    );
    this.socket.write(Buffer.concat(commands.map(encodeCommand)));
    let timer: NodeJS.Timeout | undefined;
    const all = Promise.all(replies);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const name = String(commands[0]?.[0] ?? '');
        const error = new Error(
          `${name}${commands.length > 1 ? ` (+${commands.length - 1} more)` : ''} to 127.0.0.1:${this.port} got no reply within ${timeoutMs} ms`,
        );
        this.fail(error);
        reject(error);
      }, timeoutMs);
    });
    return Promise.race([all, timeout]).finally(() => clearTimeout(timer));
  }

  async call(args: readonly Arg[], timeoutMs = 10_000): Promise<Reply> {
    const [reply] = await this.pipeline([args], timeoutMs);
    return reply ?? null;
  }

  /** The reply, which must not be an error reply. */
  async ok(args: readonly Arg[], timeoutMs = 10_000): Promise<Reply> {
    const reply = await this.call(args, timeoutMs);
    if (reply instanceof RespError)
      throw new Error(`${args.map(String).join(' ').slice(0, 120)}: ${reply.message}`);
    return reply;
  }

  /** A bulk or simple string reply as text. */
  async text(args: readonly Arg[], timeoutMs = 10_000): Promise<string> {
    const reply = await this.ok(args, timeoutMs);
    if (typeof reply === 'string') return reply;
    if (Buffer.isBuffer(reply)) return reply.toString('utf8');
    throw new Error(`${String(args[0])}: expected a string reply, got ${JSON.stringify(reply)}`);
  }

  async integer(args: readonly Arg[], timeoutMs = 10_000): Promise<number> {
    const reply = await this.ok(args, timeoutMs);
    if (typeof reply !== 'number')
      throw new Error(
        `${String(args[0])}: expected an integer reply, got ${JSON.stringify(reply)}`,
      );
    return reply;
  }

  close(): void {
    this.fail(new Error(`connection to 127.0.0.1:${this.port} closed by the client`));
  }
}
