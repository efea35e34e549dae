// The fence a sheep raises while its cluster driver cannot reach the coordinator (ZooKeeper): the
// rest of the cluster may report this node left at any moment and move on without it, so client
// I/O waits here, bounded, and is refused when the coordinator does not come back in time. A
// short outage (a ZooKeeper server restarting, the session moving to another server) is only a
// pause; a long one ends in a session expiry, which the driver reports as this node leaving.
import { SdError } from '../engine/errors.js';
import type { Clock, Timer } from '../io/clock.js';

export class CoordinatorFence {
  private reachable = true;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly clock: Clock) {}

  get cutOff(): boolean {
    return !this.reachable;
  }

  set(reachable: boolean): void {
    this.reachable = reachable;
    if (!reachable) return;
    for (const wake of [...this.waiters]) wake();
  }

  /** Resolves at once when the coordinator is reachable; waits at most `limitMs` for it. */
  admit(limitMs: number): Promise<void> {
    if (this.reachable) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let timer: Timer | undefined = undefined;
      const wake = (): void => {
        timer?.cancel();
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
      timer = this.clock.after(limitMs, () => {
        this.waiters.delete(wake);
        reject(new SdError('WAIT_FOR_JOIN', `This node is cut off from the cluster coordinator (no answer for ${limitMs / 1000} s)`));
      });
    });
  }
}
