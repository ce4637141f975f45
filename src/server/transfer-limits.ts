import { TokenBucket } from '../core';
import { AdaptiveRate, LatencyWindow } from './adaptive-rate';
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
  let adaptive: AdaptiveRate | undefined;
  let writeLatencies: LatencyWindow | undefined;
  if (config.snapshotLatencyTargetMs !== undefined) {
    writeLatencies = new LatencyWindow();
    const caps = [config.maxSendRate, config.maxRecvRate].filter(
      (rate): rate is number => rate !== undefined,
    );
    adaptive = new AdaptiveRate({
      targetMs: config.snapshotLatencyTargetMs,
      buckets: [buckets.send, buckets.recv],
      window: writeLatencies,
      ...(caps.length > 0 ? { maxRate: Math.min(...caps) } : {}),
      onChange: (rate) => {
        const limit = Number.isFinite(rate) ? rate : undefined;
        metrics()?.rateLimit('send', limit);
        metrics()?.rateLimit('recv', limit);
      },
    });
    adaptive.start();
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
    close: () => adaptive?.stop(),
  };
}
