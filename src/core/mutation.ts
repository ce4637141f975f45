/** A single change to the store; a write batch is a list of these, applied atomically. */
export type Mutation =
  | { op: 'set'; key: Buffer; value: Buffer; expireAtMs: number }
  | { op: 'del'; key: Buffer }
  | { op: 'hset'; key: Buffer; fields: Array<{ field: Buffer; value: Buffer }> }
  | { op: 'lpush' | 'rpush'; key: Buffer; values: Buffer[] }
  | { op: 'sadd'; key: Buffer; members: Buffer[] }
  | { op: 'zadd'; key: Buffer; members: Array<{ member: Buffer; score: number }> }
  | { op: 'expire'; key: Buffer; expireAtMs: number };

export type MutationOp = Mutation['op'];

/** The key and payload bytes a mutation carries (a score counts 8). */
export function mutationPayloadBytes(m: Mutation): number {
  switch (m.op) {
    case 'set':
      return m.key.length + m.value.length;
    case 'hset':
      return m.fields.reduce((n, f) => n + f.field.length + f.value.length, m.key.length);
    case 'lpush':
    case 'rpush':
      return m.values.reduce((n, v) => n + v.length, m.key.length);
    case 'sadd':
      return m.members.reduce((n, v) => n + v.length, m.key.length);
    case 'zadd':
      return m.members.reduce((n, v) => n + v.member.length + 8, m.key.length);
    case 'del':
    case 'expire':
      return m.key.length;
  }
}
