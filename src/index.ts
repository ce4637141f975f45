/*
 * The package root is the client of shard nodes; it loads nothing of the node itself.
 * The node and its parts are subpath exports: `shardsnap/server`, `shardsnap/store`,
 * `shardsnap/snapshot`, `shardsnap/archive`, `shardsnap/transfer`, ... (see package.json).
 */
export * from './client';
export {
  ERROR_DOMAIN,
  type ErrorCode,
  ErrorCodes,
  type ErrorReason,
  ErrorReasons,
  ShardsnapError,
  type ShardsnapErrorOptions,
  hasReason,
  isShardsnapError,
} from './core/errors';
export { MAX_SLOT, SLOT_COUNT, slotOf } from './core/slots';
export {
  ALL_SLOTS,
  type SlotRange,
  formatSlotRanges,
  normalizeSlotRanges,
  parseSlotRanges,
  validateSlotRange,
} from './core/slot-range';
export type { Mutation, MutationOp } from './core/mutation';
export { type ClientSecurityFiles, loadClientSecurity } from './wire/security';
