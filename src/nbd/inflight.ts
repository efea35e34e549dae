// Admission of requests on one connection: at most a number of requests and of payload bytes in
// flight. The request loop waits here before reading a payload, which stops it reading the socket,
// which (through StreamReader) pauses the socket: backpressure instead of unbounded buffering.

export class InflightLimiter {
  private requestCount = 0;
  private bytes = 0;
  private wake: (() => void) | null = null;

  constructor(
    private readonly requestsMax: number,
    private readonly bytesMax: number,
  ) {}

  get count(): number {
    return this.requestCount;
  }

  /** Waits for a slot; a request always fits when nothing else is in flight. */
  async acquire(costBytes: number): Promise<void> {
    while (!this.fits(costBytes)) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    this.requestCount += 1;
    this.bytes += costBytes;
  }

  release(costBytes: number): void {
    this.requestCount -= 1;
    this.bytes -= costBytes;
    this.notify();
  }

  /** Resolves once nothing is in flight. Only the loop's owner waits: one waiter suffices. */
  async drain(): Promise<void> {
    while (this.requestCount > 0) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  private fits(costBytes: number): boolean {
    if (this.requestCount === 0) return true;
    return this.requestCount < this.requestsMax && this.bytes + costBytes <= this.bytesMax;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}
