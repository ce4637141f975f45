import { once } from 'node:events';
import type * as grpc from '@grpc/grpc-js';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call';
import { cancelled } from '../core';
import { toServiceError } from '../wire/status';

export interface CallHooks {
  onError?: (error: unknown, method: string) => void;
  /**
   * Runs before every handler; throws to refuse the call (authentication, shutdown).
   * Returns who calls (the token holder), when tokens are on.
   */
  admit?: (method: string, metadata: grpc.Metadata) => Caller;
}

/** The holder of the call's token; undefined when the node does not check tokens. */
export type Caller = { name: string; role: string } | undefined;

/** An AbortSignal that fires when the client cancels or goes away. */
function signalOf(call: ServerSurfaceCall): { signal: AbortSignal; done: () => void } {
  const controller = new AbortController();
  const abort = (): void => controller.abort(cancelled('the client cancelled the call'));
  call.on('cancelled', abort);
  return { signal: controller.signal, done: () => call.off('cancelled', abort) };
}

export function unary<Req, Res>(
  method: string,
  hooks: CallHooks,
  handler: (request: Req, signal: AbortSignal, caller: Caller) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const { signal, done } = signalOf(call);
    // A handler that throws before returning its promise fails the call the same way.
    new Promise<Res>((resolve) => {
      const caller = hooks.admit?.(method, call.metadata);
      resolve(handler(call.request, signal, caller));
    }).then(
      (response) => {
        done();
        callback(null, response);
      },
      (error: unknown) => {
        done();
        hooks.onError?.(error, method);
        callback(toServiceError(error));
      },
    );
  };
}

/**
 * A server-streaming handler: `send` resolves when the message is accepted by the
 * transport (waits for `drain` when the client reads slowly) and rejects on cancel.
 */
export function serverStream<Req, Res>(
  method: string,
  hooks: CallHooks,
  handler: (
    request: Req,
    send: (message: Res, signal?: AbortSignal) => Promise<void>,
    signal: AbortSignal,
    caller: Caller,
  ) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    const { signal, done } = signalOf(call);
    // `also`: a handler's own reason to stop waiting for a slow client (a shutdown).
    const send = async (message: Res, also?: AbortSignal): Promise<void> => {
      if (signal.aborted) throw signal.reason;
      also?.throwIfAborted();
      if (!call.write(message)) {
        await once(call, 'drain', { signal: also ? AbortSignal.any([signal, also]) : signal });
      }
    };
    new Promise<void>((resolve) => {
      const caller = hooks.admit?.(method, call.metadata);
      resolve(handler(call.request, send, signal, caller));
    }).then(
      () => {
        done();
        call.end();
      },
      (error: unknown) => {
        done();
        if (!signal.aborted) {
          hooks.onError?.(error, method);
          call.emit('error', toServiceError(error));
        }
      },
    );
  };
}

/** A client-streaming handler that consumes the request stream as an async iterable. */
export function clientStream<Req, Res>(
  method: string,
  hooks: CallHooks,
  handler: (messages: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    const { signal, done } = signalOf(call);
    new Promise<Res>((resolve) => {
      hooks.admit?.(method, call.metadata);
      resolve(handler(call as AsyncIterable<Req>, signal));
    }).then(
      (response) => {
        done();
        callback(null, response);
      },
      (error: unknown) => {
        done();
        hooks.onError?.(error, method);
        callback(toServiceError(error));
        // Stop reading what the client still sends for an install that already failed.
        call.destroy();
      },
    );
  };
}
