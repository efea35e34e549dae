// The `local` cluster driver: the sheep of one host form a cluster through DIR/events, an
// append-only log. Each event is one write() of one JSON line on an O_APPEND descriptor, which a
// local Linux filesystem (tmpfs, ext4, xfs) performs atomically with respect to other appenders,
// so the order of lines is the one total order every member sees. Every process tails the file and
// feeds each line to the pure state machine of local-state.ts; this file only does the I/O and
// acts on the outputs that concern its own node. See docs/local-driver.md.
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { localBeatIntervalMs, localBeatStaleMs, localLivenessPollMs, localLivenessWarnIntervalMs } from '../engine/limits.js';
import { SdError } from '../engine/errors.js';
import { systemClock, type Clock, type Timer } from '../io/clock.js';
import { nodeLocalDriverIo, type BeatFile, type LocalDriverIo, type LocalLogFile, type Watch } from '../io/local-driver-io.js';
import { systemRandom, type Random } from '../io/random.js';
import { rateLimitedWarn } from '../rpc/server.js';
import { BeatWatch } from './local-beats.js';
import type { ClusterDriver, ClusterHandlers, JoinVerdict, Json, NodeInfo } from './driver.js';
import {
  applyEvent,
  formatEventLine,
  initialState,
  parseEventLine,
  type Incarnation,
  type LocalState,
  type LogEvent,
} from './local-state.js';
import { MemberCore, type DriverLogger, type Waiter } from './member-core.js';

/** Fallback poll of the log when fs.watch misses a change (it can, e.g. on some overlay mounts). */
export const localLogPollMs = 50;
/** One event line; bigger messages are refused before they reach the log. */
export const localEventBytesMax = 1024 * 1024;
const readChunkBytes = 64 * 1024;

/** The subset of a pino logger this driver uses. */
export type LocalLogger = DriverLogger;

export interface LocalDriverOptions {
  dir: string;
  /** The defaults are the operating system's. */
  clock?: Clock;
  io?: LocalDriverIo;
  random?: Random;
  logger?: LocalLogger;
  /** How often every process checks that the other members' pids are alive. */
  livenessPollMs?: number;
  /** How often every process bumps its heartbeat and reads the others'. */
  beatIntervalMs?: number;
  /** A heartbeat unchanged this long is a member that stopped answering. */
  beatStaleMs?: number;
  logPollMs?: number;
}

export interface LocalClusterDriver extends ClusterDriver {
  /** Stops at once: appends a leave if still in the cluster, then releases timers and files. */
  close(): void;
}

const silentLogger: LocalLogger = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * The default DIR: per user and outside the shared /tmp namespace, where anybody could pre-create
 * (and so hijack) a fixed path, the bug of the original Sheepdog.
 */
export function defaultLocalDir(env: NodeJS.ProcessEnv = process.env): string {
  const uid = process.getuid?.() ?? -1;
  if (uid === 0) return '/run/sheepdog-local';
  const runtimeDir = env.XDG_RUNTIME_DIR;
  if (runtimeDir !== undefined && runtimeDir !== '') return path.join(runtimeDir, 'sheepdog-local');
  return path.join(os.tmpdir(), `sheepdog-local-${uid}`);
}

export { isProcessAlive, processLiveness, processStartToken } from '../io/local-driver-io.js';

export function createLocalDriver(options: LocalDriverOptions): LocalClusterDriver {
  return new LocalDriver(options);
}

class LocalDriver implements LocalClusterDriver {
  private readonly dir: string;
  private readonly logPath: string;
  private readonly clock: Clock;
  private readonly io: LocalDriverIo;
  private readonly random: Random;
  private readonly logger: LocalLogger;
  private readonly livenessPollMs: number;
  private readonly beatIntervalMs: number;
  private readonly logPollMs: number;
  private readonly beats: BeatWatch;
  private beatFile: BeatFile | undefined;
  private beatCount = 0;
  /** A liveness check or heartbeat read that could not tell (EMFILE...): logged, rate-limited, never acted on. */
  private readonly warnUndecided: (fields: object, message: string) => void;
  private readonly warnUnreadBeat: (fields: object, message: string) => void;

  private readonly core: MemberCore;
  private state: LocalState = initialState();

  private log: LocalLogFile | undefined;
  /** Bytes of the log read so far; `carry` holds the tail of them that is not a full line yet. */
  private readOffsetBytes = 0;
  private carry: Buffer = Buffer.alloc(0);
  private pumping = false;
  private pumpScheduled = false;

  private readonly timers: Timer[] = [];
  private watcher: Watch | undefined;
  /** Incarnations this process already reported dead: report each once. */
  private readonly reportedDead = new Set<string>();

  private syncWaiters: Array<Waiter & { offsetBytes: number }> = [];

  constructor(options: LocalDriverOptions) {
    this.dir = options.dir;
    this.logPath = path.join(options.dir, 'events');
    this.clock = options.clock ?? systemClock;
    this.io = options.io ?? nodeLocalDriverIo;
    this.random = options.random ?? systemRandom;
    this.logger = options.logger ?? silentLogger;
    this.livenessPollMs = options.livenessPollMs ?? localLivenessPollMs;
    this.beatIntervalMs = options.beatIntervalMs ?? localBeatIntervalMs;
    this.beats = new BeatWatch(Math.ceil((options.beatStaleMs ?? localBeatStaleMs) / this.beatIntervalMs));
    this.logPollMs = options.logPollMs ?? localLogPollMs;
    this.warnUndecided = rateLimitedWarn(this.clock, localLivenessWarnIntervalMs, this.logger);
    this.warnUnreadBeat = rateLimitedWarn(this.clock, localLivenessWarnIntervalMs, this.logger);
    this.core = new MemberCore('local driver', this.logger, {
      append: (event) => {
        this.append(event);
        this.schedulePump();
      },
      release: () => this.release(),
    });
  }

  private get phase(): MemberCore['phase'] {
    return this.core.phase;
  }

  // ---- the ClusterDriver contract ----

  async join(self: NodeInfo, request: Json, handlers: ClusterHandlers): Promise<JoinVerdict> {
    const { pid, start } = this.io.self();
    const incarnation: Incarnation = { inc: this.random.bytes(16).toString('hex'), info: self, pid, start };
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

  private startJoining(self: Incarnation, request: Json, verdict: Promise<JoinVerdict>): Promise<JoinVerdict> {
    this.openLog();
    // Replay silently to learn the membership, then clear the way: report dead members (a whole
    // cluster restart leaves only dead ones) so that a dead predecessor of this addr:port is gone.
    this.pumpNow();
    this.reportDeadProcesses();
    this.pumpNow();
    const holder = this.liveHolderOf(self.info.id);
    if (holder !== undefined) {
      this.core.settleJoin({ accept: false, reason: `node ${self.info.id} is already in the cluster (pid ${holder.pid})` });
      this.shutdown();
      return verdict;
    }
    // Beating before the request is in the log: no process ever sees this incarnation without one.
    this.beatFile = this.io.openBeat(this.beatPath(self.inc));
    this.beat();
    this.append({ t: 'join_request', inc: self.inc, node: self.info, pid: self.pid, start: self.start, request });
    this.startTailing();
    this.schedulePump();
    return verdict;
  }

  leave(): Promise<void> {
    return this.core.leave(() => {
      try {
        this.append({ t: 'leave', inc: this.selfInc(), node: this.selfInfo().id });
      } catch (error) {
        // The others will see this process die instead; nothing more can be done through the log.
        this.logger.error({ err: error }, 'local driver: could not append the leave');
        this.shutdown();
      }
      this.schedulePump();
    });
  }

  close(): void {
    if (this.phase === 'joining' || this.phase === 'member') {
      try {
        this.append({ t: 'leave', inc: this.selfInc(), node: this.selfInfo().id });
      } catch (error) {
        this.logger.error({ err: error }, 'local driver: could not append the leave; others will see the process die');
      }
    }
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

  sync(): Promise<void> {
    if (this.log === undefined) return Promise.resolve();
    const offsetBytes = this.log.sizeBytes();
    return new Promise<void>((resolve, reject) => {
      this.syncWaiters.push({ offsetBytes, resolve, reject });
      this.schedulePump();
    });
  }

  // ---- the log ----

  private openLog(): void {
    this.io.prepareDir(this.dir);
    this.log = this.io.openLog(this.logPath);
  }

  private append(event: LogEvent): void {
    assert.ok(this.log !== undefined, 'append before the log is open');
    const line = Buffer.from(formatEventLine(event), 'utf8');
    if (line.length > localEventBytesMax) {
      throw new SdError('TOO_LARGE', `cluster event of ${line.length} bytes exceeds ${localEventBytesMax}`);
    }
    // One write() per event: O_APPEND makes it land whole after every earlier line.
    const written = this.log.append(line);
    assert.equal(written, line.length, 'short write to the cluster log');
  }

  private startTailing(): void {
    try {
      this.watcher = this.io.watch(
        this.dir,
        () => this.schedulePump(),
        (error) => this.logger.warn({ err: error }, 'local driver: watch failed, polling only'),
      );
    } catch (error) {
      this.logger.warn({ err: error }, 'local driver: fs.watch unavailable, polling only');
    }
    this.timers.push(this.clock.every(this.logPollMs, () => this.schedulePump()));
    this.timers.push(this.clock.every(this.livenessPollMs, () => this.reportDeadProcesses()));
    this.timers.push(
      this.clock.every(this.beatIntervalMs, () => {
        this.beat();
        this.reportSilentMembers();
      }),
    );
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.phase === 'closed') return;
    this.pumpScheduled = true;
    this.clock.after(0, () => {
      this.pumpScheduled = false;
      this.pumpNow();
    });
  }

  /** Reads the log to its end and applies every complete line, in order. */
  private pumpNow(): void {
    if (this.pumping || this.log === undefined) return;
    this.pumping = true;
    try {
      const chunk = Buffer.allocUnsafe(readChunkBytes);
      while (this.log !== undefined) {
        const bytesRead = this.log.read(chunk, this.readOffsetBytes);
        if (bytesRead === 0) break;
        this.readOffsetBytes += bytesRead;
        this.carry = Buffer.concat([this.carry, chunk.subarray(0, bytesRead)]);
        this.applyCompleteLines();
      }
      this.settleSyncWaiters();
    } finally {
      this.pumping = false;
    }
  }

  private applyCompleteLines(): void {
    let lineStart = 0;
    for (;;) {
      const newline = this.carry.indexOf(0x0a, lineStart);
      if (newline < 0) break;
      const line = this.carry.toString('utf8', lineStart, newline);
      lineStart = newline + 1;
      this.applyLine(line);
      if (this.phase === 'closed') return;
    }
    this.carry = this.carry.subarray(lineStart);
  }

  private appliedOffsetBytes(): number {
    return this.readOffsetBytes - this.carry.length;
  }

  private applyLine(line: string): void {
    const event = parseEventLine(line);
    if (event === null) {
      this.logger.warn({ line: line.slice(0, 200) }, 'local driver: skipping malformed log line');
      return;
    }
    const applied = applyEvent(this.state, event);
    this.state = applied.state;
    for (const output of applied.outputs) {
      this.core.act(output);
      if (this.phase === 'closed') return;
    }
  }

  // ---- liveness ----

  /**
   * Appends a leave for every member or pending joiner whose process is definitely gone. A check
   * that cannot tell (EMFILE while this process is out of descriptors...) keeps the member: one
   * sheep short of files once reported every healthy member as left.
   */
  private reportDeadProcesses(): void {
    if (this.phase === 'closed' || this.phase === 'idle') return;
    for (const other of this.others()) {
      const liveness = this.io.liveness(other.pid, other.start);
      if (liveness.state === 'unknown') {
        this.warnUndecided({ node: other.info.id, pid: other.pid, reason: liveness.reason }, 'local driver: cannot tell whether a member lives; keeping it');
      }
      if (liveness.state === 'dead') this.reportLeft(other, 'member process is gone, reporting it left');
    }
    this.schedulePump();
  }

  /** Appends a leave for every member whose heartbeat stood still too long (SIGSTOP, a hung loop). */
  private reportSilentMembers(): void {
    if (this.phase === 'closed' || this.phase === 'idle') return;
    const others = this.others();
    this.beats.retain(new Set(others.map((other) => other.inc)));
    for (const other of others) {
      const reading = this.io.readBeat(this.beatPath(other.inc));
      if (reading.state === 'unknown') {
        this.warnUnreadBeat({ node: other.info.id, reason: reading.reason }, 'local driver: cannot read a heartbeat; keeping the member');
        continue;
      }
      if (this.beats.stale(other.inc, reading.state === 'read' ? reading.text : null)) {
        this.reportLeft(other, 'member stopped beating, reporting it left');
      }
    }
    this.schedulePump();
  }

  /** Members and pending joiners other than this incarnation, not yet reported by us. */
  private others(): Incarnation[] {
    const selfInc = this.selfInc();
    return [...this.state.members, ...this.state.pending].filter((other) => other.inc !== selfInc && !this.reportedDead.has(other.inc));
  }

  private reportLeft(other: Incarnation, why: string): void {
    this.logger.info({ node: other.info.id, pid: other.pid }, `local driver: ${why}`);
    try {
      this.append({ t: 'leave', inc: other.inc, node: other.info.id });
      this.reportedDead.add(other.inc);
      this.io.removeBeat(this.beatPath(other.inc));
    } catch (error) {
      // Not fatal: every live member reports the death, and this one retries at the next poll.
      this.logger.warn({ err: error, node: other.info.id }, 'local driver: could not report a dead member');
    }
  }

  /** Bumps this incarnation's heartbeat; a failed write is only a missed beat. */
  private beat(): void {
    this.beatCount += 1;
    try {
      this.beatFile?.write(String(this.beatCount).padStart(16, '0'));
    } catch (error) {
      this.warnUnreadBeat({ err: String(error) }, 'local driver: heartbeat write failed');
    }
  }

  private beatPath(inc: string): string {
    return path.join(this.dir, `beat.${inc}`);
  }

  private liveHolderOf(nodeId: string): Incarnation | undefined {
    const claims = [...this.state.members, ...this.state.pending].filter((other) => other.info.id === nodeId);
    return claims.find((other) => this.io.liveness(other.pid, other.start).state !== 'dead');
  }

  // ---- waiters and shutdown ----

  private settleSyncWaiters(): void {
    const applied = this.appliedOffsetBytes();
    const ready = this.syncWaiters.filter((waiter) => waiter.offsetBytes <= applied);
    this.syncWaiters = this.syncWaiters.filter((waiter) => waiter.offsetBytes > applied);
    for (const waiter of ready) waiter.resolve();
  }

  /** Stops: pending calls fail with SHUTDOWN (member-core.ts), and release() frees the rest. */
  private shutdown(): void {
    this.core.shutdown();
  }

  /** Stops every timer and watcher and closes the log. */
  private release(): void {
    for (const timer of this.timers.splice(0)) timer.cancel();
    this.watcher?.close();
    this.watcher = undefined;
    try {
      this.beatFile?.close(true);
    } catch {
      // A beat file we cannot close is gone with the process.
    }
    this.beatFile = undefined;
    this.log?.close();
    this.log = undefined;
    const gone = new SdError('SHUTDOWN', 'the local cluster driver has stopped');
    for (const waiter of this.syncWaiters.splice(0)) waiter.reject(gone);
  }

  // ---- small guards ----

  private selfInc(): string {
    return this.core.selfInc();
  }

  private selfInfo(): NodeInfo {
    return this.core.selfInfo();
  }
}
