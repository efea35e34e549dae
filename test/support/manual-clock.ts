// A clock that moves only when a test says so: timers fire in due order inside `advance`.
import type { Clock, Timer } from '../../src/io/clock.js';

interface Due {
  atMs: number;
  seq: number;
  fn: () => void;
  everyMs: number | undefined;
  token: { cancelled: boolean };
}

export class ManualClock implements Clock {
  private now: number;
  private seq = 0;
  private dues: Due[] = [];

  constructor(startMs = 1_700_000_000_000) {
    this.now = startMs;
  }

  nowMs(): number {
    return this.now;
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.after(ms, resolve));
  }

  after(ms: number, fn: () => void): Timer {
    return this.add(ms, fn, undefined);
  }

  every(ms: number, fn: () => void): Timer {
    return this.add(ms, fn, ms);
  }

  /** Timers not yet fired or cancelled. */
  get pending(): number {
    return this.dues.filter((d) => !d.token.cancelled).length;
  }

  /** Moves time forward by `ms`, firing every timer due on the way (and the promises they settle). */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    for (;;) {
      this.dues = this.dues.filter((d) => !d.token.cancelled).sort((a, b) => a.atMs - b.atMs || a.seq - b.seq);
      const next = this.dues[0];
      if (!next || next.atMs > target) break;
      this.dues.shift();
      this.now = next.atMs;
      if (next.everyMs !== undefined) this.dues.push({ ...next, atMs: next.atMs + next.everyMs, seq: this.seq++ });
      next.fn();
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.now = target;
  }

  private add(ms: number, fn: () => void, everyMs: number | undefined): Timer {
    const token = { cancelled: false };
    this.dues.push({ atMs: this.now + ms, seq: this.seq++, fn, everyMs, token });
    return { cancel: () => void (token.cancelled = true) };
  }
}
