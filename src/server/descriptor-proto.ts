import * as protobuf from 'protobufjs';
import * as descriptor from 'protobufjs/ext/descriptor';
import { internal } from '../core';

/**
 * descriptor.proto messages as plain objects (its JSON field names), shaped as protoc
 * fills them: fully qualified type names, json_name on every field, map entries named
 * `<Field>Entry`, exclusive message range ends. Built from a resolved protobufjs root
 * parsed with keepCase, so names are exactly as written in the .proto.
 */
export interface FieldProto {
  name: string;
  number: number;
  label: number;
  type: number;
  typeName?: string;
  extendee?: string;
  defaultValue?: string;
  oneofIndex?: number;
  jsonName: string;
  options?: Record<string, unknown>;
  proto3Optional?: boolean;
}

interface Range {
  start: number;
  end: number;
}

export interface MessageProto {
  name: string;
  field: FieldProto[];
  extension: FieldProto[];
  nestedType: MessageProto[];
  enumType: EnumProto[];
  extensionRange: Range[];
  oneofDecl: Array<{ name: string }>;
  options?: Record<string, unknown>;
  reservedRange: Range[];
  reservedName: string[];
}

export interface EnumProto {
  name: string;
  value: Array<{ name: string; number: number; options?: Record<string, unknown> }>;
  options?: Record<string, unknown>;
  reservedRange: Range[];
  reservedName: string[];
}

export interface ServiceProto {
  name: string;
  method: Array<{
    name: string;
    inputType: string;
    outputType: string;
    clientStreaming?: boolean;
    serverStreaming?: boolean;
    options?: Record<string, unknown>;
  }>;
  options?: Record<string, unknown>;
}

export interface FileProto {
  name: string;
  package?: string;
  dependency: string[];
  messageType: MessageProto[];
  enumType: EnumProto[];
  service: ServiceProto[];
  extension: FieldProto[];
  options?: Record<string, unknown>;
  syntax?: string;
}

// FieldDescriptorProto.Label and .Type.
const LABEL = { optional: 1, required: 2, repeated: 3 } as const;
const TYPE = { group: 10, message: 11, enum: 14 } as const;
const SCALARS: Readonly<Record<string, number>> = {
  double: 1,
  float: 2,
  int64: 3,
  uint64: 4,
  int32: 5,
  fixed64: 6,
  fixed32: 7,
  bool: 8,
  string: 9,
  bytes: 12,
  uint32: 13,
  sfixed32: 15,
  sfixed64: 16,
  sint32: 17,
  sint64: 18,
};

/** protoc's json_name: underscores dropped, the letter after each one upper-cased. */
export function jsonName(name: string): string {
  return name.replace(/_+(.?)/g, (_match, next: string) => next.toUpperCase());
}

/** protoc's name for the entry message of a map field: `metadata` → `MetadataEntry`. */
function mapEntryName(field: string): string {
  const camel = jsonName(field);
  return `${camel.charAt(0).toUpperCase()}${camel.slice(1)}Entry`;
}

/** A protobufjs full name (`.pkg.Type`) is already the absolute form protoc writes. */
function typeName(object: protobuf.ReflectionObject): string {
  return object.fullName.startsWith('.') ? object.fullName : `.${object.fullName}`;
}

/**
 * Keeps the standard options descriptor.proto knows (`java_package` → `javaPackage`);
 * custom `(ext)` options would need their extension's file, which none of ours declare.
 */
function optionsOf(
  options: Record<string, unknown> | undefined,
  type: protobuf.Type,
): Record<string, unknown> | undefined {
  if (!options) return undefined;
  const known = Object.entries(options)
    .map(([key, value]) => [protobuf.util.camelCase(key), value] as const)
    .filter(([key]) => type.fields[key] !== undefined);
  return known.length > 0 ? Object.fromEntries(known) : undefined;
}

function scalarType(type: string, where: string): number {
  const scalar = SCALARS[type];
  if (scalar === undefined) throw internal(`${where}: unresolved type ${type}`);
  return scalar;
}

/** Synthetic oneofs (proto3 `optional`) come after the declared ones, as protoc orders them. */
function oneofsInOrder(type: protobuf.Type): protobuf.OneOf[] {
  const synthetic = (oneof: protobuf.OneOf): boolean =>
    oneof.fieldsArray.length === 1 && oneof.fieldsArray[0]?.options?.proto3_optional === true;
  return [
    ...type.oneofsArray.filter((oneof) => !synthetic(oneof)),
    ...type.oneofsArray.filter(synthetic),
  ];
}

function fieldProto(field: protobuf.Field, oneofs: protobuf.OneOf[], syntax: string): FieldProto {
  const options: Record<string, unknown> | undefined = field.options;
  const explicitJson = options?.json_name;
  const proto: FieldProto = {
    name: field.name,
    number: field.id,
    label: field.repeated ? LABEL.repeated : field.required ? LABEL.required : LABEL.optional,
    type: 0,
    jsonName: typeof explicitJson === 'string' ? explicitJson : jsonName(field.name),
  };
  const resolved = field.resolve().resolvedType;
  if (resolved instanceof protobuf.Enum) {
    proto.type = TYPE.enum;
    proto.typeName = typeName(resolved);
  } else if (resolved instanceof protobuf.Type) {
    proto.type = field.delimited ? TYPE.group : TYPE.message;
    proto.typeName = typeName(resolved);
  } else {
    proto.type = scalarType(field.type, field.fullName);
  }
  if (field.extensionField?.parent) proto.extendee = typeName(field.extensionField.parent);
  else if (field.extend !== undefined) proto.extendee = field.extend;
  if (field.partOf) proto.oneofIndex = oneofs.indexOf(field.partOf);
  if (options?.proto3_optional === true) proto.proto3Optional = true;
  const fallback = options?.default;
  if (
    syntax !== 'proto3' &&
    (typeof fallback === 'string' || typeof fallback === 'number' || typeof fallback === 'boolean')
  ) {
    proto.defaultValue = String(fallback);
  }
  const fieldOptions = optionsOf(options, descriptor.FieldOptions);
  if (fieldOptions) proto.options = fieldOptions;
  return proto;
}

/** A map field is a repeated `<Field>Entry` message with `key` and `value`. */
function mapField(field: protobuf.MapField, parent: protobuf.Type): [FieldProto, MessageProto] {
  const entry = mapEntryName(field.name);
  const resolved = field.resolve().resolvedType;
  const value: FieldProto = {
    name: 'value',
    number: 2,
    label: LABEL.optional,
    type: 0,
    jsonName: 'value',
  };
  if (resolved instanceof protobuf.Enum || resolved instanceof protobuf.Type) {
    value.type = resolved instanceof protobuf.Enum ? TYPE.enum : TYPE.message;
    value.typeName = typeName(resolved);
  } else {
    value.type = scalarType(field.type, field.fullName);
  }
  const key: FieldProto = {
    name: 'key',
    number: 1,
    label: LABEL.optional,
    type: scalarType(field.keyType, field.fullName),
    jsonName: 'key',
  };
  const proto: FieldProto = {
    name: field.name,
    number: field.id,
    label: LABEL.repeated,
    type: TYPE.message,
    typeName: `${typeName(parent)}.${entry}`,
    jsonName: jsonName(field.name),
  };
  const fieldOptions = optionsOf(field.options, descriptor.FieldOptions);
  if (fieldOptions) proto.options = fieldOptions;
  return [proto, { ...emptyMessage(entry), field: [key, value], options: { mapEntry: true } }];
}

function emptyMessage(name: string): MessageProto {
  return {
    name,
    field: [],
    extension: [],
    nestedType: [],
    enumType: [],
    extensionRange: [],
    oneofDecl: [],
    reservedRange: [],
    reservedName: [],
  };
}

/** Reserved ranges: protobufjs keeps them inclusive; messages want an exclusive end. */
function reserved(
  list: Array<number[] | string> | undefined,
  exclusive: boolean,
): { ranges: Range[]; names: string[] } {
  const ranges: Range[] = [];
  const names: string[] = [];
  for (const item of list ?? []) {
    if (typeof item === 'string') names.push(item);
    else ranges.push({ start: item[0] ?? 0, end: (item[1] ?? item[0] ?? 0) + (exclusive ? 1 : 0) });
  }
  return { ranges, names };
}

export function messageProto(type: protobuf.Type, syntax: string): MessageProto {
  const proto = emptyMessage(type.name);
  const oneofs = oneofsInOrder(type);
  const entries: MessageProto[] = [];
  for (const field of type.fieldsArray) {
    // The copy protobufjs adds to an extended message is not a field of that message.
    if (field.declaringField) continue;
    if (field instanceof protobuf.MapField) {
      const [mapProto, entry] = mapField(field, type);
      proto.field.push(mapProto);
      entries.push(entry);
    } else {
      proto.field.push(fieldProto(field, oneofs, syntax));
    }
  }
  for (const nested of type.nestedArray) {
    if (nested instanceof protobuf.Type) proto.nestedType.push(messageProto(nested, syntax));
    else if (nested instanceof protobuf.Enum) proto.enumType.push(enumProto(nested));
    else if (nested instanceof protobuf.Field) proto.extension.push(fieldProto(nested, [], syntax));
  }
  proto.nestedType.push(...entries);
  proto.oneofDecl = oneofs.map((oneof) => ({ name: oneof.name }));
  for (const [start, end] of (type.extensions ?? []) as Array<[number, number]>) {
    proto.extensionRange.push({ start, end: end + 1 });
  }
  const { ranges, names } = reserved(type.reserved, true);
  proto.reservedRange = ranges;
  proto.reservedName = names;
  const options = optionsOf(type.options, descriptor.MessageOptions);
  if (options) proto.options = options;
  return proto;
}

/** An `extend` declared at file level. */
export function extensionProto(field: protobuf.Field, syntax: string): FieldProto {
  return fieldProto(field, [], syntax);
}

export function enumProto(type: protobuf.Enum): EnumProto {
  const { ranges, names } = reserved(type.reserved, false);
  const proto: EnumProto = {
    name: type.name,
    value: Object.entries(type.values).map(([name, number]) => {
      const options = optionsOf(type.valuesOptions?.[name], descriptor.EnumValueOptions);
      return options ? { name, number, options } : { name, number };
    }),
    reservedRange: ranges,
    reservedName: names,
  };
  const options = optionsOf(type.options, descriptor.EnumOptions);
  if (options) proto.options = options;
  return proto;
}

export function serviceProto(service: protobuf.Service): ServiceProto {
  const proto: ServiceProto = {
    name: service.name,
    method: service.methodsArray.map((method) => {
      method.resolve();
      if (!method.resolvedRequestType || !method.resolvedResponseType) {
        throw internal(`${method.fullName}: unresolved request or response type`);
      }
      const options = optionsOf(method.options, descriptor.MethodOptions);
      return {
        name: method.name,
        inputType: typeName(method.resolvedRequestType),
        outputType: typeName(method.resolvedResponseType),
        // protoc leaves the flags unset rather than false.
        ...(method.requestStream ? { clientStreaming: true } : {}),
        ...(method.responseStream ? { serverStreaming: true } : {}),
        ...(options ? { options } : {}),
      };
    }),
  };
  const options = optionsOf(service.options, descriptor.ServiceOptions);
  if (options) proto.options = options;
  return proto;
}

export function fileOptions(
  options: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  return optionsOf(options, descriptor.FileOptions);
}

/** The wire form reflection sends: a serialized FileDescriptorProto. */
export function encodeFile(file: FileProto): Uint8Array {
  return descriptor.FileDescriptorProto.encode(
    descriptor.FileDescriptorProto.fromObject(file),
  ).finish();
}
