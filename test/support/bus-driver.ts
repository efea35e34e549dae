// A cluster driver for sheep in one process: one total order of events, delivered to each member
// at once, or held for a member a test has paused (so it falls behind by some epochs) until it
// is resumed. Enough of the driver contract for in-process scenarios; no liveness detection.
import type { ClusterDriver, ClusterHandlers, JoinVerdict, Json, NodeInfo } from '../../src/cluster/driver.js';

type Event = (handlers: ClusterHandlers) => void;

/** Each member gets its own copy of a message, as it would from a real driver's log. */
const copy = (json: Json): Json => JSON.parse(JSON.stringify(json)) as Json;

interface Member {
  info: NodeInfo;
  handlers: ClusterHandlers;
  paused: boolean;
  queue: Event[];
  synced: Array<() => void>;
}

export class Bus {
  private readonly members: Member[] = [];
  private lockHeld = false;
  private lockQueue: Array<() => void> = [];

  driver(): ClusterDriver {
    let me: Member | undefined;
    return {
      join: async (self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict> => {
        const master = this.members[0];
        const verdict = (master?.handlers ?? handlers).checkJoin(self, request);
        if (!verdict.accept) return verdict;
        me = { info: self, handlers, paused: false, queue: [], synced: [] };
        this.members.push(me);
        const infos = this.members.map((m) => m.info);
        const payload = copy(verdict.payload);
        this.broadcast((h) => h.onJoin(self, infos, copy(payload)));
        return verdict;
      },
      leave: async () => {
        if (!me) return;
        const gone = me;
        this.members.splice(this.members.indexOf(gone), 1);
        const infos = this.members.map((m) => m.info);
        this.broadcast((h) => h.onLeave(gone.info, infos));
        me = undefined;
      },
      notify: async (message: Json) => {
        const from = me!.info;
        const sent = copy(message);
        this.broadcast((h) => h.onNotify(from, copy(sent)));
      },
      block: () =>
        new Promise<void>((resolve) => {
          if (!this.lockHeld) {
            this.lockHeld = true;
            resolve();
          } else this.lockQueue.push(resolve);
        }),
      unblock: async (message: Json) => {
        const from = me!.info;
        const sent = copy(message);
        this.broadcast((h) => h.onNotify(from, copy(sent)));
        const next = this.lockQueue.shift();
        if (next) next();
        else this.lockHeld = false;
      },
      sync: () =>
        new Promise<void>((resolve) => {
          if (!me || me.queue.length === 0) resolve();
          else me.synced.push(resolve);
        }),
    };
  }

  /** Holds every later event for the member `id` until `resume`. */
  pause(id: string): void {
    this.member(id).paused = true;
  }

  resume(id: string): void {
    const member = this.member(id);
    member.paused = false;
    for (const event of member.queue.splice(0)) event(member.handlers);
    for (const done of member.synced.splice(0)) done();
  }

  private member(id: string): Member {
    const member = this.members.find((m) => m.info.id === id);
    if (!member) throw new Error(`no member ${id}`);
    return member;
  }

  private broadcast(event: Event): void {
    for (const member of this.members) {
      if (member.paused) member.queue.push(event);
      else event(member.handlers);
    }
  }
}
