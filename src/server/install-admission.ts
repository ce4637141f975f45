import {
  ALL_SLOTS,
  normalizeSlotRanges,
  ErrorCodes,
  ErrorReasons,
  type SlotRange,
  ShardsnapError,
  formatSlotRanges,
} from '../core';
import type { Ownership } from '../ownership';
import type { ArtifactHeader } from '../snapshot';

/** The slots an artifact replaces on the node that installs it. */
function slotsOf(header: Pick<ArtifactHeader, 'slots' | 'full' | 'kind'>): readonly SlotRange[] {
  // A files artifact is a database image: whatever else it says, it replaces everything.
  return header.full || header.kind === 'files' ? ALL_SLOTS : normalizeSlotRanges(header.slots);
}

/**
 * The ownership rule of InstallSnapshot and PullSnapshot: a node installs only slots it
 * owns, so an install can never put keys where MOVED already points elsewhere. The one
 * exception seeds a node that owns nothing: with `force`, it installs and then owns the
 * installed slots. `admit` checks the artifact's header before anything is staged;
 * `afterCommit` records the seeding once the install committed.
 */
export function installAdmission(
  ownership: Ownership,
  force: boolean,
  what: string,
): {
  admit: (header: ArtifactHeader) => void;
  afterCommit: () => Promise<void>;
  release: () => void;
} {
  let seeded: readonly SlotRange[] | undefined;
  let releaseSeed: (() => void) | undefined;
  return {
    admit: (header) => {
      const slots = slotsOf(header);
      if (ownership.ownsAll(slots)) return;
      const owned = ownership.owned();
      if (owned.length === 0 && force) {
        releaseSeed = ownership.claimSeed();
        seeded = slots;
        return;
      }
      throw new ShardsnapError(
        ErrorCodes.failedPrecondition,
        // Not the slots' owner: no redirect can be given, an install goes where it is sent.
        `${what}: this node does not own slots ${formatSlotRanges(slots)} of the artifact ` +
          `(it owns ${owned.length > 0 ? formatSlotRanges(owned) : 'none'}); ` +
          (owned.length === 0
            ? 'to seed an empty node, ask with force'
            : 'move slots with a split, not an install'),
        { reason: ErrorReasons.slotsNotOwned, metadata: { slots: formatSlotRanges(slots) } },
      );
    },
    afterCommit: async () => {
      try {
        if (seeded) await ownership.adopt(seeded);
      } finally {
        releaseSeed?.();
      }
    },
    release: () => releaseSeed?.(),
  };
}
