// Recovery and catch-up bring a copy up to date in two steps: read a peer's copy, then write it
// here whole. A replica write from a gateway that begins here in between is newer than what was
// read; written after it, the peer's copy would silently undo an acknowledged write (seed 5 of
// the full fault mix: a whole write sent to a copy still being recovered, then overwritten by
// recovery's older read). A watch, taken before the peer read, records whether any replica write
// of the object began since. The store applies writes of one object in call order, so checking
// the watch just before calling the store, with no await between, closes the window: a replica
// write that begins later also lands later.

import type { Oid } from '../engine/oid.js';

export interface Watch {
  /** A replica write of the object began since the watch was taken. */
  readonly written: boolean;
  release(): void;
}

export class CopyWatch {
  /** Only objects being copied are tracked: as many entries as copies in flight. */
  private readonly watches = new Map<Oid, Set<{ written: boolean }>>();
  /** Replica writes in the store now, by object: one still running when a watch starts counts. */
  private readonly inFlight = new Map<Oid, number>();

  watch(oid: Oid): Watch {
    const entry = { written: this.inFlight.has(oid) };
    let set = this.watches.get(oid);
    if (!set) this.watches.set(oid, (set = new Set()));
    set.add(entry);
    const watches = this.watches;
    return {
      get written() {
        return entry.written;
      },
      release() {
        set.delete(entry);
        if (set.size === 0 && watches.get(oid) === set) watches.delete(oid);
      },
    };
  }

  /** Runs a replica write of `oid` to the store; `write` must call the store before it awaits. */
  async writing<T>(oid: Oid, write: () => Promise<T>): Promise<T> {
    for (const entry of this.watches.get(oid) ?? []) entry.written = true;
    this.inFlight.set(oid, (this.inFlight.get(oid) ?? 0) + 1);
    try {
      return await write();
    } finally {
      const left = this.inFlight.get(oid)! - 1;
      if (left === 0) this.inFlight.delete(oid);
      else this.inFlight.set(oid, left);
    }
  }
}
