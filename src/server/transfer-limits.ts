import { TokenBucket } from '../core';
import { AdaptiveRate, EventLoopStalls, LatencyWindow } from './adaptive-rate';
import type { NodeConfig } from './config';
import type { NodeMetrics } from './metrics';
import { type Direction, Transfers } from './transfers';

/** The node's transfer admission, its two shared rate limits and, if asked for, their controller. */
export interface TransferLimits {
  transfers: Transfers;
  buckets: Record<Direction, TokenBucket>;
  /** Foreground write latencies the adaptive mode watches; undefined when it is off. */
  writeLatencies: LatencyWindow | undefined;
  close(): void;
}

export function transferLimits(
  config: NodeConfig,
  metrics: () => NodeMetrics | undefined,
): TransferLimits {
  const bucket = (direction: Direction, rate: number | undefined): TokenBucket =>
    new TokenBucket({
      ...(rate !== undefined ? { rate } : {}),
      onThrottled: (ms) => metrics()?.throttled(direction, ms / 1000),
    });
  const buckets = {
    send: bucket('send', config.maxSendRate),
    recv: bucket('recv', config.maxRecvRate),
  };
  const controllers: AdaptiveRate[] = [];
  let writeLatencies: LatencyWindow | undefined;
  let stalls: EventLoopStalls | undefined;
  if (config.snapshotLatencyTargetMs !== undefined) {
    writeLatencies = new LatencyWindow();
    stalls = new EventLoopStalls();
    // One controller per direction, each up to its own cap, both on the same signal.
    for (const [direction, cap] of [
      ['send', config.maxSendRate],
      ['recv', config.maxRecvRate],
    ] as const) {
      const controller = new AdaptiveRate({
        targetMs: config.snapshotLatencyTargetMs,
        buckets: [buckets[direction]],
        window: writeLatencies,
        stalls,
        ...(cap !== undefined ? { maxRate: cap } : {}),
        onChange: (rate) =>
          metrics()?.rateLimit(direction, Number.isFinite(rate) ? rate : undefined),
      });
      controller.start();
      controllers.push(controller);
    }
  }
  const transfers = new Transfers({
    maxConcurrent: { send: config.maxConcurrentSends, recv: config.maxConcurrentRecvs },
    throttles: buckets,
    observer: {
      started: (direction) => metrics()?.transferStarted(direction) ?? (() => undefined),
      transferred: (direction, bytes) => metrics()?.transferred(direction, bytes),
      rejected: (reason) => metrics()?.rejected(reason),
    },
  });
  return {
    transfers,
    buckets,
    writeLatencies,
    close: () => {
      for (const controller of controllers) controller.stop();
      stalls?.close();
    },
  };
}
