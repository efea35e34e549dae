// What a driver built on the shared state machine (local-state.ts) does with its outputs, whatever
// carries the events (a file for `local`, a znode queue for `zookeeper`): deliver them to the
// handlers, answer the joins this incarnation is asked to decide, settle the calls waiting for
// their event, and stop. The driver supplies `append` and what to release when it stops.
import assert from 'node:assert/strict';
import { SdError } from '../engine/errors.js';
import type { ClusterHandlers, JoinVerdict, Json, NodeInfo } from './driver.js';
import { isJoinVerdict, type Incarnation, type LogEvent, type Output } from './local-state.js';

export type MemberPhase = 'idle' | 'joining' | 'member' | 'leaving' | 'closed';

export interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/** The subset of a pino logger the drivers use. */
export interface DriverLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export interface MemberHooks {
  /**
   * Sends an event into the cluster's order. May throw (then it was not sent); a failure found
   * later is reported through `onFailed`.
   */
  append(event: LogEvent, onFailed?: (error: Error) => void): void;
  /** Releases the driver's own resources (timers, files, session); called once, on stopping. */
  release(): void;
}

export class MemberCore {
  phase: MemberPhase = 'idle';
  self: Incarnation | undefined;
  handlers: ClusterHandlers | undefined;
  /** This incarnation holds the cluster-wide lock. */
  holding = false;
  private nextSeq = 0;
  private readonly notifyWaiters = new Map<number, Waiter>();
  private readonly unblockWaiters = new Map<number, Waiter>();
  private readonly blockWaiters = new Map<number, Waiter>();
  private joinSettle: ((verdict: JoinVerdict) => void) | undefined;
  private joinFail: ((error: Error) => void) | undefined;
  private leavePromise: Promise<void> | undefined;
  private leaveSettle: (() => void) | undefined;

  constructor(
    /** For log lines and errors: "local driver", "zookeeper driver". */
    private readonly name: string,
    private readonly logger: DriverLogger,
    private readonly hooks: MemberHooks,
  ) {}

  /** Starts a join: the returned promise settles with this incarnation's verdict. */
  begin(self: Incarnation, handlers: ClusterHandlers): Promise<JoinVerdict> {
    if (this.phase !== 'idle') throw new SdError('INVALID_ARGUMENT', 'join called twice on one driver');
    this.phase = 'joining';
    this.self = self;
    this.handlers = handlers;
    return new Promise<JoinVerdict>((resolve, reject) => {
      this.joinSettle = resolve;
      this.joinFail = reject;
    });
  }

  // ---- the calls of the contract that are events ----

  /**
   * A clean leave: `send` puts the leave event in the order; resolves once the driver stops (at
   * its own leave read back, or when it gives up). Idempotent.
   */
  leave(send: () => void): Promise<void> {
    if (this.leavePromise !== undefined) return this.leavePromise;
    if (this.phase !== 'joining' && this.phase !== 'member') {
      this.leavePromise = Promise.resolve();
      this.shutdown();
      return this.leavePromise;
    }
    // From here on this node answers no join request: at its leave the next master is asked,
    // and two answers to one request must not exist.
    this.phase = 'leaving';
    this.leavePromise = new Promise<void>((resolve) => {
      this.leaveSettle = resolve;
    });
    send();
    return this.leavePromise;
  }

  notify(message: Json): Promise<void> {
    return this.sendAndWait('notify', this.notifyWaiters, (seq) => ({ t: 'notify', inc: this.selfInc(), seq, message }));
  }

  block(): Promise<void> {
    return this.sendAndWait('block', this.blockWaiters, (seq) => ({ t: 'block', inc: this.selfInc(), seq }));
  }

  unblock(message: Json): Promise<void> {
    if (this.phase === 'member' && !this.holding) {
      return Promise.reject(new SdError('INVALID_ARGUMENT', 'unblock without holding the lock'));
    }
    const done = this.sendAndWait('unblock', this.unblockWaiters, (seq) => ({ t: 'unblock', inc: this.selfInc(), seq, message }));
    // Released locally at once so that a second unblock cannot slip in before the event is read back.
    this.holding = false;
    return done;
  }

  /** Sends the event made for a fresh seq; resolves when the state machine acknowledges that seq. */
  private sendAndWait(operation: string, waiters: Map<number, Waiter>, makeEvent: (seq: number) => LogEvent): Promise<void> {
    if (this.phase !== 'member') {
      return Promise.reject(new SdError('INVALID_ARGUMENT', `${operation} needs a joined node (driver is ${this.phase})`));
    }
    const seq = this.nextSeq++;
    const done = new Promise<void>((resolve, reject) => waiters.set(seq, { resolve, reject }));
    const fail = (error: Error): void => {
      waiters.get(seq)?.reject(error);
      waiters.delete(seq);
    };
    try {
      this.hooks.append(makeEvent(seq), fail);
    } catch (error) {
      fail(error as Error);
    }
    return done;
  }

  // ---- acting on the state machine's outputs ----

  act(output: Output): void {
    const selfInc = this.selfInc();
    switch (output.kind) {
      case 'check_join':
        if (output.responder === selfInc && (this.phase === 'joining' || this.phase === 'member')) {
          this.answerJoin(output.joiner, output.request);
        }
        return;
      case 'join':
        if (output.joiner.inc === selfInc) {
          this.phase = this.phase === 'leaving' ? 'leaving' : 'member';
          this.deliver(() => this.requireHandlers().onJoin(output.joiner.info, output.members, output.payload));
          this.settleJoin({ accept: true, payload: output.payload });
        } else if (this.delivering()) {
          this.deliver(() => this.requireHandlers().onJoin(output.joiner.info, output.members, output.payload));
        }
        return;
      case 'refused':
        if (output.joiner.inc === selfInc) {
          this.settleJoin({ accept: false, reason: output.reason });
          this.shutdown();
        }
        return;
      case 'dropped':
        if (output.joiner.inc === selfInc) {
          this.settleJoin({ accept: false, reason: 'left before the join was decided' });
          this.shutdown();
        }
        return;
      case 'leave':
        if (output.node.inc !== selfInc) {
          if (this.delivering()) this.deliver(() => this.requireHandlers().onLeave(output.node.info, output.members));
        } else if (this.phase === 'leaving') {
          this.shutdown();
        } else {
          // Reported left while alive (a lost session, a broken start token...): out either way.
          this.expel('this node was reported left', output.members);
        }
        return;
      case 'notify':
        if (this.delivering()) this.deliver(() => this.requireHandlers().onNotify(output.from.info, output.message));
        if (output.ack.inc === selfInc) this.settleWaiter(output.ack.unblock ? this.unblockWaiters : this.notifyWaiters, output.ack.seq);
        return;
      case 'granted':
        if (output.inc === selfInc) {
          this.holding = true;
          this.settleWaiter(this.blockWaiters, output.seq);
        }
        return;
      case 'ignored':
        this.logger.debug({ why: output.why }, `${this.name}: event changed nothing`);
        return;
    }
  }

  /**
   * This incarnation is out of the cluster while alive: the layer above hears its own leave (it
   * must stop serving and rejoin through a new incarnation), a pending join fails, and it stops.
   */
  expel(why: string, members: readonly NodeInfo[]): void {
    if (this.phase === 'closed') return;
    this.logger.error({ node: this.self?.info.id }, `${this.name}: ${why}`);
    if (this.phase === 'member' && this.self !== undefined) {
      const self = this.self.info;
      this.deliver(() => this.requireHandlers().onLeave(self, members));
    }
    this.joinFail?.(new SdError('NETWORK', `${why} before the join was decided`));
    this.shutdown();
  }

  private answerJoin(joiner: Incarnation, request: Json): void {
    let verdict: JoinVerdict | undefined;
    this.deliver(() => {
      verdict = this.requireHandlers().checkJoin(joiner.info, request);
    });
    if (verdict === undefined) return; // the handler threw: the process is going down
    assert.ok(isJoinVerdict(verdict), 'checkJoin returned a malformed verdict');
    this.hooks.append({ t: 'join_response', inc: joiner.inc, by: this.selfInc(), verdict });
  }

  /**
   * Runs one handler. A throwing handler is a bug of the layer above and its state is now unknown:
   * crash loudly rather than let the driver stop reading and the node silently fall behind.
   */
  deliver(call: () => void): void {
    try {
      call();
    } catch (error) {
      this.logger.error({ err: error }, `${this.name}: cluster handler threw; crashing`);
      this.shutdown();
      process.nextTick(() => {
        throw error;
      });
    }
  }

  delivering(): boolean {
    return this.phase === 'member' || this.phase === 'leaving';
  }

  // ---- settling and stopping ----

  private settleWaiter(waiters: Map<number, Waiter>, seq: number): void {
    const waiter = waiters.get(seq);
    if (waiter === undefined) return;
    waiters.delete(seq);
    waiter.resolve();
  }

  settleJoin(verdict: JoinVerdict): void {
    const settle = this.joinSettle;
    this.joinSettle = undefined;
    this.joinFail = undefined;
    settle?.(verdict);
  }

  /** Stops once: the driver releases what it holds, and every pending call fails with SHUTDOWN. */
  shutdown(): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.holding = false;
    this.hooks.release();
    const gone = new SdError('SHUTDOWN', `the ${this.name} has stopped`);
    for (const waiters of [this.notifyWaiters, this.unblockWaiters, this.blockWaiters]) {
      for (const waiter of waiters.values()) waiter.reject(gone);
      waiters.clear();
    }
    this.joinFail?.(gone);
    this.joinSettle = undefined;
    this.joinFail = undefined;
    this.leaveSettle?.();
    this.leaveSettle = undefined;
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  selfInc(): string {
    return this.self?.inc ?? '';
  }

  selfInfo(): NodeInfo {
    assert.ok(this.self !== undefined);
    return this.self.info;
  }

  requireHandlers(): ClusterHandlers {
    assert.ok(this.handlers !== undefined);
    return this.handlers;
  }
}
