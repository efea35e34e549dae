// Time, passed in. Only this file (and the simulator's scheduler) reads the OS clock or starts OS
// timers: the daemon's logic asks its Clock, so a simulator can run it on simulated time.

export interface Timer {
  /** Stops the timer; harmless after it fired or was cancelled. */
  cancel(): void;
}

export interface Clock {
  /** Wall-clock milliseconds since the Unix epoch (a simulated clock starts at a fixed instant). */
  nowMs(): number;
  /** Resolves after `ms` milliseconds (simulated: when the scheduler reaches that time). */
  sleep(ms: number): Promise<void>;
  /** Runs `fn` once after `ms` milliseconds, unless cancelled first. */
  after(ms: number, fn: () => void): Timer;
  /** Runs `fn` every `ms` milliseconds until cancelled. */
  every(ms: number, fn: () => void): Timer;
}

export function nowSec(clock: Clock): number {
  return Math.floor(clock.nowMs() / 1000);
}

/** The operating system's clock and timers. */
export const systemClock: Clock = {
  nowMs: () => Date.now(),
  sleep: (ms) => new Promise<void>((resolve) => setTimeout(resolve, ms)),
  after(ms, fn) {
    const handle = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(handle) };
  },
  every(ms, fn) {
    const handle = setInterval(fn, ms);
    return { cancel: () => clearInterval(handle) };
  },
};
