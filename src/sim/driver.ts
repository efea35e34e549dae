// The simulated cluster driver: K in-process members share one in-memory ordered event log and
// run the `local` driver's own pure state machine (src/cluster/local-state.ts) over it, each at
// its own pace (a seeded delay before it reads what was appended). What the OS gives the local
// driver, the simulation decides: a crashed incarnation goes silent at once and is reported left
// by the failure detector after a seeded timeout (within `localLeaveDetectMsMax`, as the local
// driver's liveness poll guarantees); a joiner clears dead predecessors at once, as the local
// driver does with its pid check. `pause` models a process that stops answering (SIGSTOP, a hung
// loop): the failure detector reports it left after the same timeout (the local driver's
// heartbeat), and once resumed it reads its own leave and stops. `expel` models losing the
// coordinator (a ZooKeeper session): the node is reported left while alive and, seeing its own
// leave, stops.
import assert from 'node:assert/strict';
import { SdError } from '../engine/errors.js';
import { localLeaveDetectMsMax } from '../engine/limits.js';
import type { ClusterDriver, ClusterHandlers, JoinVerdict, Json, NodeInfo } from '../cluster/driver.js';
import {
  applyEvent,
  formatEventLine,
  initialState,
  parseEventLine,
  isJoinVerdict,
  type Incarnation,
  type LocalState,
  type LogEvent,
  type Output,
} from '../cluster/local-state.js';
import type { Clock } from '../io/clock.js';
import type { Random } from '../io/random.js';

export interface SimClusterOptions {
  /** How long a member takes to read an appended event (the local driver's watch latency). */
  readDelayMs: { minMs: number; maxMs: number };
  /** How long the failure detector takes to report a crashed member as left. */
  failureDetectMs: { minMs: number; maxMs: number };
}

export const simClusterDefaults: SimClusterOptions = {
  readDelayMs: { minMs: 0.05, maxMs: 2 },
  failureDetectMs: { minMs: 250, maxMs: localLeaveDetectMsMax - 250 },
};

export interface SimClusterDriver extends ClusterDriver {
  readonly inc: string;
  /** Stops at once: appends a leave if still in the cluster (a clean exit). */
  close(): void;
}

/**
 * The shared log and the liveness oracle of one simulated cluster. The log holds lines, as the
 * local driver's file does: every member parses its own copy of each event, so no member can
 * see another's objects (a payload shared by reference would let one member's later changes
 * leak into what another receives).
 */
export class SimCluster {
  readonly log: string[] = [];
  private readonly drivers = new Map<string, SimDriver>();
  private readonly dead = new Set<string>();
  /** Paused incarnations, each with the number of its pause (a stale timer must not report it). */
  private readonly paused = new Map<string, number>();
  private pauses = 0;
  private nextInc = 1;
  /** `replayedState` up to `replayedLines` of the log, advanced as the log grows (not rebuilt). */
  private replayed: LocalState = initialState();
  private replayedLines = 0;

  constructor(
    readonly clock: Clock,
    readonly random: Random,
    readonly options: SimClusterOptions = simClusterDefaults,
  ) {}

  /** A driver for one incarnation of a node. */
  driver(): SimClusterDriver {
    const inc = `inc-${this.nextInc++}`;
    const driver = new SimDriver(this, inc);
    this.drivers.set(inc, driver);
    return driver;
  }

  /** The process of `driver` died: it goes silent now and is reported left after a timeout. */
  crash(driver: SimClusterDriver): void {
    const inc = driver.inc;
    if (this.dead.has(inc)) return;
    this.dead.add(inc);
    this.drivers.get(inc)?.halt();
    this.drivers.delete(inc);
    this.clock.after(this.draw(this.options.failureDetectMs), () => this.reportIfMember(inc));
  }

  /**
   * The process of `driver` stops answering but lives (SIGSTOP): silent now, reported left after
   * the failure detector's timeout if still paused then.
   */
  pause(driver: SimClusterDriver): void {
    const inc = driver.inc;
    const running = this.drivers.get(inc);
    if (running === undefined || this.paused.has(inc)) return;
    const pause = ++this.pauses;
    this.paused.set(inc, pause);
    running.halt();
    this.clock.after(this.draw(this.options.failureDetectMs), () => {
      if (this.paused.get(inc) === pause) this.reportIfMember(inc);
    });
  }

  /** The paused process runs again (SIGCONT): it reads the log from where it stopped. */
  resume(driver: SimClusterDriver): void {
    const inc = driver.inc;
    if (!this.paused.delete(inc)) return;
    this.drivers.get(inc)?.unhalt();
  }

  /** Cuts `driver` off the coordinator: it is reported left at once, though still running. */
  expel(driver: SimClusterDriver): void {
    this.reportIfMember(driver.inc);
  }

  isAlive(inc: string): boolean {
    return !this.dead.has(inc);
  }

  /** One append: the log's order is the total order; every live member reads it soon. */
  append(event: LogEvent): void {
    this.log.push(formatEventLine(event));
    for (const driver of this.drivers.values()) driver.wake();
  }

  draw(range: { minMs: number; maxMs: number }): number {
    return range.minMs + this.random.float() * (range.maxMs - range.minMs);
  }

  /** The failure detector: a member or pending joiner whose incarnation is `inc` is reported left. */
  private reportIfMember(inc: string): void {
    const state = this.replayedState();
    const claim = [...state.members, ...state.pending].find((other) => other.inc === inc);
    if (claim === undefined) return;
    this.append({ t: 'leave', inc, node: claim.info.id });
  }

  /**
   * The state every member reaches once it has read the whole log. Shared: callers only read it
   * (a member gets its own copy, `SimDriver.join`).
   */
  replayedState(): LocalState {
    for (; this.replayedLines < this.log.length; this.replayedLines++) {
      const event = parseEventLine(this.log[this.replayedLines]!);
      if (event !== null) this.replayed = applyEvent(this.replayed, event).state;
    }
    return this.replayed;
  }
}

type Phase = 'idle' | 'joining' | 'member' | 'leaving' | 'closed';

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

class SimDriver implements SimClusterDriver {
  private phase: Phase = 'idle';
  private self: Incarnation | undefined;
  private handlers: ClusterHandlers | undefined;
  private state: LocalState = initialState();
  /** Events of the log applied so far. */
  private cursor = 0;
  private wakeScheduled = false;
  private halted = false;
  private nextSeq = 0;
  private holding = false;
  private readonly notifyWaiters = new Map<number, Waiter>();
  private readonly unblockWaiters = new Map<number, Waiter>();
  private readonly blockWaiters = new Map<number, Waiter>();
  private syncWaiters: Array<Waiter & { target: number }> = [];
  private joinSettle: ((verdict: JoinVerdict) => void) | undefined;
  private joinFail: ((error: Error) => void) | undefined;
  private leavePromise: Promise<void> | undefined;
  private leaveSettle: (() => void) | undefined;

  constructor(
    private readonly cluster: SimCluster,
    readonly inc: string,
  ) {}

  // ---- the ClusterDriver contract ----

  join(self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict> {
    if (this.phase !== 'idle') return Promise.reject(new SdError('INVALID_ARGUMENT', 'join called twice on one driver'));
    this.phase = 'joining';
    this.handlers = handlers;
    this.self = { inc: this.inc, info: self, pid: 0, start: null };
    // Learn the membership silently, then clear dead predecessors, as the local driver does.
    // Nothing logged before this join concerns this new incarnation (no output names it, and a
    // joiner delivers nothing), so it starts from the replayed state rather than reading the whole
    // log again: its own deep copy, so no member shares objects with another.
    if (!this.stopped()) {
      this.state = structuredClone(this.cluster.replayedState());
      this.cursor = this.cluster.log.length;
    }
    this.applyAvailable();
    this.reportDead();
    this.applyAvailable();
    const live = [...this.state.members, ...this.state.pending].find(
      (other) => other.info.id === self.id && this.cluster.isAlive(other.inc),
    );
    if (live !== undefined) {
      this.shutdown();
      return Promise.resolve({ accept: false, reason: `node ${self.id} is already in the cluster (${live.inc})` });
    }
    const verdict = new Promise<JoinVerdict>((resolve, reject) => {
      this.joinSettle = resolve;
      this.joinFail = reject;
    });
    this.cluster.append({ t: 'join_request', inc: this.inc, node: self, pid: 0, start: null, request });
    return verdict;
  }

  leave(): Promise<void> {
    if (this.leavePromise !== undefined) return this.leavePromise;
    if (this.phase !== 'joining' && this.phase !== 'member') {
      this.leavePromise = Promise.resolve();
      this.shutdown();
      return this.leavePromise;
    }
    this.phase = 'leaving';
    this.leavePromise = new Promise<void>((resolve) => (this.leaveSettle = resolve));
    this.cluster.append({ t: 'leave', inc: this.inc, node: this.selfInfo().id });
    return this.leavePromise;
  }

  close(): void {
    if (this.phase === 'joining' || this.phase === 'member') {
      this.cluster.append({ t: 'leave', inc: this.inc, node: this.selfInfo().id });
    }
    this.shutdown();
  }

  notify(message: Json): Promise<void> {
    return this.sendAndWait('notify', this.notifyWaiters, (seq) => ({ t: 'notify', inc: this.inc, seq, message }));
  }

  block(): Promise<void> {
    return this.sendAndWait('block', this.blockWaiters, (seq) => ({ t: 'block', inc: this.inc, seq }));
  }

  unblock(message: Json): Promise<void> {
    if (this.phase === 'member' && !this.holding) {
      return Promise.reject(new SdError('INVALID_ARGUMENT', 'unblock without holding the lock'));
    }
    const done = this.sendAndWait('unblock', this.unblockWaiters, (seq) => ({ t: 'unblock', inc: this.inc, seq, message }));
    this.holding = false;
    return done;
  }

  sync(): Promise<void> {
    if (this.phase === 'closed' || this.phase === 'idle') return Promise.resolve();
    const target = this.cluster.log.length;
    if (this.cursor >= target) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.syncWaiters.push({ target, resolve, reject }));
  }

  // ---- for the cluster ----

  /** Something was appended: read it after this member's read delay. */
  wake(): void {
    if (this.wakeScheduled || this.halted || this.phase === 'closed' || this.phase === 'idle') return;
    this.wakeScheduled = true;
    this.cluster.clock.after(this.cluster.draw(this.cluster.options.readDelayMs), () => {
      this.wakeScheduled = false;
      if (!this.halted) this.applyAvailable();
    });
  }

  /** The process died or stopped: no more reads, no more appends, no more callbacks. Its calls hang. */
  halt(): void {
    this.halted = true;
  }

  /** A stopped process runs again. */
  unhalt(): void {
    this.halted = false;
    this.wake();
  }

  // ---- applying the log ----

  private applyAvailable(): void {
    while (this.cursor < this.cluster.log.length && !this.stopped()) {
      const event = parseEventLine(this.cluster.log[this.cursor++]!);
      assert.ok(event !== null, 'the simulated log holds only well-formed events');
      const applied = applyEvent(this.state, event);
      this.state = applied.state;
      for (const output of applied.outputs) {
        this.act(output);
        if (this.stopped()) break;
      }
    }
    const ready = this.syncWaiters.filter((waiter) => waiter.target <= this.cursor);
    this.syncWaiters = this.syncWaiters.filter((waiter) => waiter.target > this.cursor);
    for (const waiter of ready) waiter.resolve();
  }

  private act(output: Output): void {
    switch (output.kind) {
      case 'check_join':
        if (output.responder === this.inc && (this.phase === 'joining' || this.phase === 'member')) {
          this.answerJoin(output.joiner, output.request);
        }
        return;
      case 'join':
        if (output.joiner.inc === this.inc) {
          this.phase = this.phase === 'leaving' ? 'leaving' : 'member';
          this.deliver((h) => h.onJoin(output.joiner.info, output.members, output.payload));
          this.settleJoin({ accept: true, payload: output.payload });
        } else if (this.delivering()) {
          this.deliver((h) => h.onJoin(output.joiner.info, output.members, output.payload));
        }
        return;
      case 'refused':
      case 'dropped':
        if (output.joiner.inc === this.inc) {
          const reason = output.kind === 'refused' ? output.reason : 'left before the join was decided';
          this.settleJoin({ accept: false, reason });
          this.shutdown();
        }
        return;
      case 'leave':
        if (output.node.inc !== this.inc) {
          if (this.delivering()) this.deliver((h) => h.onLeave(output.node.info, output.members));
          return;
        }
        // Our own leave: the end of a clean exit, or an expulsion the layer above must hear of.
        if (this.phase !== 'leaving') this.deliver((h) => h.onLeave(output.node.info, output.members));
        this.shutdown();
        return;
      case 'notify':
        if (this.delivering()) this.deliver((h) => h.onNotify(output.from.info, output.message));
        if (output.ack.inc === this.inc) {
          this.settleWaiter(output.ack.unblock ? this.unblockWaiters : this.notifyWaiters, output.ack.seq);
        }
        return;
      case 'granted':
        if (output.inc === this.inc) {
          this.holding = true;
          this.settleWaiter(this.blockWaiters, output.seq);
        }
        return;
      case 'ignored':
        return;
    }
  }

  private answerJoin(joiner: Incarnation, request: Json): void {
    let verdict: JoinVerdict | undefined;
    this.deliver((h) => {
      verdict = h.checkJoin(joiner.info, request);
    });
    if (verdict === undefined) return;
    assert.ok(isJoinVerdict(verdict), 'checkJoin returned a malformed verdict');
    this.cluster.append({ t: 'join_response', inc: joiner.inc, by: this.inc, verdict });
  }

  /** A throwing handler is a bug above us: the simulation must fail loudly, not fall behind. */
  private deliver(call: (handlers: ClusterHandlers) => void): void {
    assert.ok(this.handlers !== undefined);
    try {
      call(this.handlers);
    } catch (error) {
      this.shutdown();
      throw error;
    }
  }

  private stopped(): boolean {
    return this.phase === 'closed' || this.halted;
  }

  private delivering(): boolean {
    return this.phase === 'member' || this.phase === 'leaving';
  }

  private reportDead(): void {
    for (const other of [...this.state.members, ...this.state.pending]) {
      if (other.inc !== this.inc && !this.cluster.isAlive(other.inc)) {
        this.cluster.append({ t: 'leave', inc: other.inc, node: other.info.id });
      }
    }
  }

  // ---- waiters and shutdown ----

  private sendAndWait(operation: string, waiters: Map<number, Waiter>, makeEvent: (seq: number) => LogEvent): Promise<void> {
    if (this.phase !== 'member') {
      return Promise.reject(new SdError('INVALID_ARGUMENT', `${operation} needs a joined node (driver is ${this.phase})`));
    }
    if (this.halted) return new Promise<void>(() => undefined); // a dead process waits forever
    const seq = this.nextSeq++;
    const done = new Promise<void>((resolve, reject) => waiters.set(seq, { resolve, reject }));
    this.cluster.append(makeEvent(seq));
    return done;
  }

  private settleWaiter(waiters: Map<number, Waiter>, seq: number): void {
    const waiter = waiters.get(seq);
    if (waiter === undefined) return;
    waiters.delete(seq);
    waiter.resolve();
  }

  private settleJoin(verdict: JoinVerdict): void {
    const settle = this.joinSettle;
    this.joinSettle = undefined;
    this.joinFail = undefined;
    settle?.(verdict);
  }

  private shutdown(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.holding = false;
    const gone = new SdError('SHUTDOWN', 'the simulated cluster driver has stopped');
    for (const waiters of [this.notifyWaiters, this.unblockWaiters, this.blockWaiters]) {
      for (const waiter of waiters.values()) waiter.reject(gone);
      waiters.clear();
    }
    for (const waiter of this.syncWaiters.splice(0)) waiter.reject(gone);
    this.joinFail?.(gone);
    this.joinSettle = undefined;
    this.joinFail = undefined;
    this.leaveSettle?.();
    this.leaveSettle = undefined;
  }

  private selfInfo(): NodeInfo {
    assert.ok(this.self !== undefined);
    return this.self.info;
  }
}
