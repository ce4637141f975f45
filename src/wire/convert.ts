import {
  type Entry,
  type Mutation,
  type SlotRange,
  fromMemberKey,
  invalidArgument,
  normalizeSlotRanges,
} from '../core';
import type { Mutation__Output } from '../generated/shardsnap/v1/Mutation';
import type { Mutation as MutationMessage } from '../generated/shardsnap/v1/Mutation';
import type { SlotRange as SlotRangeMessage } from '../generated/shardsnap/v1/SlotRange';
import type { SnapshotInfo, SnapshotInfo__Output } from '../generated/shardsnap/v1/SnapshotInfo';
import type { Value } from '../generated/shardsnap/v1/Value';
import type { ChunkCompression, SnapshotMeta } from '../snapshot';
import type { Compression__Output } from '../generated/shardsnap/v1/Compression';

export function slotRangesFromWire(ranges: readonly SlotRangeMessage[] | undefined): SlotRange[] {
  return normalizeSlotRanges(
    (ranges ?? []).map((r) => ({ start: Number(r.start ?? 0), end: Number(r.end ?? 0) })),
  );
}

export function compressionFromWire(c: Compression__Output | undefined): ChunkCompression {
  if (c === 'COMPRESSION_ZSTD') return 'zstd';
  if (c === undefined || c === 'COMPRESSION_NONE') return 'none';
  // An enum value this node does not know: guessing "none" would misread the bytes.
  throw invalidArgument(`unknown compression ${String(c)}`);
}

export function compressionToWire(c: ChunkCompression): Compression__Output {
  return c === 'zstd' ? 'COMPRESSION_ZSTD' : 'COMPRESSION_NONE';
}

function expiry(value: number | undefined, where: string): number {
  const ms = Number(value ?? 0);
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw invalidArgument(
      `${where}: expire_at_ms ${String(value)} is not a time in ms between 0 and 2^53-1 (0 = no expiry)`,
    );
  }
  return ms;
}

function nonEmpty<T>(items: T[], what: string, i: number): T[] {
  if (items.length === 0) throw invalidArgument(`mutation ${i}: ${what} must not be empty`);
  return items;
}

/** Validates and converts the mutations of a WriteRequest. */
export function mutationsFromWire(messages: readonly Mutation__Output[]): Mutation[] {
  if (messages.length === 0) throw invalidArgument('a write needs at least one mutation');
  return messages.map((m, i): Mutation => {
    const where = `mutation ${i}`;
    switch (m.op) {
      case 'set':
        return {
          op: 'set',
          key: m.set!.key,
          value: m.set!.value,
          expireAtMs: expiry(m.set!.expireAtMs, where),
        };
      case 'del':
        return { op: 'del', key: m.del!.key };
      case 'hset':
        return {
          op: 'hset',
          key: m.hset!.key,
          fields: nonEmpty(m.hset!.fields, 'fields', i).map((f) => ({
            field: f.field,
            value: f.value,
          })),
        };
      case 'lpush':
      case 'rpush': {
        const push = m[m.op]!;
        return { op: m.op, key: push.key, values: nonEmpty(push.values, 'values', i) };
      }
      case 'sadd':
        return { op: 'sadd', key: m.sadd!.key, members: nonEmpty(m.sadd!.members, 'members', i) };
      case 'zadd':
        return {
          op: 'zadd',
          key: m.zadd!.key,
          members: nonEmpty(m.zadd!.members, 'members', i).map((s) => {
            if (Number.isNaN(s.score)) throw invalidArgument(`${where}: score is not a number`);
            return { member: s.member, score: s.score };
          }),
        };
      case 'expire':
        return {
          op: 'expire',
          key: m.expire!.key,
          expireAtMs: expiry(m.expire!.expireAtMs, where),
        };
      default:
        throw invalidArgument(`${where}: no operation set`);
    }
  });
}

/** Domain mutations as a WriteRequest's messages (used by clients). */
export function mutationsToWire(mutations: readonly Mutation[]): MutationMessage[] {
  return mutations.map((m): MutationMessage => {
    switch (m.op) {
      case 'set':
        return { set: { key: m.key, value: m.value, expireAtMs: m.expireAtMs } };
      case 'del':
        return { del: { key: m.key } };
      case 'hset':
        return { hset: { key: m.key, fields: m.fields } };
      case 'lpush':
        return { lpush: { key: m.key, values: m.values } };
      case 'rpush':
        return { rpush: { key: m.key, values: m.values } };
      case 'sadd':
        return { sadd: { key: m.key, members: m.members } };
      case 'zadd':
        return { zadd: { key: m.key, members: m.members } };
      case 'expire':
        return { expire: { key: m.key, expireAtMs: m.expireAtMs } };
    }
  });
}

export function valueToWire(entry: Entry | undefined): Value {
  if (!entry) return { found: false };
  const v = entry.value;
  const base = { found: true, expireAtMs: entry.expireAtMs };
  switch (v.type) {
    case 'string':
      return { ...base, string: v.value };
    case 'list':
      return { ...base, list: { items: v.items } };
    case 'hash':
      return {
        ...base,
        hash: {
          fields: [...v.fields].map(([field, value]) => ({ field: fromMemberKey(field), value })),
        },
      };
    case 'set':
      return { ...base, set: { members: [...v.members].map(fromMemberKey) } };
    case 'zset':
      return {
        ...base,
        zset: {
          members: [...v.members].map(([member, score]) => ({
            member: fromMemberKey(member),
            score,
          })),
        },
      };
  }
}

export function snapshotInfoToWire(meta: SnapshotMeta): SnapshotInfo {
  return {
    id: meta.id,
    slots: meta.slots,
    strategy: meta.strategy,
    backend: meta.backend,
    kind: meta.kind,
    seq: meta.seq,
    keyCount: meta.keyCount,
    sizeBytes: meta.state === 'READY' ? meta.sizeBytes : 0,
    sha256: meta.state === 'READY' ? meta.sha256 : '',
    state: meta.state,
    createdAtMs: meta.createdAtMs,
    formatVersion: meta.formatVersion,
    chunkSize: meta.chunkSize,
    error: meta.error,
    nodeId: meta.nodeId,
    compression: compressionToWire(meta.compression),
    bytesWritten: meta.bytesWritten,
    labels: { ...(meta.labels ?? {}) },
    ...(meta.baseSeq !== undefined ? { baseSeq: meta.baseSeq } : {}),
  };
}

export type WireSnapshotInfo = SnapshotInfo__Output;
