/**
 * Samples a process's VmRSS every `intervalMs` while something runs, plus the kernel's
 * own peak mark (VmHWM, reset at start when permitted), which catches spikes between
 * samples.
 */
import { procStatusBytes, readRss, resetPeakRss } from './node-process';

export interface RssSummary {
  /** VmRSS read just before the sampled operation started. */
  beforeBytes: number;
  /** Largest sampled VmRSS. */
  peakBytes: number;
  /** VmHWM at the end, when it could be reset at the start (else NaN). */
  kernelPeakBytes: number;
  afterBytes: number;
  samples: number;
  intervalMs: number;
  /** Time of the sampled peak after the start, ms. */
  peakAtMs: number;
}

export class RssSampler {
  private readonly before: number;
  private peak: number;
  private peakAt = 0;
  private samples = 0;
  private readonly hwmReset: boolean;
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();

  constructor(
    private readonly pid: number,
    private readonly intervalMs = 10,
  ) {
    this.hwmReset = resetPeakRss(pid);
    this.before = readRss(pid);
    this.peak = this.before;
    this.timer = setInterval(() => this.sample(), intervalMs);
  }

  private sample(): void {
    const rss = readRss(this.pid);
    this.samples++;
    if (rss > this.peak) {
      this.peak = rss;
      this.peakAt = performance.now() - this.started;
    }
  }

  stop(): RssSummary {
    clearInterval(this.timer);
    this.sample();
    return {
      beforeBytes: this.before,
      peakBytes: this.peak,
      kernelPeakBytes: this.hwmReset ? procStatusBytes(this.pid, 'VmHWM') : NaN,
      afterBytes: readRss(this.pid),
      samples: this.samples,
      intervalMs: this.intervalMs,
      peakAtMs: this.peakAt,
    };
  }
}
