/** Benchmark settings from the environment, and the time budgets derived from them. */
import { MiB, envInt } from './util';

export interface BenchConfig {
  /** BENCH_KEYS: string keys in the dataset. */
  keys: number;
  /** BENCH_VALUE_SIZE: bytes of each random value. */
  valueSize: number;
  /** BENCH_RUNS: repetitions of each timed measurement (the median is reported). */
  runs: number;
  /** Seed of the synthetic data (fixed: the same bytes go into shardsnap and Redis). */
  seed: number;
  /** Upper bound of any single step (a build, a fetch, a pull, a load), ms. */
  stepTimeoutMs: number;
  /** Writes of the idle write-latency baseline. */
  idleWrites: number;
}

export function readConfig(): BenchConfig {
  const keys = envInt('BENCH_KEYS', 1_000_000);
  const valueSize = envInt('BENCH_VALUE_SIZE', 1000);
  const runs = envInt('BENCH_RUNS', 3);
  const bytes = keys * (valueSize + 16);
  return {
    keys,
    valueSize,
    runs,
    seed: 1,
    // Generous: 1 MiB/s would be pathological on any machine; at least two minutes.
    stepTimeoutMs: Math.max(120_000, (bytes / MiB) * 1000),
    idleWrites: 2000,
  };
}

export const TARGETS = {
  fetchRatio: 0.35,
  redisRatio: 0.5,
  slotRangeRatio: 0.2,
  rssRatio: 1.25,
  writeP99Ms: 20,
  pullKeysPerSec: 500_000,
} as const;

/** 1/8 of the 16384 slots. */
export const EIGHTH_OF_SLOTS = [{ start: 0, end: 2047 }];
