// The `zookeeper` cluster driver: sheep on many hosts form one cluster through a ZooKeeper
// ensemble. The events are persistent sequential znodes under /sheepdog/queue, whose sequence
// numbers are the one total order; every process reads them in order and feeds each to the same
// pure state machine as the `local` driver (local-state.ts), so membership, join decisions and
// the lock come out identical everywhere. Liveness is ZooKeeper's: each incarnation holds an
// ephemeral znode under /sheepdog/members, gone when its session ends or expires, and every member
// that sees one go appends its leave. The ZooKeeper client comes in through `connect` (the seam),
// so this file does no I/O of its own. See docs/zookeeper-driver.md.
import { SdError } from '../engine/errors.js';
import type { Clock, Timer } from '../io/clock.js';
import type { Random } from '../io/random.js';
import type { ZkConnect, ZkSession, ZkState, ZkWatchEvent } from '../io/zk-client.js';
import type { ClusterDriver, ClusterHandlers, JoinVerdict, Json, NodeInfo } from './driver.js';
import { applyEvent, formatEventLine, initialState, parseEventLine, type Incarnation, type LocalState, type LogEvent } from './local-state.js';
import { MemberCore, type DriverLogger, type Waiter } from './member-core.js';
import { RepeatFilter, zkAncestry, zkLayout, type ZkLayout, type ZkSpec } from './zk-layout.js';

/** One event; ZooKeeper refuses packets over 1 MiB (jute.maxbuffer), path and header included. */
export const zkEventBytesMax = 1000 * 1000;
/** How long a start tries to reach ZooKeeper before it gives up (one line, non-zero exit). */
export const zkConnectTimeoutMsDefault = 10_000;
/** A twin's or predecessor's session needs this beyond the session timeout to expire. */
const expiryMarginMs = 2000;
const twinPollMs = 200;

export interface ZkDriverOptions {
  spec: ZkSpec;
  connect: ZkConnect;
  clock: Clock;
  random: Random;
  logger?: DriverLogger;
  connectTimeoutMs?: number;
}

export interface ZkClusterDriver extends ClusterDriver {
  /** Stops at once: ends the session, so the others report this incarnation left. */
  close(): void;
}

export function createZkDriver(options: ZkDriverOptions): ZkClusterDriver {
  return new ZkDriver(options);
}

const silentLogger: DriverLogger = { debug() {}, info() {}, warn() {}, error() {} };

function isLost(error: unknown): boolean {
  return error instanceof SdError && error.code === 'NETWORK';
}

class ZkDriver implements ZkClusterDriver {
  private readonly logger: DriverLogger;
  private readonly z: ZkLayout;
  private readonly core: MemberCore;
  private session: ZkSession | undefined;
  private reachable = true;
  private state: LocalState = initialState();
  private readonly repeats = new RepeatFilter();

  /** The next queue index to read; entries are never deleted, so indexes are contiguous. */
  private nextIndex = 0;
  private pumping = false;
  private pumpWanted = false;
  private passesStarted = 0;
  private syncWaiters: Array<Waiter & { after: number }> = [];

  /** Events not yet known to be in the queue, in order: re-sent after a lost connection. */
  private readonly outbox: Array<{ data: Buffer; onFailed: ((error: Error) => void) | undefined }> = [];
  private flushing = false;

  /** The last listing of /sheepdog/members, and incarnations checked alive since. */
  private liveIncs = new Set<string>();
  private readonly checkedAlive = new Set<string>();
  private listing = false;
  private listWanted = false;
  private checking = false;
  private checkWanted = false;
  private readonly reportedDead = new Set<string>();

  private leaveTimer: Timer | undefined;

  constructor(private readonly options: ZkDriverOptions) {
    this.logger = options.logger ?? silentLogger;
    this.z = zkLayout(options.spec.root);
    this.core = new MemberCore('zookeeper driver', this.logger, {
      append: (event, onFailed) => this.append(event, onFailed),
      release: () => this.release(),
    });
  }

  private get phase(): MemberCore['phase'] {
    return this.core.phase;
  }

  // ---- the ClusterDriver contract ----

  async join(self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict> {
    const incarnation: Incarnation = { inc: this.options.random.bytes(16).toString('hex'), info: self, pid: 0, start: null };
    const verdict = this.core.begin(incarnation, handlers);
    try {
      return await this.startJoining(incarnation, request, verdict);
    } catch (error) {
      // The verdict is abandoned: the error below is the answer.
      verdict.catch(() => undefined);
      this.shutdown();
      throw error;
    }
  }

  private async startJoining(self: Incarnation, request: Json, verdict: Promise<JoinVerdict>): Promise<JoinVerdict> {
    const { spec, clock } = this.options;
    this.session = await this.options.connect({
      servers: spec.servers,
      sessionTimeoutMs: spec.sessionTimeoutMs,
      connectTimeoutMs: this.options.connectTimeoutMs ?? zkConnectTimeoutMsDefault,
      onState: (state) => this.onSessionState(state),
      onWatch: (event) => this.onWatch(event),
      clock,
      logger: this.logger,
    });
    if (this.isClosed()) {
      void this.session.close().catch(() => undefined);
      throw new SdError('SHUTDOWN', 'the zookeeper cluster driver has stopped');
    }
    for (const dir of [...zkAncestry(this.z.root), this.z.queueDir, this.z.membersDir]) await this.ensureNode(dir);
    // Learn the membership from the whole queue, and which incarnations still hold a session.
    await this.drain();
    await this.listMembers();
    const twin = await this.waitForTwinToGo(self.info.id);
    if (twin !== undefined) {
      this.core.settleJoin({ accept: false, reason: `node ${self.info.id} is already in the cluster (its ZooKeeper session is alive)` });
      this.shutdown();
      return verdict;
    }
    // The ephemeral node first: no process ever reads this join without a session to watch.
    await this.requireSession().create(this.z.memberPath(self.inc), Buffer.from(JSON.stringify(self.info)), 'ephemeral');
    this.liveIncs.add(self.inc);
    this.append({ t: 'join_request', inc: self.inc, node: self.info, pid: 0, start: null, request });
    this.requestPump();
    this.requestCheck();
    return verdict;
  }

  leave(): Promise<void> {
    return this.core.leave(() => {
      this.append({ t: 'leave', inc: this.selfInc(), node: this.selfInfo().id });
      // Unreachable ZooKeeper: ending the session is a leave too, seen once the ensemble expires it.
      this.leaveTimer = this.options.clock.after(this.options.spec.sessionTimeoutMs, () => this.shutdown());
    });
  }

  close(): void {
    this.shutdown();
  }

  notify(message: Json): Promise<void> {
    return this.core.notify(message);
  }

  block(): Promise<void> {
    return this.core.block();
  }

  unblock(message: Json): Promise<void> {
    return this.core.unblock(message);
  }

  async sync(): Promise<void> {
    const session = this.session;
    if (session === undefined || this.isClosed()) return;
    // The server we talk to may lag the leader: catch it up, then read to the end once more.
    await session.sync(this.z.queueDir);
    await this.drain();
  }

  /**
   * Resolves once a read of the queue that started after the call has reached its end. Every read
   * goes through the one pump: two readers at once would apply an entry twice and skip the next.
   */
  private drain(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ after: this.passesStarted, resolve, reject });
      this.requestPump();
    });
  }

  // ---- the queue ----

  private async ensureNode(path: string): Promise<void> {
    try {
      await this.requireSession().create(path, Buffer.alloc(0), 'persistent');
    } catch (error) {
      if (!(error instanceof SdError && /NODEEXISTS/.test(error.message))) throw error;
    }
  }

  private append(event: LogEvent, onFailed?: (error: Error) => void): void {
    const data = Buffer.from(formatEventLine(event), 'utf8');
    if (data.length > zkEventBytesMax) throw new SdError('TOO_LARGE', `cluster event of ${data.length} bytes exceeds ${zkEventBytesMax}`);
    this.outbox.push({ data, onFailed });
    void this.flush();
  }

  /** Creates the outbox's entries one after the other, so they enter the queue in their order. */
  private async flush(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0 && this.session !== undefined && this.reachable) {
        const entry = this.outbox[0]!;
        try {
          await this.session.create(this.z.queueAppendPath, entry.data, 'persistent_sequential');
        } catch (error) {
          // Lost with the connection: sent again once it is back (a repeat is filtered on reading).
          if (isLost(error)) return;
          this.logger.error({ err: String(error) }, 'zookeeper driver: could not append to the queue');
          this.outbox.shift();
          entry.onFailed?.(error as Error);
          continue;
        }
        this.outbox.shift();
      }
    } finally {
      this.flushing = false;
    }
  }

  private requestPump(): void {
    this.pumpWanted = true;
    if (!this.pumping) void this.pump();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (this.pumpWanted && !this.isClosed()) {
        this.pumpWanted = false;
        const pass = ++this.passesStarted;
        await this.readQueue();
        const ready = this.syncWaiters.filter((w) => w.after < pass);
        this.syncWaiters = this.syncWaiters.filter((w) => w.after >= pass);
        for (const waiter of ready) waiter.resolve();
        this.requestCheck();
      }
    } catch (error) {
      // Read again when the session is back (onSessionState), or never once it is gone.
      if (!isLost(error)) {
        this.logger.error({ err: String(error) }, 'zookeeper driver: reading the queue failed');
        for (const waiter of this.syncWaiters.splice(0)) waiter.reject(error as Error);
      }
    } finally {
      this.pumping = false;
    }
  }

  /** Applies every queue entry from `nextIndex` on; leaves a watch on the first missing one. */
  private async readQueue(): Promise<void> {
    const session = this.requireSession();
    while (!this.isClosed()) {
      const path = this.z.queueEntryPath(this.nextIndex);
      const data = await session.getData(path, false);
      if (data === null) {
        if (await session.exists(path, true)) continue; // created between the two calls
        return;
      }
      this.nextIndex += 1;
      this.applyEntry(data.toString('utf8'));
    }
  }

  private applyEntry(text: string): void {
    const event = parseEventLine(text.endsWith('\n') ? text.slice(0, -1) : text);
    if (event === null) {
      this.logger.warn({ entry: this.nextIndex - 1, text: text.slice(0, 200) }, 'zookeeper driver: skipping a malformed queue entry');
      return;
    }
    if (!this.repeats.fresh(event)) return;
    const applied = applyEvent(this.state, event);
    this.state = applied.state;
    for (const output of applied.outputs) {
      this.core.act(output);
      if (this.isClosed()) return;
    }
  }

  // ---- the session and liveness ----

  private onSessionState(state: ZkState): void {
    if (this.isClosed()) return;
    if (state === 'expired') {
      const others = this.state.members.filter((m) => m.inc !== this.selfInc()).map((m) => m.info);
      this.core.expel('the ZooKeeper session expired', others);
      return;
    }
    if (state === 'closed') return;
    const reachable = state === 'connected';
    if (reachable === this.reachable) return;
    this.reachable = reachable;
    if (this.core.delivering()) this.core.deliver(() => this.core.requireHandlers().onCoordinator?.(reachable));
    if (!reachable) return;
    // Watches of the lost connection are gone: read and list afresh, send what is pending.
    void this.flush();
    this.requestPump();
    this.requestList();
  }

  private onWatch(event: ZkWatchEvent): void {
    if (this.isClosed()) return;
    if (event.path === this.z.membersDir) this.requestList();
    else if (event.path.startsWith(`${this.z.queueDir}/`)) this.requestPump();
  }

  private requestList(): void {
    this.listWanted = true;
    if (!this.listing) void this.listLoop();
  }

  private async listLoop(): Promise<void> {
    this.listing = true;
    try {
      while (this.listWanted && !this.isClosed()) {
        this.listWanted = false;
        await this.listMembers();
        this.requestCheck();
      }
    } catch (error) {
      if (!isLost(error)) this.logger.error({ err: String(error) }, 'zookeeper driver: listing members failed');
    } finally {
      this.listing = false;
    }
  }

  /** Lists the live incarnations, leaving a watch for the next change. */
  private async listMembers(): Promise<void> {
    const children = await this.requireSession().getChildren(this.z.membersDir, true);
    this.liveIncs = new Set(children ?? []);
    this.checkedAlive.clear();
  }

  private requestCheck(): void {
    this.checkWanted = true;
    if (!this.checking) void this.checkLoop();
  }

  private async checkLoop(): Promise<void> {
    this.checking = true;
    try {
      while (this.checkWanted && !this.isClosed() && this.phase !== 'idle') {
        this.checkWanted = false;
        await this.reportGoneSessions();
      }
    } catch (error) {
      if (!isLost(error)) this.logger.error({ err: String(error) }, 'zookeeper driver: liveness check failed');
    } finally {
      this.checking = false;
    }
  }

  /**
   * Appends a leave for every member or pending joiner whose ephemeral node is gone. A name
   * missing from the last listing is looked up once more: the listing may predate its creation
   * (this session has read its join_request since, so a lookup now sees its node if it lives).
   */
  private async reportGoneSessions(): Promise<void> {
    const session = this.requireSession();
    for (const other of this.others()) {
      if (this.liveIncs.has(other.inc) || this.checkedAlive.has(other.inc)) continue;
      if (await session.exists(this.z.memberPath(other.inc), false)) {
        this.checkedAlive.add(other.inc);
        continue;
      }
      if (this.isClosed() || this.reportedDead.has(other.inc)) return;
      this.reportedDead.add(other.inc);
      this.logger.info({ node: other.info.id }, 'zookeeper driver: member session is gone, reporting it left');
      this.append({ t: 'leave', inc: other.inc, node: other.info.id });
    }
  }

  /**
   * At join: waits (up to the session timeout and a margin) for a previous incarnation of this
   * addr:port, killed moments ago, to lose its session. Returns a claim still alive after that.
   */
  private async waitForTwinToGo(nodeId: string): Promise<Incarnation | undefined> {
    const session = this.requireSession();
    const deadlineMs = this.options.clock.nowMs() + this.options.spec.sessionTimeoutMs + expiryMarginMs;
    for (;;) {
      const claims = [...this.state.members, ...this.state.pending].filter((c) => c.info.id === nodeId);
      const alive: Incarnation[] = [];
      for (const claim of claims) if (await session.exists(this.z.memberPath(claim.inc), false)) alive.push(claim);
      if (alive.length === 0 || this.options.clock.nowMs() >= deadlineMs) return alive[0];
      await this.options.clock.sleep(twinPollMs);
      await this.drain();
    }
  }

  private others(): Incarnation[] {
    const selfInc = this.selfInc();
    return [...this.state.members, ...this.state.pending].filter((o) => o.inc !== selfInc && !this.reportedDead.has(o.inc));
  }

  // ---- waiters and shutdown ----

  private shutdown(): void {
    this.core.shutdown();
  }

  /** Ends the session and fails what waits on the queue (the core fails the rest). */
  private release(): void {
    this.leaveTimer?.cancel();
    const session = this.session;
    this.session = undefined;
    // Ending the session removes our ephemeral node at once: the others report us left.
    void session?.close().catch(() => undefined);
    const gone = new SdError('SHUTDOWN', 'the zookeeper cluster driver has stopped');
    for (const waiter of this.syncWaiters.splice(0)) waiter.reject(gone);
    this.outbox.length = 0;
  }

  private isClosed(): boolean {
    return this.phase === 'closed';
  }

  private requireSession(): ZkSession {
    if (this.session === undefined) throw new SdError('SHUTDOWN', 'the zookeeper cluster driver has stopped');
    return this.session;
  }

  private selfInc(): string {
    return this.core.selfInc();
  }

  private selfInfo(): NodeInfo {
    return this.core.selfInfo();
  }
}
