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
