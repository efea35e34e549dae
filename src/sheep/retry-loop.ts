// Work that must eventually be done and may fail for a while (a peer away, a disk full): tried
// after `firstMs`, then again with the wait doubling up to `longestMs` until an attempt reports
// done. A new request starts the wait over. Timers come from the injected Clock.
import type { Clock, Timer } from '../io/clock.js';

export class RetryLoop {
  private timer: Timer | undefined;
  private delayMs: number;
  private running = false;
  private requestedWhileRunning = false;
  private stopped = false;

  constructor(
    private readonly clock: Clock,
    private readonly firstMs: number,
    private readonly longestMs: number,
    /** True when nothing is left to do; a throw counts as not done (log it inside). */
    private readonly attempt: () => Promise<boolean>,
  ) {
    this.delayMs = firstMs;
  }

  request(): void {
    if (this.stopped) return;
    this.delayMs = this.firstMs;
    if (this.running) this.requestedWhileRunning = true;
    else this.arm();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private arm(): void {
    if (this.timer || this.stopped) return;
    this.timer = this.clock.after(this.delayMs, () => {
      this.timer = undefined;
      void this.run();
    });
  }

  private async run(): Promise<void> {
    this.running = true;
    let done = false;
    try {
      done = await this.attempt();
    } catch {
      done = false;
    } finally {
      this.running = false;
    }
    if (this.stopped) return;
    if (this.requestedWhileRunning) {
      this.requestedWhileRunning = false;
      this.delayMs = this.firstMs;
    } else if (done) {
      this.delayMs = this.firstMs;
      return;
    } else {
      this.delayMs = Math.min(this.delayMs * 2, this.longestMs);
    }
    this.arm();
  }
}
