import type * as grpc from '@grpc/grpc-js';
import { type CallOptions, callError, callScope } from './call-options';
import type { CallTarget } from './unary';

/** A started server stream: its messages, and how to stop it. */
export interface OpenedStream<T> {
  readonly messages: AsyncIterable<T>;
  cancel(): void;
}

/** A grpc-js server stream as an OpenedStream. */
export function grpcStream<T>(stream: grpc.ClientReadableStream<T>): OpenedStream<T> {
  return { messages: stream as AsyncIterable<T>, cancel: () => stream.cancel() };
}

/**
 * Any server stream as an async iterable: it is opened when iteration starts, cancelled
 * when the signal fires or the deadline passes, and always cancelled once the iteration
 * ends, however it ends (a `break` too), so the node releases what it held for it.
 * Failures are domain errors (see callError).
 */
export async function* serverStream<T>(
  target: CallTarget | undefined,
  method: string,
  open: (callOptions: grpc.CallOptions, signal: AbortSignal) => OpenedStream<T>,
  options: CallOptions = {},
): AsyncGenerator<T> {
  const scope = callScope(method, options);
  let stream: OpenedStream<T> | undefined;
  try {
    await target?.whenReady(scope.signal);
    stream = open(scope.deadline ? { deadline: scope.deadline } : {}, scope.signal);
    const opened = stream;
    scope.onCancel(() => opened.cancel());
    for await (const message of opened.messages) {
      yield message;
      if (scope.signal.aborted) throw scope.error();
    }
    if (scope.signal.aborted) throw scope.error();
  } catch (error) {
    throw callError(scope, error, method);
  } finally {
    stream?.cancel();
    scope.dispose();
  }
}
