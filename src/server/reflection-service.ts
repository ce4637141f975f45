import { once } from 'node:events';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { type DescriptorSet, withDependencies } from './descriptor-set';

/** ServerReflectionRequest as proto-loader decodes it (keepCase, oneofs). */
interface ReflectionRequest {
  host?: string;
  message_request?:
    | 'file_by_filename'
    | 'file_containing_symbol'
    | 'file_containing_extension'
    | 'all_extension_numbers_of_type'
    | 'list_services';
  file_by_filename?: string;
  file_containing_symbol?: string;
  file_containing_extension?: { containing_type?: string; extension_number?: number };
  all_extension_numbers_of_type?: string;
  list_services?: string;
}

type Answer =
  | { file_descriptor_response: { file_descriptor_proto: Uint8Array[] } }
  | { all_extension_numbers_response: { base_type_name: string; extension_number: number[] } }
  | { list_services_response: { service: Array<{ name: string }> } }
  | { error_response: { error_code: number; error_message: string } };

type ReflectionResponse = Answer & { valid_host: string; original_request: ReflectionRequest };

const refuse = (code: grpc.status, message: string): Answer => ({
  error_response: { error_code: code, error_message: message },
});

function answer(set: DescriptorSet, request: ReflectionRequest): Answer {
  const files = (name: string): Answer => ({
    file_descriptor_response: { file_descriptor_proto: withDependencies(set, name) },
  });
  switch (request.message_request) {
    case 'list_services':
      return { list_services_response: { service: set.services.map((name) => ({ name })) } };
    case 'file_by_filename': {
      const name = request.file_by_filename ?? '';
      return set.files.has(name)
        ? files(name)
        : refuse(grpc.status.NOT_FOUND, `file ${name} not found`);
    }
    case 'file_containing_symbol': {
      // Some clients write symbols fully qualified, with protoc's leading dot.
      const symbol = (request.file_containing_symbol ?? '').replace(/^\./, '');
      const file = set.symbols.get(symbol);
      return file ? files(file) : refuse(grpc.status.NOT_FOUND, `symbol ${symbol} not found`);
    }
    case 'file_containing_extension': {
      const { containing_type: type = '', extension_number: number = 0 } =
        request.file_containing_extension ?? {};
      return refuse(grpc.status.NOT_FOUND, `no extension ${number} of ${type}`);
    }
    case 'all_extension_numbers_of_type': {
      // No file declares an extension: a known message has none, anything else is unknown.
      const type = (request.all_extension_numbers_of_type ?? '').replace(/^\./, '');
      return set.messages.has(type)
        ? { all_extension_numbers_response: { base_type_name: type, extension_number: [] } }
        : refuse(grpc.status.NOT_FOUND, `message type ${type} not found`);
    }
    default:
      return refuse(grpc.status.INVALID_ARGUMENT, 'the request names no reflection query');
  }
}

/**
 * Answers each request of the stream in order. The next request is read only once the
 * previous answer is taken by the transport, so a client that never reads cannot make
 * the node buffer answers.
 */
async function converse(
  set: DescriptorSet,
  call: grpc.ServerDuplexStream<ReflectionRequest, ReflectionResponse>,
): Promise<void> {
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  call.once('close', onClose);
  try {
    // Not destroyed when the requests end: the answers' side still has to send the status.
    const requests = call.iterator({ destroyOnReturn: false }) as AsyncIterable<ReflectionRequest>;
    for await (const request of requests) {
      const response = {
        ...answer(set, request),
        valid_host: request.host ?? '',
        original_request: request,
      };
      if (!call.write(response)) await once(call, 'drain', { signal: gone.signal });
    }
    call.end();
  } catch {
    // The client cancelled or went away: there is no one left to answer.
  } finally {
    call.off('close', onClose);
  }
}

const LOADER_OPTIONS: protoLoader.Options = { keepCase: true, oneofs: true, longs: Number };

/**
 * Serves `grpc.reflection.v1.ServerReflection` and its v1alpha predecessor (older clients
 * ask for it first) from the same descriptors: the two differ only in package name.
 */
export function addReflection(
  server: grpc.Server,
  set: DescriptorSet,
  protos: { v1: string; v1alpha: string },
): void {
  const loaded = grpc.loadPackageDefinition(
    protoLoader.loadSync([protos.v1, protos.v1alpha], LOADER_OPTIONS),
  ) as unknown as {
    grpc: {
      reflection: Record<
        'v1' | 'v1alpha',
        { ServerReflection: { service: grpc.ServiceDefinition } }
      >;
    };
  };
  const implementation = {
    ServerReflectionInfo: (call: grpc.ServerDuplexStream<ReflectionRequest, ReflectionResponse>) =>
      void converse(set, call),
  };
  for (const version of ['v1', 'v1alpha'] as const) {
    server.addService(loaded.grpc.reflection[version].ServerReflection.service, implementation);
  }
}
