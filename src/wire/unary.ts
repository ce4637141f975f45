import type * as grpc from '@grpc/grpc-js';
import { type CallOptions, runCall } from './call-options';

/** What a call waits for before it starts: the node's connection (see Connection). */
export interface CallTarget {
  whenReady(signal: AbortSignal): Promise<void>;
}

export type UnaryCallback<Res> = (error: grpc.ServiceError | null, response?: Res) => void;

/** Starts a callback-style unary method with the given gRPC call options. */
export type UnaryInvoke<Res> = (
  callOptions: grpc.CallOptions,
  callback: UnaryCallback<Res>,
) => grpc.ClientUnaryCall;

/**
 * A unary gRPC call as a promise: it carries the call's deadline to the node, is cancelled
 * when the signal fires, and rejects with a domain error (see callError).
 */
export function unary<Res>(
  target: CallTarget | undefined,
  method: string,
  invoke: UnaryInvoke<Res>,
  options: CallOptions = {},
): Promise<Res> {
  return runCall(method, options, async (scope) => {
    await target?.whenReady(scope.signal);
    return new Promise<Res>((resolve, reject) => {
      const pending = invoke(
        scope.deadline ? { deadline: scope.deadline } : {},
        (error, response) => (error ? reject(error) : resolve(response as Res)),
      );
      scope.onCancel(() => pending.cancel());
    });
  });
}
