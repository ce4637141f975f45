/** Benchmark settings from the environment, and the time budgets derived from them. */
import { MiB, envInt } from './util';

export type Suite = 'memory' | 'rocksdb';

export const SUITES: readonly Suite[] = ['memory', 'rocksdb'];

export interface BenchConfig {
  /** BENCH_SUITES: which sections run (rows 1-6 memory, rows 7-10 rocksdb); default both. */
  suites: Suite[];
  /** BENCH_KEYS: string keys in the dataset of the memory section. */
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
  /** BENCH_ROCKSDB_KEYS: string keys in the dataset of the rocksdb section. */
  rocksdbKeys: number;
  /** Upper bound of any single step of the rocksdb section, ms. */
  rocksdbStepTimeoutMs: number;
}

/** Generous: 1 MiB/s would be pathological on any machine; at least two minutes. */
function stepTimeout(keys: number, valueSize: number): number {
  return Math.max(120_000, ((keys * (valueSize + 16)) / MiB) * 1000);
}

function readSuites(): Suite[] {
  const text = process.env.BENCH_SUITES;
  if (text === undefined || text.trim() === '') return [...SUITES];
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of names) {
    if (!(SUITES as readonly string[]).includes(name))
      throw new Error(`BENCH_SUITES: unknown suite "${name}" (known: ${SUITES.join(', ')})`);
  }
  // Always in the order of the rows, whatever the order given.
  return SUITES.filter((s) => names.includes(s));
}

export function readConfig(): BenchConfig {
  const keys = envInt('BENCH_KEYS', 1_000_000);
  const valueSize = envInt('BENCH_VALUE_SIZE', 1000);
  const runs = envInt('BENCH_RUNS', 3);
  const rocksdbKeys = envInt('BENCH_ROCKSDB_KEYS', 1_000_000);
  return {
    suites: readSuites(),
    keys,
    valueSize,
    runs,
    seed: 1,
    stepTimeoutMs: stepTimeout(keys, valueSize),
    idleWrites: 2000,
    rocksdbKeys,
    rocksdbStepTimeoutMs: stepTimeout(rocksdbKeys, valueSize),
  };
}

export const TARGETS = {
  fetchRatio: 0.35,
  redisRatio: 0.5,
  slotRangeRatio: 0.2,
  rssRatio: 1.25,
  writeP99Ms: 20,
  pullKeysPerSec: 500_000,
  /** 7: CreateSnapshot(rocksdb-checkpoint) / full rocksdb-iterator build. */
  checkpointRatio: 0.05,
  /** 8: fetch of the checkpoint artifact / raw TCP copy of the same bytes. */
  checkpointFetchRatio: 0.35,
  /** 9: rocksdb-iterator build of 1/8 of the slots / full rocksdb-iterator build. */
  rocksdbSlotRangeRatio: 0.2,
  /** 10: install by SST ingest (pull) / batched puts, in keys/s. */
  ingestSpeedup: 5,
} as const;

/** 1/8 of the 16384 slots. */
export const EIGHTH_OF_SLOTS = [{ start: 0, end: 2047 }];
