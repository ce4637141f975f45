/** Result rows, the stdout table, and the JSON results file. */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { REPO_ROOT, round } from './util';

/** INFO: a figure reported without a target. */
export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIPPED' | 'ERROR';

export interface Row {
  /** The measurement number of docs/BENCHMARKS.md. */
  n: number;
  name: string;
  value: number | null;
  /** Human form of value, e.g. `412.3 MiB/s`. */
  valueText: string;
  baseline: number | null;
  baselineText: string;
  /** The number the target applies to (value/baseline unless the target is absolute). */
  ratio: number | null;
  ratioText: string;
  target: string;
  verdict: Verdict;
  /** Extra figures: p50/max, sizes, per-run samples, why it was skipped. */
  note: string;
  details?: Record<string, unknown>;
}

export function verdict(pass: boolean): Verdict {
  return pass ? 'PASS' : 'MISS';
}

export function skippedRow(
  n: number,
  name: string,
  target: string,
  why: string,
  kind: Verdict = 'SKIPPED',
): Row {
  return {
    n,
    name,
    value: null,
    valueText: '-',
    baseline: null,
    baselineText: '-',
    ratio: null,
    ratioText: '-',
    target,
    verdict: kind,
    note: why,
  };
}

function pad(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) =>
          i <= 1 || i === row.length - 1
            ? cell.padEnd(widths[i] ?? 0)
            : cell.padStart(widths[i] ?? 0),
        )
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function renderTable(rows: readonly Row[]): string {
  const head = ['#', 'measurement', 'value', 'baseline', 'ratio', 'target', 'result'];
  const body = rows.map((r) => [
    String(r.n),
    r.name,
    r.valueText,
    r.baselineText,
    r.ratioText,
    r.target,
    r.verdict,
  ]);
  const table = pad([head, ...body]);
  const width = Math.max(...table.split('\n').map((l) => l.length));
  const notes = rows.filter((r) => r.note).map((r) => `  ${r.n}. ${r.note}`);
  return [
    table.split('\n')[0],
    '-'.repeat(width),
    ...table.split('\n').slice(1),
    '',
    'notes:',
    ...notes,
  ].join('\n');
}

/** `results-20250101T120000Z.json` (ISO 8601 basic format: no colons in file names). */
export function resultsFileName(date: Date): string {
  return `results-${date
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z')}.json`;
}

function clean(value: unknown): unknown {
  if (typeof value === 'number') return Number.isFinite(value) ? round(value) : null;
  if (Array.isArray(value)) return value.map(clean);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, clean(v)]));
  }
  return value;
}

export async function writeResults(date: Date, results: object): Promise<string> {
  const dir = join(REPO_ROOT, 'bench', 'out');
  await mkdir(dir, { recursive: true });
  const path = join(dir, resultsFileName(date));
  await writeFile(path, `${JSON.stringify(clean(results), null, 2)}\n`);
  return path;
}
