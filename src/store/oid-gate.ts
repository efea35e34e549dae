// Per-object admission for the multi-disk store: reads and writes of an object run together
// (writes one after another, in call order), and moving the object to another disk runs alone,
// once those in flight have ended and before any that arrive meanwhile.
import type { Oid } from '../engine/oid.js';

interface Entry {
  users: number;
  /** Settles when the move running on this object ends. */
  mover: Promise<void> | undefined;
  /** Wakes the mover once the last user has left. */
  idle: (() => void) | undefined;
  /** The writes of this object, one after another. */
  chain: Promise<unknown>;
}

export class OidGate {
  private readonly entries = new Map<Oid, Entry>();

  /** Runs `work` beside other users of `oid`, never during a move of it. */
  async shared<T>(oid: Oid, work: () => Promise<T>): Promise<T> {
    const entry = await this.admitted(oid, (admitted) => (admitted.users += 1));
    try {
      return await work();
    } finally {
      entry.users -= 1;
      if (entry.users === 0) {
        entry.idle?.();
        if (entry.mover === undefined) this.entries.delete(oid);
      }
    }
  }

  /** As `shared`, and after every earlier `serial` work of `oid` has ended. */
  serial<T>(oid: Oid, work: () => Promise<T>): Promise<T> {
    return this.shared(oid, () => {
      const entry = this.entries.get(oid)!;
      const next = entry.chain.catch(() => undefined).then(work);
      entry.chain = next;
      return next;
    });
  }

  /** Runs `work` alone on `oid`: no other work of it runs meanwhile. */
  async exclusive<T>(oid: Oid, work: () => Promise<T>): Promise<T> {
    let done!: () => void;
    const entry = await this.admitted(oid, (admitted) => (admitted.mover = new Promise<void>((resolve) => (done = resolve))));
    try {
      if (entry.users > 0) await new Promise<void>((resolve) => (entry.idle = resolve));
      entry.idle = undefined;
      return await work();
    } finally {
      entry.mover = undefined;
      done();
      if (entry.users === 0 && this.entries.get(oid) === entry) this.entries.delete(oid);
    }
  }

  /** The entry of `oid` once no move of it runs, `claim`ed with no await in between. */
  private async admitted(oid: Oid, claim: (entry: Entry) => void): Promise<Entry> {
    for (let entry = this.entries.get(oid); entry?.mover !== undefined; entry = this.entries.get(oid)) await entry.mover;
    let entry = this.entries.get(oid);
    if (entry === undefined) {
      entry = { users: 0, mover: undefined, idle: undefined, chain: Promise.resolve() };
      this.entries.set(oid, entry);
    }
    claim(entry);
    return entry;
  }
}
