import type * as grpc from '@grpc/grpc-js';
import type * as http2 from 'node:http2';

/** Receive windows of a node's HTTP/2 sessions: what a client may send before an ack. */
export const SERVER_STREAM_WINDOW = 16 << 20;
export const SERVER_CONNECTION_WINDOW = 64 << 20;

/**
 * Opens the receive windows of every HTTP/2 session the server accepts. grpc-js applies
 * `grpc-node.flow_control_window` to clients only, so a server keeps HTTP/2's 64 KiB
 * default, and a client streaming writes or an install to it waits a round trip for
 * every 64 KiB. Call after `bindAsync`; returns false if the server's listeners could
 * not be reached (the node then works with the default windows).
 */
export function widenReceiveWindows(server: grpc.Server): boolean {
  const listeners = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(listeners instanceof Map) || listeners.size === 0) return false;
  for (const listener of listeners.keys() as Iterable<http2.Http2Server>) {
    listener.on('session', (session: http2.ServerHttp2Session) => {
      session.setLocalWindowSize(SERVER_CONNECTION_WINDOW);
      session.settings({ initialWindowSize: SERVER_STREAM_WINDOW });
    });
  }
  return true;
}
