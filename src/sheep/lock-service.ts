// Writers' locks on VDIs (engine/vdi-locks.ts): taken and freed in the cluster's critical section,
// so two nodes opening one VDI at once never both get it. A lock another node's writer holds
// blocks a new writer for a moment first: a client that just disconnected there frees it soon.
import { SdError } from '../engine/errors.js';
import { checkLock, type VdiLock } from '../engine/vdi-locks.js';
import type { Clock } from '../io/clock.js';
import { nowSec } from '../io/clock.js';
import type { Group } from './group.js';
import type { VdiService } from './vdi-service.js';

/** How long a new writer waits for a conflicting lock to go before it is refused. */
export const lockWaitMs = 2000;

export class LockService {
  private taken = 0;
  private waiters = new Set<() => void>();

  constructor(
    private readonly group: Pick<Group, 'locks' | 'self' | 'registry' | 'onLocksChanged'>,
    private readonly vdi: Pick<VdiService, 'criticalMessage' | 'lookup'>,
    private readonly clock: Clock,
    private readonly sync: () => Promise<void>,
  ) {
    group.onLocksChanged = () => {
      const waiters = [...this.waiters];
      this.waiters.clear();
      for (const wake of waiters) wake();
    };
  }

  private changed(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = this.clock.after(timeoutMs, () => {
        this.waiters.delete(wake);
        resolve();
      });
      const wake = () => {
        timer.cancel();
        resolve();
      };
      this.waiters.add(wake);
    });
  }

  /**
   * Locks the working VDI `name` for a writer through this node. With `holder`, the writer
   * re-takes a lock it held (lock-keeper.ts): the same lock when the cluster still has it, else
   * taken anew under that holder, or refused as any new writer is.
   */
  async acquire(name: string, client: string, shared: boolean, holder?: string): Promise<VdiLock> {
    await this.vdi.lookup(name, undefined);
    const held = holder === undefined ? undefined : this.group.locks.find((l) => l.holder === holder && l.name === name);
    if (held) return held;
    this.taken += 1;
    const lock: VdiLock = {
      name,
      holder: holder ?? `${this.group.self.id}/${this.clock.nowMs()}/${this.taken}`,
      node: this.group.self.id,
      client,
      sinceSec: nowSec(this.clock),
      shared,
    };
    const deadline = this.clock.nowMs() + lockWaitMs;
    for (;;) {
      try {
        await this.vdi.criticalMessage(async () => {
          if (!this.group.registry.working(name)) throw new SdError('NO_VDI', 'No VDI found');
          checkLock(this.group.locks, lock);
          return { type: 'lock', lock };
        });
        return lock;
      } catch (error) {
        const left = deadline - this.clock.nowMs();
        if (!(error instanceof SdError) || error.code !== 'VDI_LOCKED' || left <= 0) throw error;
        await this.changed(left);
      }
    }
  }

  /**
   * A write that names its writer's lock runs only while the cluster holds that lock. A lock taken
   * a moment ago through another node may not have reached this one: it waits for the cluster's
   * events once before it refuses. LOCK_LOST: the writer re-takes it (every sheep restarted, or
   * `dog vdi lock unlock`), or stops writing if another writer took it meanwhile.
   */
  async requireHeld(holder: string): Promise<void> {
    if (this.holds(holder)) return;
    await this.sync();
    if (this.holds(holder)) return;
    throw new SdError('LOCK_LOST', `the cluster no longer holds the writer's lock ${holder}`);
  }

  private holds(holder: string): boolean {
    return this.group.locks.some((l) => l.holder === holder);
  }

  async release(holder: string): Promise<null> {
    if (!this.holds(holder)) return null;
    await this.vdi.criticalMessage(async () => ({ type: 'unlock', holder }));
    return null;
  }

  /** `dog vdi lock unlock`: frees every lock of the VDI, the writers' or a dead one's. */
  async unlock(name: string): Promise<null> {
    await this.vdi.lookup(name, undefined);
    await this.vdi.criticalMessage(async () => {
      if (!this.group.locks.some((l) => l.name === name)) throw new SdError('NO_OBJECT', `VDI ${name} is not locked`);
      return { type: 'unlock', name };
    });
    return null;
  }

  async list(): Promise<VdiLock[]> {
    await this.sync();
    return this.group.locks;
  }
}
