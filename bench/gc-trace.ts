/**
 * The `--trace-gc` lines a node process prints on its stdout, parsed as they arrive:
 *
 *   [4184:0x5b2bc00]   141 ms: Scavenge 3.9 (4.0) -> 3.7 (5.0) MB, 3.74 / 0.00 ms  (average mu ...) allocation failure;
 *   [4184:0x5b2bc00]  1198 ms: Mark-Compact 53.4 (82.4) -> 50.0 (83.9) MB, 7.33 / 0.00 ms  (+ 67.0 ms in 164 steps since start of marking, ...) ...
 *
 * The time on each line is the node's (ms since its V8 isolate started), printed when the
 * collection ends; the first figure after "MB," is the pause on the node's main thread, the
 * "+ N ms in M steps" of a Mark-Compact is the incremental marking done before it (also on
 * the main thread, in small steps). V8 writes each line as it happens, so the arrival time
 * in the bench process bounds the node's time from above: the smallest (arrival − node time)
 * over all lines maps the bench's clock onto the node's.
 */
import { now } from './util';

export interface GcEvent {
  /** Node time of the line (ms since the node's isolate started). */
  nodeMs: number;
  /** Bench time (performance.now()) when the line arrived. */
  arrivedAt: number;
  /** `Scavenge`, `Mark-Compact`, `Mark-Compact (reduce)`, ... */
  kind: string;
  pauseMs: number;
  /** V8 heap after the collection: used and committed, MB as printed. */
  heapUsedMb: number;
  heapCommittedMb: number;
  /** Incremental marking before a Mark-Compact, ms (0 for the others). */
  incrementalMs: number;
  incrementalSteps: number;
  /** The rest of the line: the collector's reason. */
  reason: string;
}

export interface GcSummary {
  events: number;
  scavenges: number;
  markCompacts: number;
  /** Sum of the pauses (Scavenge and Mark-Compact lines), ms. */
  pauseMs: number;
  scavengeMs: number;
  markCompactMs: number;
  maxPauseMs: number;
  /** Incremental marking steps of those Mark-Compacts, ms (not in pauseMs). */
  incrementalMs: number;
}

const LINE =
  /^\[\d+:0x[0-9a-f]+\]\s+(\d+(?:\.\d+)?) ms: (.+?) [\d.]+ \([\d.]+\) -> ([\d.]+) \(([\d.]+)\) MB, ([\d.]+) \/ [\d.]+ ms(.*)$/;
const INCREMENTAL = /\(\+ ([\d.]+) ms in (\d+) steps/;

export function parseGcLine(line: string, arrivedAt: number): GcEvent | undefined {
  const match = LINE.exec(line);
  if (!match) return undefined;
  const kind = match[2] as string;
  if (!kind.startsWith('Scavenge') && !kind.includes('Mark-')) return undefined;
  const rest = match[6] ?? '';
  const incremental = INCREMENTAL.exec(rest);
  return {
    nodeMs: Number(match[1]),
    arrivedAt,
    kind,
    pauseMs: Number(match[5]),
    heapUsedMb: Number(match[3]),
    heapCommittedMb: Number(match[4]),
    incrementalMs: incremental ? Number(incremental[1]) : 0,
    incrementalSteps: incremental ? Number(incremental[2]) : 0,
    reason: rest
      .replace(/\([^)]*\)/g, '')
      .replace(/;\s*$/, '')
      .trim(),
  };
}

export class GcTrace {
  readonly events: GcEvent[] = [];
  private partial = '';
  /** Smallest (arrival − node time) seen so far: bench time = node time + offset. */
  private bestOffset = Infinity;

  /** For `startNodeProcess({ onStdout })`. */
  readonly push = (piece: Buffer): void => {
    const arrivedAt = now();
    const lines = (this.partial + piece.toString('latin1')).split('\n');
    this.partial = (lines.pop() ?? '').slice(-4096);
    for (const line of lines) {
      const event = parseGcLine(line.trimEnd(), arrivedAt);
      if (!event) continue;
      this.events.push(event);
      this.bestOffset = Math.min(this.bestOffset, arrivedAt - event.nodeMs);
    }
  };

  /** Bench time minus node time, from the promptest line; NaN before any line. */
  get offsetMs(): number {
    return Number.isFinite(this.bestOffset) ? this.bestOffset : NaN;
  }

  /** The collections that ended between bench times `from` and `to`. */
  between(from: number, to: number): GcEvent[] {
    const offset = this.offsetMs;
    if (!Number.isFinite(offset)) return [];
    return this.events.filter((e) => e.nodeMs + offset >= from && e.nodeMs + offset <= to);
  }

  /** The events that ended after bench time `from`. */
  since(from: number): GcEvent[] {
    return this.between(from, Infinity);
  }
}

export function summarizeGc(events: readonly GcEvent[]): GcSummary {
  const scavenges = events.filter((e) => e.kind.startsWith('Scavenge'));
  const markCompacts = events.filter((e) => !e.kind.startsWith('Scavenge'));
  const sum = (list: readonly GcEvent[], f: (e: GcEvent) => number): number =>
    list.reduce((total, e) => total + f(e), 0);
  return {
    events: events.length,
    scavenges: scavenges.length,
    markCompacts: markCompacts.length,
    pauseMs: sum(events, (e) => e.pauseMs),
    scavengeMs: sum(scavenges, (e) => e.pauseMs),
    markCompactMs: sum(markCompacts, (e) => e.pauseMs),
    maxPauseMs: events.reduce((m, e) => Math.max(m, e.pauseMs), 0),
    incrementalMs: sum(markCompacts, (e) => e.incrementalMs),
  };
}
