import { ErrorCodes, ShardsnapError } from '../core';

/**
 * Fires its signal when a stream makes no progress for `ms`: armed while the node waits
 * on the client (for its next message, or for it to read), disarmed when it moves. A
 * client that stops without closing would otherwise hold its transfer slot, its lease
 * and its buffers for as long as the connection lives.
 */
export class IdleTimer {
  private readonly controller = new AbortController();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ms: number,
    private readonly what: string,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  arm(): void {
    if (this.timer !== undefined || this.controller.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.controller.abort(
        new ShardsnapError(
          ErrorCodes.unavailable,
          `${this.what}: no progress for ${this.ms} ms (--stream-idle-timeout); the stream was closed`,
        ),
      );
    }, this.ms);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
