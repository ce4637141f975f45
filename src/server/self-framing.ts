import { createRequire } from 'node:module';
import { FRAMES_ITSELF, type OutgoingChunk } from './chunk-serializer';

type Serialize = ((value: unknown) => Buffer) & {
  [FRAMES_ITSELF]?: (value: OutgoingChunk) => Buffer;
};

interface CallPrototype {
  serializeMessage: (this: { handler: { serialize: Serialize } }, value: unknown) => Buffer;
  [PATCHED]?: true;
}

const PATCHED = Symbol.for('shardsnap.selfFraming');

/**
 * Lets a serializer marked `FRAMES_ITSELF` produce the whole gRPC frame of its messages.
 * grpc-js frames every outgoing message by allocating a buffer of its size and copying
 * the serialized bytes into it: for 1 MiB chunks that is 1 GiB of fresh memory per GiB
 * sent, whose external-memory pressure drives V8 into a full mark-compact every few tens
 * of MiB. Other serializers keep grpc-js's framing. Returns false (and changes nothing)
 * when this grpc-js does not have the expected shape; framing then stays grpc-js's.
 */
export function enableSelfFraming(): boolean {
  let prototype: CallPrototype | undefined;
  try {
    const load = createRequire(require.resolve('@grpc/grpc-js'));
    const module = load('./server-interceptors') as {
      BaseServerInterceptingCall?: { prototype: CallPrototype };
    };
    prototype = module.BaseServerInterceptingCall?.prototype;
  } catch {
    return false;
  }
  if (!prototype || typeof prototype.serializeMessage !== 'function') return false;
  if (prototype[PATCHED]) return true;
  const original = prototype.serializeMessage;
  prototype.serializeMessage = function (value) {
    const frame = this.handler.serialize[FRAMES_ITSELF];
    return frame ? frame(value as OutgoingChunk) : original.call(this, value);
  };
  prototype[PATCHED] = true;
  return true;
}
