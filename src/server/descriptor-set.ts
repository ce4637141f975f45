import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as protobuf from 'protobufjs';
import { internal } from '../core';
import {
  encodeFile,
  enumProto,
  extensionProto,
  type FileProto,
  fileOptions,
  type MessageProto,
  messageProto,
  serviceProto,
} from './descriptor-proto';

/** A .proto file and the name imports use for it (relative to its root, as protoc names it). */
export interface ProtoSource {
  name: string;
  path: string;
}

/** What reflection answers from: every file, serialized, with its symbols indexed. */
export interface DescriptorSet {
  /** Serialized FileDescriptorProto and direct imports, by file name. */
  readonly files: ReadonlyMap<string, { encoded: Uint8Array; dependencies: readonly string[] }>;
  /** Fully qualified symbol (`pkg.Message`, `pkg.Service.Method`, ...) → its file. */
  readonly symbols: ReadonlyMap<string, string>;
  readonly messages: ReadonlySet<string>;
  readonly services: readonly string[];
}

interface Parsed {
  name: string;
  pkg: string;
  imports: string[];
  /** The file's own declarations only, to tell which objects of the shared root are its. */
  own: protobuf.Root;
  syntax: string;
  options: Record<string, unknown> | undefined;
}

const PARSE_OPTIONS: protobuf.IParseOptions = { keepCase: true };

/**
 * Loads `sources` and their imports (searched in `includeDirs`, then among the well-known
 * types protobufjs bundles) into one root so references resolve across files, and turns
 * each file back into the FileDescriptorProto protoc would have produced for it.
 */
export function buildDescriptorSet(
  sources: readonly ProtoSource[],
  includeDirs: readonly string[],
): DescriptorSet {
  const shared = new protobuf.Root();
  const parsed = new Map<string, Parsed>();
  const explicit = new Map(sources.map((source) => [source.name, source.path]));

  const read = (name: string, importedBy: string | undefined): Parsed => {
    const path = explicit.get(name) ?? includeDirs.map((dir) => join(dir, name)).find(existsSync);
    if (path !== undefined) {
      const text = readFileSync(path, 'utf8');
      const own = protobuf.parse(text, new protobuf.Root(), PARSE_OPTIONS);
      protobuf.parse(text, shared, PARSE_OPTIONS);
      const pkg = own.package ?? '';
      return {
        name,
        pkg,
        imports: [...(own.imports ?? []), ...(own.weakImports ?? [])],
        own: own.root,
        syntax: syntaxOf(own.root, pkg),
        options: (pkg ? own.root.lookup(pkg) : own.root)?.options,
      };
    }
    const bundled = protobuf.common.get(name);
    if (!bundled?.nested) {
      throw internal(`cannot find ${name}${importedBy ? ` (imported by ${importedBy})` : ''}`);
    }
    shared.addJSON(bundled.nested);
    // The bundled well-known types are proto3, all in google.protobuf, importing nothing.
    return {
      name,
      pkg: 'google.protobuf',
      imports: [],
      own: protobuf.Root.fromJSON(bundled),
      syntax: 'proto3',
      options: undefined,
    };
  };
  const load = (name: string, importedBy?: string): void => {
    if (parsed.has(name)) return;
    const file = read(name, importedBy);
    parsed.set(name, file);
    file.imports.forEach((dependency) => load(dependency, name));
  };

  sources.forEach((source) => load(source.name));
  shared.resolveAll();

  const files = new Map<string, { encoded: Uint8Array; dependencies: readonly string[] }>();
  const symbols = new Map<string, string>();
  const messages = new Set<string>();
  const services: string[] = [];
  for (const file of parsed.values()) {
    const proto = fileProto(file, shared);
    files.set(file.name, { encoded: encodeFile(proto), dependencies: proto.dependency });
    indexFile(proto, (symbol, kind) => {
      symbols.set(symbol, file.name);
      if (kind === 'message') messages.add(symbol);
      if (kind === 'service') services.push(symbol);
    });
  }
  return { files, symbols, messages, services };
}

/** protobufjs marks each top-level declaration with its file's syntax. */
function syntaxOf(root: protobuf.Root, pkg: string): string {
  const scope = pkg ? root.lookup(pkg) : root;
  const first = scope instanceof protobuf.Namespace ? scope.nestedArray[0] : undefined;
  return (first as { _edition?: string } | undefined)?._edition === 'proto3' ? 'proto3' : 'proto2';
}

function fileProto(file: Parsed, shared: protobuf.Root): FileProto {
  const proto: FileProto = {
    name: file.name,
    dependency: file.imports,
    messageType: [],
    enumType: [],
    service: [],
    extension: [],
  };
  if (file.pkg) proto.package = file.pkg;
  // proto2 is the default: protoc leaves `syntax` empty for it.
  if (file.syntax === 'proto3') proto.syntax = 'proto3';
  const options = fileOptions(file.options);
  if (options) proto.options = options;
  const scope = file.pkg ? file.own.lookup(file.pkg) : file.own;
  for (const declared of scope instanceof protobuf.Namespace ? scope.nestedArray : []) {
    const object = shared.lookup(declared.fullName);
    if (object instanceof protobuf.Type) proto.messageType.push(messageProto(object, file.syntax));
    else if (object instanceof protobuf.Enum) proto.enumType.push(enumProto(object));
    else if (object instanceof protobuf.Service) proto.service.push(serviceProto(object));
    else if (object instanceof protobuf.Field)
      proto.extension.push(extensionProto(object, file.syntax));
  }
  return proto;
}

type SymbolKind = 'message' | 'service' | 'other';

function indexFile(file: FileProto, add: (symbol: string, kind: SymbolKind) => void): void {
  const scope = file.package ? `${file.package}.` : '';
  const indexEnum = (prefix: string, e: FileProto['enumType'][number]): void => {
    add(`${prefix}${e.name}`, 'other');
    // Enum values are scoped beside their enum, not inside it.
    for (const value of e.value) add(`${prefix}${value.name}`, 'other');
  };
  const indexMessage = (name: string, message: MessageProto): void => {
    add(name, 'message');
    for (const field of [...message.field, ...message.extension])
      add(`${name}.${field.name}`, 'other');
    for (const oneof of message.oneofDecl) add(`${name}.${oneof.name}`, 'other');
    for (const nested of message.nestedType) indexMessage(`${name}.${nested.name}`, nested);
    for (const e of message.enumType) indexEnum(`${name}.`, e);
  };
  for (const message of file.messageType) indexMessage(`${scope}${message.name}`, message);
  for (const e of file.enumType) indexEnum(scope, e);
  for (const extension of file.extension) add(`${scope}${extension.name}`, 'other');
  for (const service of file.service) {
    add(`${scope}${service.name}`, 'service');
    for (const method of service.method) add(`${scope}${service.name}.${method.name}`, 'other');
  }
}

/** The file and everything it imports, transitively, each once (the file first). */
export function withDependencies(set: DescriptorSet, name: string): Uint8Array[] {
  const seen = new Set<string>();
  const out: Uint8Array[] = [];
  const visit = (file: string): void => {
    const entry = set.files.get(file);
    if (!entry || seen.has(file)) return;
    seen.add(file);
    out.push(entry.encoded);
    entry.dependencies.forEach(visit);
  };
  visit(name);
  return out;
}
