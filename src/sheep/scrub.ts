// Background scrubbing: each sheep reads every object it holds, at a throttled pace, against its
// block checksums. A damaged copy goes to read repair (catch-up.ts). The primary of an object
// (or, when the primary has lost it, the next replica) also compares every replica's copy and
// recreates a missing one or rewrites a damaged one (object-check.ts). Copies that pass but
// disagree are only reported: while a write is on its way they differ for a moment, and only
// `dog vdi check` repairs by majority. Client I/O through this node slows it to a trickle.
import type { Timer, Clock } from '../io/clock.js';
import { TokenBucket } from '../engine/token-bucket.js';
import { asSdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Log } from '../io/log.js';
import type { ScrubState, ThrottleData } from '../rpc/protocol.js';
import type { LocalStore } from '../store/md-store.js';
import type { Gateway } from './gateway.js';
import type { Group } from './group.js';
import type { ObjectCheck } from './object-check.js';
import type { Peers } from './peers.js';
import type { Placement } from './placement.js';
import type { Recovery } from './recovery.js';

/** Ten objects a second (40 MiB/s of 4 MiB objects) unless `dog node scrub set-throttle` says otherwise. */
export const scrubThrottleDefault: ThrottleData = { maxObjects: 10, intervalMs: 1000 };
/** The first pass begins this long after start, the next this long after one ends. */
export const scrubFirstPassMs = 60_000;
export const scrubPassGapMs = 3_600_000;
/** Client I/O this recent: one object per this long at most. */
const clientQuietMs = 1000;

export interface ScrubDeps {
  group: Group;
  store: LocalStore;
  placement: Placement;
  gateway: Gateway;
  peers: Peers;
  check: ObjectCheck;
  recovery: Pick<Recovery, 'state' | 'isCurrent'>;
  clock: Clock;
  log: Log;
}

export class Scrub {
  readonly state: ScrubState = { running: false, done: 0, total: 0, passes: 0, damaged: 0, repaired: 0 };
  private throttleData = scrubThrottleDefault;
  private bucket = bucketOf(scrubThrottleDefault);
  private timer: Timer | undefined;
  private stopped = false;

  constructor(private readonly deps: ScrubDeps) {}

  get throttle(): ThrottleData {
    return this.throttleData;
  }

  start(firstMs = scrubFirstPassMs): void {
    this.schedule(firstMs);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /** A new pace; a pass begins now unless one runs. */
  setThrottle(throttle: ThrottleData): void {
    this.throttleData = throttle;
    this.bucket = bucketOf(throttle);
    if (this.state.running) return;
    this.timer?.cancel();
    this.schedule(0);
  }

  /**
   * One pass now, to its end (the simulator's repair before it compares copies); false when it
   * could not run (not running, recovery under way, a pass already running).
   */
  async passNow(): Promise<boolean> {
    return !this.state.running && this.pass();
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = this.deps.clock.after(ms, () => {
      this.timer = undefined;
      void this.pass().then(
        (ran) => this.schedule(ran ? scrubPassGapMs : scrubFirstPassMs),
        (error: unknown) => {
          this.deps.log.error({ err: error instanceof Error ? error.stack : String(error) }, 'scrub pass failed');
          this.schedule(scrubFirstPassMs);
        },
      );
    });
  }

  /** One pass over our objects; false when it could not run now (tried again a minute later). */
  private async pass(): Promise<boolean> {
    const { group, store, recovery } = this.deps;
    // Recovery moves copies around: what a pass would find then is its business.
    if (group.status !== 'running' || recovery.state.running) return false;
    const oids = await store.list();
    Object.assign(this.state, { running: true, done: 0, total: oids.length });
    try {
      for (const oid of oids) {
        if (this.stopped) return true;
        await this.pace();
        try {
          await this.scrubOne(oid);
        } catch (error) {
          this.deps.log.warn({ oid: oidHex(oid), err: asSdError(error).message }, 'scrub could not check an object');
        }
        this.state.done += 1;
      }
      this.state.passes += 1;
      return true;
    } finally {
      this.state.running = false;
    }
  }

  private async pace(): Promise<void> {
    const { clock, gateway } = this.deps;
    if (clock.nowMs() - gateway.lastClientIoMs < clientQuietMs) await clock.sleep(clientQuietMs);
    while (!this.bucket.take(clock.nowMs())) {
      await clock.sleep(Math.max(1, Math.ceil(this.throttleData.intervalMs / this.throttleData.maxObjects)));
    }
  }

  private async scrubOne(oid: Oid): Promise<void> {
    const { group, placement, peers, check, recovery } = this.deps;
    const nodes = placement.nodes(oid);
    const selfId = group.self.id;
    // Not ours (the stale-copy removal takes it), or not settled yet (recovery, catch-up).
    if (!nodes.some((n) => n.id === selfId) || !recovery.isCurrent(oid)) return;
    const primary = nodes[0]!;
    const compares = primary.id === selfId || !(await peers.ask(primary, 'peer.exists', { oid }));
    if (!compares) {
      if ((await check.localProblem(oid)) === 'damaged') this.state.damaged += 1;
      return;
    }
    const result = await check.check(oid, false, false);
    for (const copy of result.copies) {
      if (copy.state === 'damaged' || copy.state === 'missing') this.state.damaged += 1;
      if (copy.fixed) this.state.repaired += 1;
    }
  }
}

function bucketOf(throttle: ThrottleData): TokenBucket {
  return new TokenBucket(throttle.maxObjects, throttle.intervalMs / throttle.maxObjects);
}
