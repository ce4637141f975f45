/** Benchmark settings from the environment, and the time budgets derived from them. */
import { DEFAULT_WRITER_RATE } from './redis-cluster';
import { MiB, envInt } from './util';

export type Suite =
  | 'memory'
  | 'rocksdb'
  | 'split'
  | 'keyspace'
  | 'transfer'
  | 'limits'
  | 'decode'
  | 'durability'
  | 'rebalance';

export const SUITES: readonly Suite[] = [
  'memory',
  'rocksdb',
  'split',
  'keyspace',
  'transfer',
  'limits',
  'decode',
  'durability',
  'rebalance',
];

/** Backends of the split section: row 11 memory → memory, row 12 rocksdb → rocksdb. */
export type SplitBackend = 'memory' | 'rocksdb';

export const SPLIT_BACKENDS: readonly SplitBackend[] = ['memory', 'rocksdb'];

/** One dataset of the keyspace section: `keys` string keys of `valueSize` random bytes. */
export interface KeyspaceSet {
  keys: number;
  valueSize: number;
}

export const DEFAULT_KEYSPACE_SETS = '1000000x1000,10000000x100';

/** `cluster rebalance --parallel` of rows 36-38: the fastest of 1, 2 and 3 at 100k keys. */
export const DEFAULT_REBALANCE_PARALLEL = 2;

export interface BenchConfig {
  /**
   * BENCH_SUITES (or `--only a,b` on the command line): which sections run (rows 1-6
   * memory, rows 7-10 rocksdb, rows 11-12 split, rows 13-18 keyspace, rows 19-24
   * transfer, rows 25-30 limits, row 31 decode, rows 32-35 durability, rows 36-38
   * rebalance); default all of them.
   */
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
  /** BENCH_SPLIT_KEYS: string keys on the source of the split section (and in Redis). */
  splitKeys: number;
  /** BENCH_SPLIT_BACKENDS: backends of the split section (both nodes alike). */
  splitBackends: SplitBackend[];
  /** BENCH_SPLIT_RUNS: splits per backend and reshards (each on freshly loaded nodes). */
  splitRuns: number;
  /** BENCH_SPLIT_WRITER_RATE: writes a second of the steady writer (both sides); 0 = back to back. */
  splitWriterRate: number;
  /** Upper bound of any single step of the split section, ms. */
  splitStepTimeoutMs: number;
  /** BENCH_KEYSPACE_SETS: the datasets of the keyspace section, in the order given. */
  keyspaceSets: KeyspaceSet[];
  /** BENCH_KEYSPACE_RUNS: repetitions of rows 15-17 per dataset (median shown). */
  keyspaceRuns: number;
  /** BENCH_TRANSFER_KEYS: string keys on the nodes of the transfer section (rows 19-24). */
  transferKeys: number;
  /** Upper bound of any single step of the transfer section, ms. */
  transferStepTimeoutMs: number;
  /** BENCH_LIMITS_KEYS: string keys behind the artifact of the limits section (rows 25-30). */
  limitsKeys: number;
  /** BENCH_LIMITS_WRITE_RATE: foreground writes a second on the pulling node of rows 28-29. */
  limitsWriteRate: number;
  /** Upper bound of any single step of the limits section, ms. */
  limitsStepTimeoutMs: number;
  /** BENCH_DURABILITY_KEYS: string keys of the node restarted in row 34 (and of row 35). */
  durabilityKeys: number;
  /** BENCH_DURABILITY_VALUE_SIZE: value bytes of the durability section (rows 32-35). */
  durabilityValueSize: number;
  /** BENCH_DURABILITY_WRITE_KEYS: SETs of each timed load of rows 32-33. */
  durabilityWriteKeys: number;
  /** BENCH_DURABILITY_RUNS: timed loads per configuration of rows 32-33 (median shown). */
  durabilityRuns: number;
  /** Upper bound of any single step of the durability section, ms. */
  durabilityStepTimeoutMs: number;
  /** BENCH_REBALANCE_KEYS: string keys on the first node of the rebalance section (and in Redis). */
  rebalanceKeys: number;
  /** BENCH_REBALANCE_NODES: nodes (and Redis masters) the first one's slots are spread over. */
  rebalanceNodes: number;
  /**
   * BENCH_REBALANCE_PARALLEL: `cluster rebalance --parallel` values, one rebalance on a fresh
   * cluster each; rows 36-38 report the first, the notes every one.
   */
  rebalanceParallel: number[];
  /** BENCH_REBALANCE_WRITER_RATE: writes a second of the steady writer (both sides); 0 = back to back. */
  rebalanceWriterRate: number;
  /** BENCH_REBALANCE_MAX_PAUSE: `cluster rebalance --max-pause` in ms; 0 (default) passes none. */
  rebalanceMaxPauseMs: number;
  /** Upper bound of any single step of the rebalance section, ms. */
  rebalanceStepTimeoutMs: number;
  /** BENCH_REBALANCE_BASELINE=0: skip the Redis side (rows 36-38 then have no baseline). */
  rebalanceBaseline: boolean;
  /** BENCH_REBALANCE_NODE_FLAGS: more Node flags for the nodes, e.g. `--cpu-prof --cpu-prof-dir=DIR`. */
  rebalanceNodeFlags: string[];
  /** BENCH_REBALANCE_SERVE_ARGS: more `shardsnap serve` options for the nodes, e.g. `--no-wal`. */
  rebalanceServeArgs: string[];
}

/** Generous: 1 MiB/s would be pathological on any machine; at least two minutes. */
function stepTimeout(keys: number, valueSize: number): number {
  return Math.max(120_000, ((keys * (valueSize + 16)) / MiB) * 1000);
}

/**
 * Upper bound of a step of the keyspace section: as `stepTimeout`, and at least 5,000
 * keys a second, since small values make per-key costs dominate.
 */
export function keyspaceStepTimeout(set: KeyspaceSet): number {
  return Math.max(stepTimeout(set.keys, set.valueSize), (set.keys / 5_000) * 1000);
}

/** `1000000x1000,10000000x100`: keys × value bytes, comma-separated (`_` and `×` allowed). */
export function parseKeyspaceSets(name: string, text: string): KeyspaceSet[] {
  const sets = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((item) => {
      const match = /^([\d_]+)\s*[x×]\s*([\d_]+)$/i.exec(item);
      const keys = Number(match?.[1]?.replace(/_/g, ''));
      const valueSize = Number(match?.[2]?.replace(/_/g, ''));
      if (!match || !Number.isSafeInteger(keys) || keys < 1 || !Number.isSafeInteger(valueSize))
        throw new Error(`${name}: "${item}" is not KEYSxVALUE_BYTES, e.g. 1000000x1000`);
      if (valueSize < 1 || valueSize > 64 << 20)
        throw new Error(`${name}: value size ${valueSize} out of 1..${64 << 20} bytes`);
      return { keys, valueSize };
    });
  if (sets.length === 0) throw new Error(`${name}: no dataset given`);
  return sets;
}

/** `2` or `1,2,3`: positive integers, comma-separated, in the order given. */
export function parseIntList(name: string, text: string): number[] {
  const values = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((item) => {
      const n = Number(item.replace(/_/g, ''));
      if (!Number.isSafeInteger(n) || n < 1)
        throw new Error(`${name}: "${item}" is not a positive integer`);
      return n;
    });
  if (values.length === 0) throw new Error(`${name}: no value given`);
  return values;
}

/** Comma-separated names out of `known`, in the order of `known`; all when empty. */
function readList<T extends string>(
  what: string,
  text: string | undefined,
  known: readonly T[],
): T[] {
  if (text === undefined || text.trim() === '') return [...known];
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const name of names) {
    if (!(known as readonly string[]).includes(name))
      throw new Error(`${what}: unknown name "${name}" (known: ${known.join(', ')})`);
  }
  // Always in the order of the rows, whatever the order given.
  return known.filter((s) => names.includes(s));
}

/** `--only split` / `--only=memory,split` on the command line wins over BENCH_SUITES. */
function onlyArgument(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--only') {
      const value = argv[i + 1];
      if (value === undefined) throw new Error('--only needs a section list, e.g. --only split');
      return value;
    }
    if (arg.startsWith('--only=')) return arg.slice('--only='.length);
    throw new Error(`unknown argument "${arg}" (known: --only SECTIONS)`);
  }
  return undefined;
}

function readSuites(argv: readonly string[]): Suite[] {
  const only = onlyArgument(argv);
  if (only !== undefined) return readList('--only', only, SUITES);
  return readList('BENCH_SUITES', process.env.BENCH_SUITES, SUITES);
}

export function readConfig(argv: readonly string[] = process.argv.slice(2)): BenchConfig {
  const keys = envInt('BENCH_KEYS', 1_000_000);
  const valueSize = envInt('BENCH_VALUE_SIZE', 1000);
  const runs = envInt('BENCH_RUNS', 3);
  const rocksdbKeys = envInt('BENCH_ROCKSDB_KEYS', 1_000_000);
  const splitKeys = envInt('BENCH_SPLIT_KEYS', 1_000_000);
  const rebalanceKeys = envInt('BENCH_REBALANCE_KEYS', 1_000_000);
  return {
    suites: readSuites(argv),
    keys,
    valueSize,
    runs,
    seed: 1,
    stepTimeoutMs: stepTimeout(keys, valueSize),
    idleWrites: 2000,
    rocksdbKeys,
    rocksdbStepTimeoutMs: stepTimeout(rocksdbKeys, valueSize),
    splitKeys,
    splitBackends: readList(
      'BENCH_SPLIT_BACKENDS',
      process.env.BENCH_SPLIT_BACKENDS,
      SPLIT_BACKENDS,
    ),
    splitRuns: envInt('BENCH_SPLIT_RUNS', 1),
    splitWriterRate: envInt('BENCH_SPLIT_WRITER_RATE', DEFAULT_WRITER_RATE, 0),
    splitStepTimeoutMs: stepTimeout(splitKeys, valueSize),
    keyspaceSets: parseKeyspaceSets(
      'BENCH_KEYSPACE_SETS',
      process.env.BENCH_KEYSPACE_SETS?.trim() || DEFAULT_KEYSPACE_SETS,
    ),
    keyspaceRuns: envInt('BENCH_KEYSPACE_RUNS', 1),
    transferKeys: envInt('BENCH_TRANSFER_KEYS', 1_000_000),
    transferStepTimeoutMs: stepTimeout(envInt('BENCH_TRANSFER_KEYS', 1_000_000), valueSize),
    limitsKeys: envInt('BENCH_LIMITS_KEYS', 300_000),
    limitsWriteRate: envInt('BENCH_LIMITS_WRITE_RATE', 500),
    limitsStepTimeoutMs: stepTimeout(envInt('BENCH_LIMITS_KEYS', 300_000), valueSize),
    durabilityKeys: envInt('BENCH_DURABILITY_KEYS', 1_000_000),
    durabilityValueSize: envInt('BENCH_DURABILITY_VALUE_SIZE', 1000),
    durabilityWriteKeys: envInt('BENCH_DURABILITY_WRITE_KEYS', 200_000),
    durabilityRuns: envInt('BENCH_DURABILITY_RUNS', 3),
    durabilityStepTimeoutMs: stepTimeout(
      envInt('BENCH_DURABILITY_KEYS', 1_000_000),
      envInt('BENCH_DURABILITY_VALUE_SIZE', 1000),
    ),
    rebalanceKeys,
    rebalanceNodes: envInt('BENCH_REBALANCE_NODES', 4, 2),
    rebalanceParallel: parseIntList(
      'BENCH_REBALANCE_PARALLEL',
      process.env.BENCH_REBALANCE_PARALLEL?.trim() || String(DEFAULT_REBALANCE_PARALLEL),
    ),
    rebalanceWriterRate: envInt('BENCH_REBALANCE_WRITER_RATE', DEFAULT_WRITER_RATE, 0),
    rebalanceMaxPauseMs: envInt('BENCH_REBALANCE_MAX_PAUSE', 0, 0),
    rebalanceStepTimeoutMs: stepTimeout(rebalanceKeys, valueSize),
    rebalanceBaseline: envInt('BENCH_REBALANCE_BASELINE', 1, 0) !== 0,
    rebalanceNodeFlags: (process.env.BENCH_REBALANCE_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean),
    rebalanceServeArgs: (process.env.BENCH_REBALANCE_SERVE_ARGS ?? '').split(/\s+/).filter(Boolean),
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
  /** 11-12: `redis-cli --cluster reshard` seconds / our split's seconds, same data and writer. */
  splitSpeedup: 5,
  /** 11-12: write pause of the handoff, measured on the source. */
  splitPauseMs: 100,
  /** 13: `shardsnap load` (the CLI) / `redis-cli --pipe` of the same SETs, seconds. */
  keyspaceLoadRatio: 2,
  /** 14: VmRSS of the loaded node / Redis `used_memory_rss`, same data. */
  keyspaceRssRatio: 1.1,
  /** 15: create + fetch of a full snapshot / `redis-cli --rdb`, seconds. */
  keyspaceFetchRatio: 0.5,
  /** 16: `shardsnap pull` into an empty node / Redis replica full sync, seconds. */
  keyspacePullRatio: 0.5,
  /**
   * 17: "flat": GC pause per GiB fetched on the dataset with the most keys / on the one
   * with the fewest at most this much.
   */
  keyspaceGcFlatRatio: 1.25,
  /** 18: p99 of single-key writes during a full build. */
  keyspaceWriteP99Ms: 10,
  /** 19-20: `shardsnap fetch --id` (CLI, start included) / raw file→socket→file copy, MiB/s. */
  transferFetchRatio: 0.6,
  /** 21: `shardsnap pull` node → node / the same raw copy, bytes/s. */
  transferPullRatio: 0.5,
  /** 22: one fetch / raw copy, both through a proxy adding 10 ms each way. */
  transferLatencyRatio: 0.8,
  /** 24: CreateSnapshot until the first chunk of a fetch of it, 1M-key memory node. */
  transferFirstByteMs: 50,
  /** 25-27: a rate-limited transfer of N bytes at R takes N/R within this fraction. */
  limitsRateTolerance: 0.1,
  /** 28: the latency target of the adaptive run, as a multiple of the idle write p99. */
  limitsTargetOverIdleP99: 2.5,
  /** 29: adaptive pull MiB/s / the fastest fixed `--max-recv-rate` with the same write p99. */
  limitsAdaptiveSpeedup: 2,
  /** 32: keys/s of `shardsnap load` into a `--wal-fsync everysec` node / into a `--no-wal` one. */
  durabilityEverysecRatio: 0.8,
  /** 33: keys/s into a `--wal-fsync always` node / Redis `appendfsync always`, same writes. */
  durabilityAlwaysRatio: 1,
  /** 34: restart until recovered / Redis load of an AOF with RDB preamble, same data. */
  durabilityRestartRatio: 1,
  /** 35: bytes and time of a delta of 1% of the keys / of the full snapshot. */
  durabilityDeltaRatio: 0.05,
  /** 36: `redis-cli --cluster rebalance` seconds / `shardsnap cluster rebalance` seconds, 1 → 4 nodes. */
  rebalanceSpeedup: 10,
  /** 37-38: the longest handoff pause (source) and the longest gap between the writer's acks. */
  rebalancePauseMs: 50,
} as const;

/** 1/8 of the 16384 slots. */
export const EIGHTH_OF_SLOTS = [{ start: 0, end: 2047 }];
