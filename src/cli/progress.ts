import { formatBytes } from './output';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

export interface ProgressState {
  /** A word before the bar: `building`, `resuming`, `verifying`. */
  phase?: string;
  done: number;
  /** What `done` goes to; with `estimated`, a guess shown with `~` (and no ETA). */
  total?: number;
  estimated?: boolean;
  /**
   * Where this run started (bytes an earlier run had fetched): the rate and the ETA count
   * only what moved since.
   */
  base?: number;
}

/** A progress line that knows phases; what `progressBar` returns. */
export interface PhasedProgress extends Progress {
  set(state: ProgressState): void;
}

/** Where a progress line is drawn: a terminal (stderr). */
export interface ProgressTerminal {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const HIDE_CURSOR = '\x1b[?25l';
const SHOW_CURSOR = '\x1b[?25h';
const CLEAR_TO_END = '\x1b[K';
/** The rate is measured over the last few seconds, so the ETA follows a changing pace. */
const RATE_WINDOW_MS = 5_000;
const MIN_REDRAW_MS = 100;
/** Redrawn this often while nothing is reported: a stall shows as a falling rate. */
const IDLE_REDRAW_MS = 1_000;

/**
 * One line on a terminal, redrawn in place: label, phase, bar, percentage, amount, rate
 * and ETA, fitted to the terminal's width (the bar shrinks first, then the rate and the
 * ETA go). The cursor is hidden while it runs and shown again by `stop`, or at exit.
 */
export class ProgressLine implements PhasedProgress {
  private state: ProgressState = { done: 0 };
  private samples: Array<{ at: number; done: number }> = [];
  private drawnAt = -Infinity;
  private drawnPhase: string | undefined;
  private running = false;
  private idle: ReturnType<typeof setInterval> | undefined;
  private readonly restore = (): void => {
    this.terminal.write(SHOW_CURSOR);
  };

  constructor(
    private readonly label: string,
    private readonly unit: 'bytes' | 'keys' | 'changes' = 'bytes',
    private readonly terminal: ProgressTerminal = process.stderr,
    private readonly now: () => number = () => performance.now(),
  ) {}

  update(done: number, total: number): void {
    this.set({ ...this.state, done, total: total > 0 ? total : undefined, estimated: false });
  }

  set(state: ProgressState): void {
    const at = this.now();
    const last = this.samples.at(-1);
    if (state.base !== undefined && state.base !== this.state.base) {
      this.samples = [{ at, done: state.base }];
    } else if (last && state.done < last.done) {
      this.samples = [];
    }
    this.samples.push({ at, done: state.done });
    while ((this.samples[1]?.at ?? Infinity) < at - RATE_WINDOW_MS) this.samples.shift();
    this.state = state;
    if (!this.running) this.start();
    if (state.phase !== this.drawnPhase || at - this.drawnAt >= MIN_REDRAW_MS) this.draw();
  }

  stop(): void {
    if (!this.running) return;
    this.draw();
    this.running = false;
    clearInterval(this.idle);
    process.off('exit', this.restore);
    this.terminal.write(`\n${SHOW_CURSOR}`);
  }

  /** The line as drawn now, at most `width` columns. */
  render(width = (this.terminal.columns || 80) - 1): string {
    const { phase, done, total, estimated } = this.state;
    const head = [this.label.padEnd(7), ...(phase ? [phase] : [])].join(' ');
    const fraction = total ? Math.min(1, done / total) : undefined;
    const percent =
      fraction === undefined
        ? undefined
        : `${estimated ? '~' : ''}${Math.floor(fraction * 100)}%`.padStart(4);
    const amount = this.amount(done, total, estimated);
    const rate = this.rate();
    const showRate = phase !== 'verifying' && phase !== 'resuming';
    const rateText = showRate ? this.perSecond(rate) : undefined;
    const eta =
      showRate && total && !estimated && done < total
        ? `ETA ${rate > 0 ? clock((total - done) / rate) : '--:--'}`
        : undefined;
    const tails = [
      [percent, amount, rateText, eta],
      [percent, amount, rateText],
      [percent, amount, eta],
      [percent, amount],
      [amount],
    ].map((parts) => parts.filter((p): p is string => p !== undefined).join(' '));
    for (const tail of tails) {
      const room = width - head.length - tail.length - 4;
      if (fraction !== undefined && room >= 8) {
        const filled = Math.round(fraction * room);
        return `${head} [${'#'.repeat(filled)}${'-'.repeat(room - filled)}] ${tail}`;
      }
      const line = `${head} ${tail}`;
      if (line.length <= width) return line;
    }
    return `${head} ${tails.at(-1) ?? ''}`.slice(0, width);
  }

  private start(): void {
    this.running = true;
    this.terminal.write(HIDE_CURSOR);
    process.once('exit', this.restore);
    this.idle = setInterval(() => this.draw(), IDLE_REDRAW_MS);
    this.idle.unref();
  }

  private draw(): void {
    this.drawnAt = this.now();
    this.drawnPhase = this.state.phase;
    this.terminal.write(`\r${this.render()}${CLEAR_TO_END}`);
  }

  /** Units per second over the window, counting only what this run moved. */
  private rate(): number {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last) return 0;
    // A stall counts: the window ends now, not at the last report.
    const seconds = (this.now() - first.at) / 1000;
    return seconds >= 0.2 ? (last.done - first.done) / seconds : 0;
  }

  private amount(done: number, total: number | undefined, estimated?: boolean): string {
    const of = total ? `/${estimated ? '~' : ''}` : '';
    if (this.unit !== 'bytes') return `${done}${total ? `${of}${total}` : ''} ${this.unit}`;
    return `${formatBytes(done)}${total ? `${of}${formatBytes(total)}` : ''}`;
  }

  private perSecond(rate: number): string {
    return this.unit === 'bytes' ? `${formatBytes(rate)}/s` : `${Math.round(rate)} ${this.unit}/s`;
  }
}

/** `h:mm:ss` or `m:ss`. */
function clock(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

const silent: PhasedProgress = {
  update: () => undefined,
  set: () => undefined,
  stop: () => undefined,
};

/**
 * A progress line on stderr when it is a terminal; nothing when output is JSON or stderr
 * is a file or a pipe (where redrawn lines would only be noise).
 */
export function progressBar(
  label: string,
  enabled: boolean,
  unit: 'bytes' | 'keys' | 'changes' = 'bytes',
): PhasedProgress {
  if (!enabled || !process.stderr.isTTY) return silent;
  return new ProgressLine(label, unit);
}
