export { Ownership, type ImportRecord } from './ownership';
export { parseOwnedSlots } from './parse';
export { recoverOwnership, type RecoveryDeps } from './recover';
export { OWNERSHIP_FILE } from './ownership-file';
export { writeFileDurably } from './durable-write';
