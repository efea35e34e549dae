// A writer's lock that survives a restart of every sheep. The cluster keeps locks in memory only
// (sheep/lock-service.ts), so after every sheep restarted an open sheepfs mount or NBD export
// would write on without one. Here every write names its lock; a sheep that does not hold it
// refuses the write (LOCK_LOST) before it lands, and the writer re-takes the lock and sends the
// write again. If another writer took the VDI meanwhile, this writer has lost it: that write and
// every later one are refused (READ_ONLY: EROFS, NBD EPERM) until the VDI is opened again.
import { SdError, asSdError } from '../engine/errors.js';
import type { ObjectIo } from '../engine/object-io.js';
import type { VdiLock } from '../engine/vdi-locks.js';

export interface LockPort {
  /** Takes the VDI's lock; with `holder`, re-takes that one. */
  take(holder?: string): Promise<VdiLock>;
  release(holder: string): Promise<unknown>;
}

export class LockKeeper {
  private renewing: Promise<void> | undefined;
  private lost: SdError | undefined;

  private constructor(
    private lock: VdiLock,
    private readonly port: LockPort,
  ) {}

  static async take(port: LockPort): Promise<LockKeeper> {
    return new LockKeeper(await port.take(), port);
  }

  get holder(): string {
    return this.lock.holder;
  }

  /** `inner`, whose writes and removes name this lock and re-take it when the cluster lost it. */
  io(inner: ObjectIo): ObjectIo {
    return {
      read: (oid, offset, length) => inner.read(oid, offset, length),
      lookup: (name, ref) => inner.lookup(name, ref),
      write: (oid, offset, data, create, options) =>
        this.guarded(() => inner.write(oid, offset, data, create, { ...options, lock: this.lock.holder })),
      // A flush syncs what was acknowledged; it lands nothing new, so it needs no lock.
      ...(inner.flush ? { flush: (vid: number) => inner.flush!(vid) } : {}),
      remove: (oid) => this.guarded(() => inner.remove(oid, this.lock.holder)),
    };
  }

  release(): Promise<unknown> {
    return this.port.release(this.lock.holder);
  }

  private async guarded(write: () => Promise<void>): Promise<void> {
    if (this.lost) throw this.lost;
    try {
      return await write();
    } catch (error) {
      if (!(error instanceof SdError) || error.code !== 'LOCK_LOST') throw error;
    }
    await this.renew();
    return write();
  }

  /** One re-take for all the writes that found the lock gone at once. */
  private renew(): Promise<void> {
    this.renewing ??= (async () => {
      try {
        this.lock = await this.port.take(this.lock.holder);
      } catch (error) {
        const refusal = asSdError(error);
        // Anything else (the cluster still waiting for its nodes) fails this write only.
        if (refusal.code !== 'VDI_LOCKED') throw refusal;
        this.lost = new SdError('READ_ONLY', `${this.lock.name} lost its writer's lock (every sheep restarted, or it was unlocked) and cannot take it again: ${refusal.message}`);
        throw this.lost;
      }
    })().finally(() => {
      this.renewing = undefined;
    });
    return this.renewing;
  }
}
