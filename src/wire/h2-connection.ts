import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import { isIP } from 'node:net';
import { ErrorCodes, ShardsnapError, cancelled, unavailable } from '../core';
import { AUTHORIZATION_HEADER, type ClientSecurity } from './security';
import { STATUS_DETAILS_HEADER } from './rpc-status';
import { RETRY_PUSHBACK_HEADER, fromServiceError } from './status';
import { flowingChunks } from './flowing-chunks';
import { GrpcFrameReader, frameMessage } from './grpc-frames';

/** Receive windows of a bulk download: what a node may send before an acknowledgement. */
export const DOWNLOAD_STREAM_WINDOW = 64 << 20;
export const DOWNLOAD_CONNECTION_WINDOW = 256 << 20;
const KEEPALIVE_MS = 30_000;
const KEEPALIVE_TIMEOUT_MS = 20_000;

interface Status {
  code: number;
  details: string;
  /**
   * What a status carries beside its code that the client restores: the google.rpc.Status
   * details (reason, metadata, retry delay) and the retry hint, as a gRPC client sees them.
   */
  metadata: grpc.Metadata;
}

function statusOf(headers: http2.IncomingHttpHeaders): Status | undefined {
  const raw = headers['grpc-status'];
  if (raw === undefined) return undefined;
  let details = String(headers['grpc-message'] ?? '');
  try {
    details = decodeURIComponent(details);
  } catch {
    // Not percent-encoded after all: keep it as it came.
  }
  const metadata = new grpc.Metadata();
  const pushback = headers[RETRY_PUSHBACK_HEADER];
  if (typeof pushback === 'string') metadata.set(RETRY_PUSHBACK_HEADER, pushback);
  // Binary headers travel base64-encoded (padding optional), as in every gRPC client.
  const statusDetails = headers[STATUS_DETAILS_HEADER];
  if (typeof statusDetails === 'string' && statusDetails !== '') {
    metadata.set(STATUS_DETAILS_HEADER, Buffer.from(statusDetails, 'base64'));
  }
  return { code: Number(raw), details, metadata };
}

/**
 * One HTTP/2 connection to a node for server-streaming gRPC calls whose messages are
 * consumed in place: each message is yielded as the list of received buffers that hold
 * it (see GrpcFrameReader), not joined into a fresh buffer as a general gRPC client
 * does. Used for the bulk path only (FetchSnapshot); everything else uses `Connection`.
 * Backpressure is HTTP/2's: while the consumer holds a message, nothing more is read and
 * the node stops once the windows are full.
 */
export class H2Connection {
  private session: http2.ClientHttp2Session | undefined;
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    readonly address: string,
    private readonly security: ClientSecurity = {},
  ) {}

  private open(): http2.ClientHttp2Session {
    if (this.session && !this.session.closed && !this.session.destroyed) return this.session;
    const tls = this.security.tls;
    const session = http2.connect(`${tls ? 'https' : 'http'}://${this.address}`, {
      settings: { initialWindowSize: DOWNLOAD_STREAM_WINDOW, enablePush: false },
      // SNI carries host names only; an IP address is checked against the certificate's IP SANs.
      ...(tls
        ? { ca: tls.ca, cert: tls.cert, key: tls.key, servername: sniName(this.address) }
        : {}),
    });
    session.once('connect', () => {
      // A session destroyed during its handshake (a call cancelled at once) still emits it.
      if (!session.destroyed) session.setLocalWindowSize(DOWNLOAD_CONNECTION_WINDOW);
    });
    // Failures reach the calls through their streams; an unhandled session error would crash.
    session.on('error', () => undefined);
    clearInterval(this.keepalive);
    this.keepalive = setInterval(() => {
      // A closed session (after GOAWAY) may still be draining a stream: leave it be.
      if (session.destroyed || session.closed || session.connecting) return;
      const timer = setTimeout(
        () => session.destroy(unavailable(`no keepalive answer from ${this.address}`)),
        KEEPALIVE_TIMEOUT_MS,
      );
      // Only silence kills the session; a ping cancelled by a closing session does not.
      const sent = session.ping(() => clearTimeout(timer));
      if (!sent) clearTimeout(timer);
    }, KEEPALIVE_MS);
    this.keepalive.unref();
    this.session = session;
    return session;
  }

  /**
   * Calls `method` (`/package.Service/Method`) with one request message and yields each
   * response message as its list of buffers. Ends once the call ends with status OK;
   * any other status, a reset or a lost connection throws a ShardsnapError (CANCELLED
   * when `signal` aborted it).
   */
  async *serverStream(
    method: string,
    request: Buffer,
    options: { signal?: AbortSignal; maxMessageBytes: number },
  ): AsyncGenerator<Buffer[]> {
    const { signal } = options;
    if (signal?.aborted) throw cancelled(`${method} cancelled`);
    const stream = this.open().request({
      ':method': 'POST',
      ':path': method,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-accept-encoding': 'identity',
      ...(this.security.token ? { [AUTHORIZATION_HEADER]: `Bearer ${this.security.token}` } : {}),
    });
    // Failures reach the caller through the read loop below; a stream cancelled while
    // still connecting fails later with nobody reading it, which must not crash.
    stream.on('error', () => undefined);
    let status: Status | undefined;
    let httpStatus = 0;
    stream.once('response', (headers) => {
      httpStatus = Number(headers[':status']);
      status = statusOf(headers);
    });
    stream.once('trailers', (headers: http2.IncomingHttpHeaders) => {
      status = statusOf(headers) ?? status;
    });
    const onAbort = (): void => cancel(stream);
    signal?.addEventListener('abort', onAbort, { once: true });
    const where = method.slice(method.lastIndexOf('/') + 1);
    const reader = new GrpcFrameReader(options.maxMessageBytes);
    try {
      stream.end(frameMessage(request));
      try {
        for await (const data of flowingChunks(stream)) {
          for (const message of reader.push(data)) yield message;
        }
      } catch (error) {
        if (signal?.aborted) throw cancelled(`${where} cancelled`);
        if (error instanceof ShardsnapError) throw error;
        throw new ShardsnapError(
          ErrorCodes.unavailable,
          `${where}: connection to ${this.address} lost: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
      if (signal?.aborted) throw cancelled(`${where} cancelled`);
      if (!status) {
        throw new ShardsnapError(
          ErrorCodes.unavailable,
          `${where}: the call to ${this.address} ended without a status (HTTP ${httpStatus || 'none'})`,
        );
      }
      if (status.code !== 0) throw fromServiceError(status, where);
      if (!reader.idle) {
        throw new ShardsnapError(
          ErrorCodes.unavailable,
          `${where}: the call ended inside a message`,
        );
      }
    } finally {
      signal?.removeEventListener('abort', onAbort);
      cancel(stream);
    }
  }

  close(): void {
    clearInterval(this.keepalive);
    // A session still connecting would otherwise wait for the connect (or its timeout).
    if (this.session?.connecting) this.session.destroy();
    else this.session?.close();
    this.session = undefined;
  }
}

function sniName(address: string): string {
  const host = address.slice(0, address.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
  return isIP(host) ? '' : host;
}

/** Resets the stream (the node sees CANCELLED and releases what the call held). */
function cancel(stream: http2.ClientHttp2Stream): void {
  if (stream.destroyed) return;
  if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
  stream.destroy();
}
