// Write-behind for a volume file. With direct_io the kernel hands a synchronous `dd bs=4M` to
// sheepfs as one 128 KiB write at a time, each waiting for the previous: answered only once three
// replicas have it on stable storage, that is one full cluster round trip per 128 KiB. Instead a
// write is copied, acknowledged at once, coalesced with the writes that follow it into one write
// per object, and sent with several others in flight; fsync, fdatasync and close (flush) wait for
// everything and report the first failure, as a page cache does. Reads wait for the writes they
// overlap, so a read always sees every write acknowledged before it.
import type { Volume } from '../engine/volume.js';

/** How long a partial run waits for the write that would extend it before it is sent alone. */
export const runIdleMs = 20;

interface InFlight {
  startBytes: number;
  endBytes: number;
  done: Promise<void>;
}

interface Run {
  startBytes: number;
  lengthBytes: number;
  /** Ends at the object boundary: a run never spans two objects. */
  buffer: Buffer;
  timer: NodeJS.Timeout;
}

const overlaps = (a0: number, a1: number, b0: number, b1: number): boolean => a0 < b1 && b0 < a1;

export class WriteBehind {
  private run: Run | undefined;
  private readonly inFlight = new Set<InFlight>();
  private inFlightBytes = 0;
  private failure: unknown;
  private readonly spaceWaiters: Array<() => void> = [];

  /**
   * @param volume the current volume (a getter: sheepfs may reopen it after draining)
   * @param inFlightBytesMax bytes sent and not yet acknowledged before a write has to wait
   */
  constructor(
    private readonly volume: () => Volume,
    private readonly inFlightBytesMax: number,
  ) {}

  get idle(): boolean {
    return this.run === undefined && this.inFlight.size === 0;
  }

  /** Copies `data` and returns once it is queued; a failure of an earlier write is thrown here. */
  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.throwFailure();
    const objectBytes = this.volume().info.objectSizeBytes;
    let at = 0;
    while (at < data.length) {
      const offset = offsetBytes + at;
      const run = this.run;
      if (run === undefined || run.startBytes + run.lengthBytes !== offset) {
        this.send();
        const objectEnd = (Math.floor(offset / objectBytes) + 1) * objectBytes;
        const capacity = Math.min(objectEnd, this.volume().info.sizeBytes) - offset;
        this.run = {
          startBytes: offset,
          lengthBytes: 0,
          buffer: Buffer.allocUnsafe(capacity),
          timer: setTimeout(() => this.send(), runIdleMs),
        };
        continue;
      }
      const take = Math.min(data.length - at, run.buffer.length - run.lengthBytes);
      data.copy(run.buffer, run.lengthBytes, at, at + take);
      run.lengthBytes += take;
      at += take;
      if (run.lengthBytes === run.buffer.length) this.send();
    }
    while (this.inFlightBytes > this.inFlightBytesMax) {
      await new Promise<void>((resolve) => this.spaceWaiters.push(resolve));
    }
  }

  /** Waits until every write overlapping the range is in the volume. Never throws. */
  async settle(offsetBytes: number, lengthBytes: number): Promise<void> {
    const end = offsetBytes + lengthBytes;
    const run = this.run;
    if (run && overlaps(run.startBytes, run.startBytes + run.lengthBytes, offsetBytes, end)) {
      this.send();
    }
    const waits = [...this.inFlight]
      .filter((f) => overlaps(f.startBytes, f.endBytes, offsetBytes, end))
      .map((f) => f.done);
    if (waits.length > 0) await Promise.all(waits);
  }

  /** Sends what is queued, waits for all of it, and throws (once) the first failure. */
  async drain(): Promise<void> {
    this.send();
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight].map((f) => f.done));
    this.throwFailure();
  }

  private throwFailure(): void {
    if (this.failure === undefined) return;
    const failure = this.failure;
    this.failure = undefined;
    throw failure;
  }

  /** Sends the current run, after any in-flight write it overlaps (writes land in order). */
  private send(): void {
    const run = this.run;
    if (run === undefined) return;
    this.run = undefined;
    clearTimeout(run.timer);
    if (run.lengthBytes === 0) return;
    const startBytes = run.startBytes;
    const endBytes = startBytes + run.lengthBytes;
    const before = [...this.inFlight]
      .filter((f) => overlaps(f.startBytes, f.endBytes, startBytes, endBytes))
      .map((f) => f.done);
    const data = run.buffer.subarray(0, run.lengthBytes);
    const volume = this.volume();
    const entry: InFlight = { startBytes, endBytes, done: Promise.resolve() };
    entry.done = (before.length > 0 ? Promise.all(before) : Promise.resolve())
      .then(() => volume.write(startBytes, data))
      .catch((error: unknown) => {
        this.failure ??= error;
      })
      .finally(() => {
        this.inFlight.delete(entry);
        this.inFlightBytes -= data.length;
        while (this.inFlightBytes <= this.inFlightBytesMax && this.spaceWaiters.length > 0) {
          this.spaceWaiters.shift()?.();
        }
      });
    this.inFlight.add(entry);
    this.inFlightBytes += data.length;
  }
}
