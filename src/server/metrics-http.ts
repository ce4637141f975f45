import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseHostPort } from './config';

/** What the endpoint serves: an exposition made at each request, and its Content-Type. */
export interface MetricsSource {
  text(): Promise<string>;
  readonly contentType: string;
}

export interface MetricsEndpoint {
  /** host:port actually bound (the port chosen when 0 was asked for). */
  readonly address: string;
  /** Stops listening and closes every connection, idle keep-alive ones included. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (and HEAD) on its own plain HTTP listener, apart from the gRPC
 * port, so that Prometheus scrapes with no gRPC or TLS setup. Other paths answer 404,
 * other methods on /metrics 405. A failing exposition answers 500 with a short message;
 * the error goes to `onError`, never to the scraper.
 */
export async function serveMetrics(
  listen: string,
  metrics: MetricsSource,
  onError?: (err: unknown) => void,
): Promise<MetricsEndpoint> {
  const { host, port } = parseHostPort(listen);
  const report = (err: unknown): void => {
    try {
      onError?.(err);
    } catch {
      // A failing error handler must not take the endpoint down.
    }
  };

  const server = http.createServer((request, response) => {
    const path = (request.url ?? '').split('?', 1)[0];
    if (path !== '/metrics') {
      plain(response, 404, 'not found: metrics are served at /metrics\n');
      return;
    }
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('Allow', 'GET, HEAD');
      plain(response, 405, 'method not allowed\n');
      return;
    }
    metrics.text().then(
      (body) => {
        response.writeHead(200, {
          'Content-Type': metrics.contentType,
          'Content-Length': Buffer.byteLength(body),
          'Cache-Control': 'no-store',
        });
        // Node sends no body in answer to HEAD; the length above still tells its size.
        response.end(body);
      },
      (err: unknown) => {
        report(err);
        plain(response, 500, 'metrics unavailable\n');
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    // A bracketed IPv6 host ([::1]) is bound without its brackets.
    server.listen(port, host.replace(/^\[(.*)\]$/, '$1'), () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', report);

  const bound = server.address() as AddressInfo;
  const address =
    bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  let closing: Promise<void> | undefined;
  return {
    address,
    close() {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        // Keep-alive connections would otherwise hold close() open until they time out.
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

function plain(response: http.ServerResponse, status: number, message: string): void {
  if (response.headersSent) {
    response.destroy();
    return;
  }
  response.writeHead(status, {
    'Content-Type': 'text/plain; charset=utf-8',
    'Content-Length': Buffer.byteLength(message),
  });
  response.end(message);
}
