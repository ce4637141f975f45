import calculateSlot from 'cluster-key-slot';

export const SLOT_COUNT = 16384;
export const MAX_SLOT = SLOT_COUNT - 1;

/** Redis Cluster slot of a key: CRC16 of the key, or of its `{hash tag}` when it has one. */
export function slotOf(key: Buffer): number {
  return calculateSlot(key);
}
