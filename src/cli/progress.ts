import { SingleBar, Presets } from 'cli-progress';
import { formatBytes } from './output';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

/** A progress bar on stderr, or nothing when output is JSON or quiet. */
export function progressBar(
  label: string,
  enabled: boolean,
  unit: 'bytes' | 'keys' | 'changes' = 'bytes',
): Progress {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  const bar = new SingleBar(
    {
      format: `${label.padEnd(10)} [{bar}] {percentage}% | {shown} | {speed}`,
      stream: process.stderr,
      hideCursor: true,
      noTTYOutput: false,
      etaBuffer: 20,
    },
    Presets.shades_classic,
  );
  const started = performance.now();
  let running = false;
  return {
    update(done, total) {
      const seconds = (performance.now() - started) / 1000;
      const shown =
        unit === 'bytes'
          ? `${formatBytes(done)} / ${formatBytes(total)}`
          : `${done} / ${total} ${unit}`;
      const speed =
        unit === 'bytes'
          ? `${formatBytes(seconds > 0 ? done / seconds : 0)}/s`
          : `${Math.round(seconds > 0 ? done / seconds : 0)} ${unit}/s`;
      if (!running) {
        bar.start(Math.max(total, 1), done, { shown, speed });
        running = true;
      } else {
        bar.setTotal(Math.max(total, done, 1));
        bar.update(done, { shown, speed });
      }
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
