// A token bucket over a caller's clock readings: `burst` events at once, then one per
// `refillMs`. Pure (the caller passes the time), so it runs the same on simulated time.

export class TokenBucket {
  private tokens: number;
  private lastMs: number | undefined;

  constructor(
    private readonly burst: number,
    private readonly refillMs: number,
  ) {
    this.tokens = burst;
  }

  /** Takes one token if there is one. */
  take(nowMs: number): boolean {
    if (this.lastMs !== undefined && nowMs > this.lastMs) {
      this.tokens = Math.min(this.burst, this.tokens + (nowMs - this.lastMs) / this.refillMs);
    }
    if (this.lastMs === undefined || nowMs > this.lastMs) this.lastMs = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
