import { ErrorCodes, ShardsnapError } from '../core';

export const failedPrecondition = (message: string, cause?: unknown): ShardsnapError =>
  new ShardsnapError(ErrorCodes.failedPrecondition, message, { cause });

/** Clients parse this message (as Redis Cluster clients do): it must stay exactly this. */
export const moved = (slot: number, owner: string): ShardsnapError =>
  new ShardsnapError(ErrorCodes.moved, `MOVED ${slot} ${owner}`);

/** Clients match this message exactly, as for Redis Cluster's TRYAGAIN. */
export const tryAgain = (): ShardsnapError => new ShardsnapError(ErrorCodes.tryAgain, 'TRYAGAIN');

export const notServed = (slot: number): ShardsnapError =>
  failedPrecondition(`slot ${slot} is not served by this node`);
