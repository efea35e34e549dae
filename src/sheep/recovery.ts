// Recovery: after every epoch change, this node brings every object it owns in the new epoch to
// the current version, copied from where a good copy is (newest epoch first). Differential: a
// copy whose checksum equals the source's is kept, not sent again. Until an object is verified,
// this node answers reads and partial writes of it with NO_OBJECT, so the gateway goes to a good
// copy (a read never returns stale data) or sends the whole object (a write never patches a stale
// copy). Copies this node no longer owns are removed once every member has finished recovering.
import type { NodeInfo } from '../cluster/driver.js';
import { SdError, asSdError } from '../engine/errors.js';
import { reconcileWaitMs, suspectsKnownWaitMs, suspectsKnownWaitersMax, suspectWriteWindowMs, suspectWritesPerGatewayMax } from '../engine/limits.js';
import { oidHex, type Oid } from '../engine/oid.js';
import { decodeOids } from '../rpc/oid-list.js';
import type { Clock } from '../io/clock.js';
import type { Log } from '../io/log.js';
import type { ReconcileAnswer, RecoveryState } from '../rpc/protocol.js';
import type { LocalStore } from '../store/md-store.js';
import type { Gateway } from './gateway.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';
import type { Placement } from './placement.js';
import { CatchUp } from './catch-up.js';
import { rankCopies } from './copy-rank.js';
import { lostStrips, rebuildStrip, settleStripes } from './ec-recovery.js';
import { isStripOid } from '../engine/ec-layout.js';
import { RecentWrites } from './recent-writes.js';

export const recoveryParallelism = 8;
/** Client I/O this recent makes recovery yield (when no throttle is set). */
export const foregroundQuietMs = 200;
export const automaticThrottle = { maxObjects: 1, intervalMs: 100 };
/** Objects waiting readers asked for, recovered first; more requests than this are dropped. */
export const urgentObjectsMax = 1024;
export type { ReconcileAnswer, RecoveryState };

/** Epochs whose suspects are kept for peers that ask late. */
const suspectEpochsKept = 4;
const reconcilePollMs = 50;
const listRetryFirstMs = 200;
const listRetryLongestMs = 5000;

export { checksumOf } from '../store/checksums.js';

export class Recovery {
  /** Objects known current in this epoch. Everything else local is suspect while `running`. */
  private verified = new Set<Oid>();
  /**
   * Objects whose copy here holds every acknowledged write: `verified` plus the suspects not yet
   * settled (a suspect may hold one write too many, never one too few). The next epoch carries
   * these over, whether or not this epoch's run finished.
   */
  private trusted = new Set<Oid>();
  /** Settled once the latest run has applied its carry-over to `trusted` and `verified`. */
  private carriedOver: Promise<void> = Promise.resolve();
  /** Suspects the latest run has yet to settle; an epoch change hands them to the next run. */
  private unsettled: Set<Oid> | 'all' = new Set();
  private epoch = 0;
  private generation = 0;
  /**
   * The latest run, settled once it and every run before it have stopped. A run of an old epoch
   * stops between objects, so the object it is copying may still land after a newer epoch began.
   */
  private lastRun: Promise<void> = Promise.resolve();
  private urgent: Oid[] = [];
  state: RecoveryState = { epoch: 0, running: false, total: 0, done: 0, receivedBytes: 0, keptObjects: 0 };
  /** Epoch whose membership this store was last current in (from our own epoch log at start). */
  private currentThrough: number | undefined;
  private trustAllLocal = true;
  /** Objects each gateway wrote here lately (recent-writes.ts). */
  private readonly recentWrites = new RecentWrites(suspectWriteWindowMs, suspectWritesPerGatewayMax);
  /** Per epoch: what gateways that left at it had written here ('all': more than was tracked). */
  private readonly suspectsByEpoch = new Map<number, Set<Oid> | 'all'>();
  /**
   * Suspects this node owns with a trusted copy and has not settled yet; undefined until this
   * epoch's suspects are known (then every question about a copy of ours is answered 'pending').
   */
  private undecided: Set<Oid> | undefined = new Set();
  /** Replica writes waiting for this epoch's suspects to be known (`suspectsKnown`). */
  private suspectsWaiters = new Set<() => void>();

  constructor(
    private readonly group: Group,
    private readonly store: LocalStore,
    private readonly gateway: Gateway,
    private readonly placement: Placement,
    private readonly peers: Peers,
    private readonly clock: Clock,
    private readonly log: Log,
  ) {
    this.catchUp = new CatchUp(group, store, placement, peers, gateway.copyWatch, clock, log, (oid) => this.markCurrent(oid));
  }

  /** Copies a local write failed on, until they catch up (catch-up.ts). */
  readonly catchUp: CatchUp;

  /**
   * Called at start, before joining: the last epoch our own store recorded. And before a rejoin
   * (`returning`): from then on, as after a restart, a local copy is trusted only if the cluster
   * did not move on without us.
   */
  rememberStoreEpoch(epoch: number, returning = false): void {
    this.currentThrough = epoch;
    if (returning) this.trustAllLocal = true;
  }

  /** May this node answer reads and partial writes of `oid` from its local copy? */
  isCurrent(oid: Oid): boolean {
    if (this.catchUp.isBehind(oid)) return false;
    if (!this.state.running) return true;
    return this.verified.has(oid);
  }

  /** A reader is waiting for this object: recover it before the others. */
  prioritize(oid: Oid): void {
    if (this.state.running && this.urgent.length < urgentObjectsMax) this.urgent.push(oid);
  }

  /** A whole-object write makes the local copy current. */
  markWritten(oid: Oid): void {
    this.markCurrent(oid);
  }

  private markCurrent(oid: Oid): void {
    this.verified.add(oid);
    this.trusted.add(oid);
    this.catchUp.caughtUp(oid);
  }

  /**
   * A write of our copy failed (or its disk did: `quiet`, logged once for them all): it is
   * neither served nor carried over until it catches up.
   */
  markBehind(oid: Oid, cause: string, quiet = false): void {
    this.verified.delete(oid);
    this.trusted.delete(oid);
    this.catchUp.markBehind(oid, cause, quiet);
  }

  /**
   * Resolves once this epoch's suspects are known. A replica write waits for it: before then a
   * carried copy is served, but once a suspect it may be replaced by another replica's copy, and
   * a write applied to it meanwhile would be lost from it (seed 5 of the full fault mix). The
   * wait is a round trip to the members, bounded; past the bound the write is refused as busy.
   */
  async suspectsKnown(): Promise<void> {
    if (this.undecided !== undefined) return;
    if (this.suspectsWaiters.size >= suspectsKnownWaitersMax) throw new SdError('BUSY', 'too many writes waiting for recovery to start');
    await new Promise<void>((resolve, reject) => {
      const done = () => {
        timer.cancel();
        resolve();
      };
      const timer = this.clock.after(suspectsKnownWaitMs, () => {
        this.suspectsWaiters.delete(done);
        reject(new SdError('BUSY', `recovery has not learnt which copies to settle within ${suspectsKnownWaitMs} ms; try again`));
      });
      this.suspectsWaiters.add(done);
    });
  }

  private setUndecided(undecided: Set<Oid>): void {
    this.undecided = undecided;
    const waiters = [...this.suspectsWaiters];
    this.suspectsWaiters.clear();
    for (const wake of waiters) wake();
  }

  /** Our copy failed its checksums: like a failed write, it is behind until repaired. */
  markDamaged(oid: Oid, problem: string): void {
    this.verified.delete(oid);
    this.trusted.delete(oid);
    this.catchUp.markDamaged(oid, problem);
  }

  /** A replica write arrived from gateway node `gateway` (before it is applied). */
  noteWrite(gateway: string, oid: Oid): void {
    this.recentWrites.note(gateway, oid, this.clock.nowMs());
  }

  /** This node's suspects of `epoch` for a peer's recovery; undefined if we have not reached it. */
  suspectsOf(epoch: number): Set<Oid> | 'all' | undefined {
    if (epoch > this.epoch) return undefined;
    return this.suspectsByEpoch.get(epoch) ?? new Set();
  }

  /** Which copy of a suspect wins: asked by the replicas after this one in placement order. */
  async reconcileState(oid: Oid, epoch: number): Promise<ReconcileAnswer> {
    if (epoch > this.epoch || (epoch === this.epoch && this.undecided === undefined)) return { state: 'pending' };
    if (epoch < this.epoch) return { state: 'none' };
    if (this.undecided?.has(oid)) return { state: 'pending' };
    if (!this.isCurrent(oid) || !(await this.store.exists(oid))) return { state: 'none' };
    const sum = await this.soundSum(oid, this.placement.contentBytes(oid));
    return sum === undefined ? { state: 'none' } : { state: 'verified', sum };
  }

  onEpoch(epoch: number): void {
    if (epoch === this.epoch) return;
    const previous = this.epoch;
    // Suspects an interrupted run did not settle stay suspects: the next run settles them.
    this.suspectsByEpoch.set(epoch, union(this.departedWrites(previous, epoch), this.unsettled));
    for (const kept of this.suspectsByEpoch.keys()) if (kept <= epoch - suspectEpochsKept) this.suspectsByEpoch.delete(kept);
    this.undecided = undefined;
    this.epoch = epoch;
    this.generation += 1;
    const earlier = this.lastRun;
    this.lastRun = this.run(previous, epoch, this.generation, earlier).catch((error: unknown) =>
      this.log.warn({ err: String(error), epoch }, 'recovery failed'),
    );
  }

  /** The objects written here by gateways that were members at `previous` and are not at `epoch`. */
  private departedWrites(previous: number, epoch: number): Set<Oid> | 'all' {
    const before = this.group.epochs.find((e) => e.epoch === previous)?.nodes ?? [];
    const after = new Set((this.group.epochs.find((e) => e.epoch === epoch)?.nodes ?? []).map((n) => n.id));
    const suspects = new Set<Oid>();
    for (const node of before) {
      if (after.has(node.id)) continue;
      const written = this.recentWrites.take(node.id, this.clock.nowMs());
      if (written === 'all') return 'all';
      for (const oid of written) suspects.add(oid);
    }
    return suspects;
  }

  /**
   * Every member's suspects of this epoch: a write may have reached one replica only, so the
   * others must learn of it from that one.
   */
  private async gatherSuspects(epoch: number, generation: number): Promise<Set<Oid> | 'all'> {
    const own = this.suspectsByEpoch.get(epoch) ?? new Set<Oid>();
    if (own === 'all') return 'all';
    const union = new Set(own);
    let all = false;
    const ask = async (node: NodeInfo) => {
      for (let waitedMs = 0; waitedMs <= reconcileWaitMs && generation === this.generation; waitedMs += reconcilePollMs) {
        try {
          // The receiver answers for our epoch, which is `epoch` while this run is current.
          const reply = await this.peers.call(node, 'peer.suspects', { recovery: true });
          if (reply.value === 'all') all = true;
          for (const oid of decodeOids(reply.data)) union.add(oid);
          return;
        } catch (error) {
          // BUSY: it has not reached this epoch yet. Anything else: it is leaving, and the epoch
          // that follows starts over.
          if (asSdError(error).code !== 'BUSY') return;
        }
        await this.clock.sleep(reconcilePollMs);
      }
    };
    await Promise.all(this.group.members.filter((n) => n.id !== this.group.self.id).map(ask));
    return all ? 'all' : union;
  }

  private selfWasMember(epoch: number): boolean {
    const record = this.group.epochs.find((e) => e.epoch === epoch);
    return record?.nodes.some((n) => n.id === this.group.self.id) ?? false;
  }

  /**
   * Which local objects are current without a check: those we kept receiving writes for. When
   * the previous epoch's recovery had finished, every copy we held there was current (partial
   * writes of new objects are never marked, so `verified` alone would miss them, e.g. inodes).
   */
  private async carryOver(previous: number, previousTrusted: Set<Oid>, previousFinished: boolean): Promise<Set<Oid>> {
    // A copy a write failed on is behind its peers whatever else is true of it (catch-up.ts).
    const local = (await this.store.list()).filter((oid) => !this.catchUp.isBehind(oid));
    const carried = new Set<Oid>();
    let through = previous;
    if (this.trustAllLocal) {
      // First epoch since start: our store was current at the last epoch it recorded, if the
      // cluster has not moved on without us since.
      this.trustAllLocal = false;
      through = this.currentThrough ?? 0;
      const newer = this.group.epochs.filter((e) => e.epoch > through && e.epoch < this.epoch);
      if (through === 0 || newer.some((e) => !e.nodes.some((n) => n.id === this.group.self.id))) return carried;
      for (const oid of local) {
        if (this.placement.nodes(oid, through).some((n) => n.id === this.group.self.id)) carried.add(oid);
      }
      return carried;
    }
    if (!this.selfWasMember(through)) return carried;
    for (const oid of local) {
      if ((previousFinished || previousTrusted.has(oid)) && this.placement.nodes(oid, through).some((n) => n.id === this.group.self.id)) {
        carried.add(oid);
      }
    }
    return carried;
  }

  private async run(previous: number, epoch: number, generation: number, earlier: Promise<void>): Promise<void> {
    const previousFinished = this.state.epoch === previous && !this.state.running;
    const previousTrusted = this.trusted;
    const previousCarriedOver = this.carriedOver;
    // Whole writes that land while the carry-over is computed go into the new sets, not the old;
    // a later epoch may replace them meanwhile, so fill this run's own.
    const verified = new Set<Oid>();
    const trusted = new Set<Oid>();
    this.verified = verified;
    this.trusted = trusted;
    this.state = { epoch, running: true, total: 0, done: 0, receivedBytes: 0, keptObjects: 0 };
    const ownSuspects = this.suspectsByEpoch.get(epoch) ?? new Set<Oid>();
    this.unsettled = ownSuspects;
    let carriedDone!: () => void;
    this.carriedOver = new Promise((resolve) => (carriedDone = resolve));
    let carried = new Set<Oid>();
    try {
      // A run that an epoch change cut short before its carry-over must still hand it on:
      // otherwise a copy kept current through every epoch is checked as if it missed them, and
      // with no verified copy left a stale one may win.
      await previousCarriedOver;
      carried = await this.carryOver(previous, previousTrusted, previousFinished);
      // Our own suspects are known at once; the other members' come over the network. Until they
      // have, the rest is served (holding every read until then would hold them all), so a copy
      // only another replica suspects is readable for that round trip.
      for (const oid of carried) {
        trusted.add(oid);
        if (ownSuspects !== 'all' && !ownSuspects.has(oid)) verified.add(oid);
      }
    } finally {
      carriedDone();
    }
    const selfId = this.group.self.id;
    const owned = (oid: Oid) => this.placement.nodes(oid, epoch).some((n) => n.id === selfId);
    const suspects = await this.gatherSuspects(epoch, generation);
    if (generation !== this.generation) return;
    this.unsettled = union(this.unsettled, suspects);
    const isSuspect = (oid: Oid) => suspects === 'all' || suspects.has(oid);
    // A trusted copy of a suspect is not served until the replicas agree on one content.
    const undecided = new Set<Oid>();
    for (const oid of carried) {
      if (!isSuspect(oid)) continue;
      verified.delete(oid);
      if (owned(oid)) undecided.add(oid);
    }
    this.setUndecided(undecided);
    // Settled even while recovery is disabled: it decides what may be served, it copies little.
    if (suspects === 'all' || suspects.size > 0) {
      const items = [...(await this.objectLists(generation))].filter(([oid]) => isSuspect(oid) && owned(oid) && !this.verified.has(oid));
      await this.settleSuspects(items.map(([oid, holders]) => ({ oid, holders })), undecided, epoch, generation);
      // Stripes a dead gateway was writing may be half committed: rolled forward (ec-recovery.ts).
      if (suspects !== 'all') void settleStripes(this.gateway.ec, this.placement, suspects, this.group.self.id, this.log);
    }
    undecided.clear();
    if (generation !== this.generation) return;
    this.unsettled = new Set();
    while (!this.group.recoveryEnabled && generation === this.generation) await this.clock.sleep(200);
    if (generation !== this.generation) return;
    const lists = await this.objectLists(generation);
    if (generation !== this.generation) return;
    const wanted: Array<{ oid: Oid; holders: NodeInfo[] }> = [];
    for (const [oid, holders] of lists) {
      if (this.verified.has(oid) || !owned(oid)) continue;
      wanted.push({ oid, holders });
    }
    // Strips of erasure-coded objects whose only copy went with a node: decoded (ec-recovery.ts).
    for (const oid of lostStrips(lists, this.placement, owned)) if (!this.verified.has(oid)) wanted.push({ oid, holders: [] });
    this.state.total = wanted.length;
    this.log.info({ epoch, objects: wanted.length, kept: this.verified.size }, 'recovery started');
    let next = 0;
    const pending = new Map(wanted.map((item) => [item.oid, item]));
    this.urgent = [];
    // Objects someone is waiting to read go first; then the rest in listing order.
    const take = () => {
      while (this.urgent.length > 0) {
        const item = pending.get(this.urgent.shift()!);
        if (item) {
          pending.delete(item.oid);
          return { ...item, urgent: true };
        }
      }
      while (next < wanted.length) {
        const item = wanted[next++]!;
        if (pending.delete(item.oid)) return { ...item, urgent: false };
      }
      return undefined;
    };
    const worker = async () => {
      for (let item = take(); item && generation === this.generation; item = take()) {
        // A reader waits for an urgent object: no throttle holds it back.
        if (!item.urgent) await this.waitForPermit(generation);
        try {
          await this.recoverObject(item.oid, item.holders, epoch, generation);
        } catch (error) {
          this.log.warn({ oid: oidHex(item.oid), err: asSdError(error).message }, 'object not recovered');
        }
        this.state.done += 1;
      }
    };
    await Promise.all(Array.from({ length: recoveryParallelism }, worker));
    // Announced only once the runs of older epochs have stopped: the stale-copy removal that
    // follows the last announcement must see every copy they made, or one made after it stays.
    await earlier;
    if (generation !== this.generation) return;
    this.state.running = false;
    this.log.info({ epoch, received: this.state.receivedBytes, kept: this.state.keptObjects }, 'recovery finished');
    this.group.announce({ type: 'recovered', node: selfId, epoch } as never);
  }

  /**
   * The set throttle, or, when none is set and clients did I/O through this node just now, the
   * automatic one: running VMs keep their latency, and an idle cluster recovers at full speed.
   */
  private pace(): { maxObjects: number; intervalMs: number } {
    if (this.group.throttle.maxObjects > 0) return this.group.throttle;
    if (this.clock.nowMs() - this.gateway.lastClientIoMs < foregroundQuietMs) return automaticThrottle;
    return { maxObjects: 0, intervalMs: 0 };
  }

  private windowStartMs = 0;
  private windowUsed = 0;
  /**
   * At most `maxObjects` objects start per `intervalMs` window, for all workers together. (A
   * counter where only the worker crossing the limit slept let the other workers run on.)
   */
  private async waitForPermit(generation: number): Promise<void> {
    while (!this.group.recoveryEnabled && generation === this.generation) await this.clock.sleep(200);
    for (;;) {
      const { maxObjects, intervalMs } = this.pace();
      if (maxObjects <= 0 || generation !== this.generation) return;
      const now = this.clock.nowMs();
      if (now - this.windowStartMs >= intervalMs) {
        this.windowStartMs = now;
        this.windowUsed = 0;
      }
      if (this.windowUsed < maxObjects) {
        this.windowUsed += 1;
        return;
      }
      await this.clock.sleep(Math.max(1, this.windowStartMs + intervalMs - now));
    }
  }

  /** oid → members that hold a copy, from every member's object list. */
  /**
   * Every member's list is needed: a member we cannot list may hold the newest copy of anything,
   * and without it our own copy would look like the only one. So an unreachable member is asked
   * again until it answers or the epoch changes (which a member that stays away brings).
   */
  private async objectLists(generation: number): Promise<Map<Oid, NodeInfo[]>> {
    const result = new Map<Oid, NodeInfo[]>();
    await Promise.all(
      this.group.members.map(async (node) => {
        let oids: Oid[] | undefined;
        for (let waitMs = listRetryFirstMs; generation === this.generation; waitMs = Math.min(waitMs * 2, listRetryLongestMs)) {
          try {
            oids = await this.gateway.listObjects(node, false);
            break;
          } catch (error) {
            if (waitMs === listRetryFirstMs) this.log.warn({ node: node.id, err: asSdError(error).message }, 'cannot list the objects of a member; asking again');
            await this.clock.sleep(waitMs);
          }
        }
        if (oids === undefined) return;
        for (const oid of oids) {
          const holders = result.get(oid) ?? [];
          holders.push(node);
          result.set(oid, holders);
        }
      }),
    );
    return result;
  }

  /**
   * Makes every copy of each suspect agree before it is served: the first replica in placement
   * order that holds a trusted copy keeps it, and every other replica takes that content. A
   * trusted copy holds every acknowledged write, so whichever wins loses nothing acknowledged;
   * the rule only has to be the same everywhere. Replicas ask only those before them in order,
   * so no two wait on each other. A suspect nobody settles goes through ordinary recovery.
   */
  private async settleSuspects(
    items: Array<{ oid: Oid; holders: NodeInfo[] }>,
    undecided: Set<Oid>,
    epoch: number,
    generation: number,
  ): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < items.length && generation === this.generation) {
        const { oid, holders } = items[next++]!;
        try {
          await this.settle(oid, holders, undecided.has(oid), epoch, generation);
        } catch (error) {
          this.log.warn({ oid: oidHex(oid), err: asSdError(error).message }, 'suspect copy not settled');
        } finally {
          undecided.delete(oid);
        }
      }
    };
    await Promise.all(Array.from({ length: recoveryParallelism }, worker));
    if (items.length > 0) this.log.info({ epoch, suspects: items.length }, 'copies written by departed gateways settled');
  }

  /** True once this node's copy of `oid` is the agreed one. */
  private async settle(oid: Oid, holders: NodeInfo[], selfTrusted: boolean, epoch: number, generation: number): Promise<boolean> {
    const holderIds = new Set(holders.map((h) => h.id));
    for (const node of this.placement.nodes(oid, epoch)) {
      if (node.id === this.group.self.id) {
        if (!selfTrusted) continue;
        this.markCurrent(oid);
        return true;
      }
      if (!holderIds.has(node.id)) continue;
      const answer = await this.askSettled(node, oid, epoch, generation);
      if (answer === undefined || this.verified.has(oid)) continue;
      await this.takeCopy(node, oid, answer.sum, false, generation);
      return true;
    }
    return false;
  }

  /** The settled copy of `node`, waiting while it decides; undefined if its copy does not count. */
  private async askSettled(node: NodeInfo, oid: Oid, epoch: number, generation: number): Promise<{ sum: string } | undefined> {
    for (let waitedMs = 0; generation === this.generation && !this.verified.has(oid); waitedMs += reconcilePollMs) {
      let answer: ReconcileAnswer;
      try {
        answer = await this.peers.call(node, 'peer.reconcile', { oid, recovery: true });
      } catch {
        return undefined;
      }
      if (answer.state === 'verified') return { sum: answer.sum };
      if (answer.state === 'none') return undefined;
      if (waitedMs >= reconcileWaitMs) {
        this.log.warn({ oid: oidHex(oid), node: node.id }, 'replica did not settle its copy in time');
        return undefined;
      }
      await this.clock.sleep(reconcilePollMs);
    }
    return undefined;
  }

  /**
   * Makes our copy equal to `source`'s (whose checksum is `sum`), unless it already is; with no
   * sum (we hold no copy to compare) the source's is read at once.
   */
  private async takeCopy(source: NodeInfo, oid: Oid, sum: string | undefined, force: boolean, generation: number): Promise<void> {
    const size = this.placement.objectSizeBytes(oid);
    const content = this.placement.contentBytes(oid);
    const watch = this.gateway.copyWatch.watch(oid);
    try {
      const localSum = sum !== undefined && (await this.store.exists(oid)) ? await this.soundSum(oid, content) : undefined;
      // A replica write landed meanwhile (it is newer than the source's copy, and makes ours
      // current once it is whole), or a newer epoch's run decides.
      const overtaken = () => watch.written || this.verified.has(oid) || generation !== this.generation;
      if (overtaken()) return;
      if (sum !== undefined && localSum === sum) {
        this.markCurrent(oid);
        this.state.keptObjects += 1;
        return;
      }
      const data = await this.peers.ask(source, 'peer.read', { oid, offset: 0, length: content, force, recovery: true });
      // No await from this check to the store call (copy-watch.ts).
      if (overtaken()) return;
      try {
        await this.store.writeWhole(oid, data, size);
      } catch (error) {
        // Our disk failed the copy: what we hold is no good copy either (recoverObject stops).
        this.markBehind(oid, asSdError(error).message);
        throw error;
      }
      this.markCurrent(oid);
      this.state.receivedBytes += data.length;
    } finally {
      watch.release();
    }
  }

  /** Our copy's sum; none when it is gone or fails its block checksums (it is no copy to keep). */
  private async soundSum(oid: Oid, content: number): Promise<string | undefined> {
    try {
      return await this.store.checksum(oid, content);
    } catch (error) {
      const code = asSdError(error).code;
      if (code === 'CORRUPT' || code === 'NO_OBJECT') return undefined;
      throw error;
    }
  }

  /** Sources newest epoch first: the replicas of the previous epochs that still hold a copy. */
  private sources(oid: Oid, holders: NodeInfo[], epoch: number): NodeInfo[] {
    const selfId = this.group.self.id;
    const holderIds = new Set(holders.map((h) => h.id));
    const ordered: NodeInfo[] = [];
    const seen = new Set<string>();
    const others = holders.filter((h) => h.id !== selfId).length;
    // Back through the epochs only until every holder has its place (the history can be long).
    for (let e = epoch; e >= 1 && seen.size < others; e--) {
      for (const node of this.placement.nodes(oid, e)) {
        if (node.id === selfId || seen.has(node.id) || !holderIds.has(node.id)) continue;
        seen.add(node.id);
        ordered.push(holders.find((h) => h.id === node.id)!);
      }
    }
    for (const holder of holders) if (holder.id !== selfId && !seen.has(holder.id)) ordered.push(holder);
    return ordered;
  }

  private async recoverObject(oid: Oid, holders: NodeInfo[], epoch: number, generation: number): Promise<void> {
    if (this.verified.has(oid)) return; // settled as a suspect, or written whole meanwhile
    if (holders.length === 0 && isStripOid(oid)) return this.rebuildStrip(oid, generation);
    const localExists = await this.store.exists(oid);
    let lastError: unknown = new SdError('NO_OBJECT', `no good copy of ${oidHex(oid)}`);
    for (const source of this.sources(oid, holders, epoch)) {
      try {
        // Without a copy of our own there is nothing to compare: the read alone asks the source
        // whether it vouches for its copy (hashing it first cost a read and a sha1 of 4 MiB).
        const remoteSum = localExists ? await this.peers.ask(source, 'peer.checksum', { oid, force: false, recovery: true }) : undefined;
        await this.takeCopy(source, oid, remoteSum, false, generation);
        return;
      } catch (error) {
        lastError = error;
        if (this.catchUp.isBehind(oid)) throw error; // our own disk failed: no source helps now
      }
    }
    // No holder vouches for its copy (all are recovering): the best-ranked copy wins, ours
    // included, the same choice on every replica (copy-rank.ts). Asking in placement order
    // instead let a node that had just come back hand out its stale copy.
    const selfId = this.group.self.id;
    const history = this.group.epochs.map((e) => ({ epoch: e.epoch, members: e.nodes.map((n) => n.id) }));
    const ownersAt = (e: number) => this.placement.nodes(oid, e).map((n) => n.id);
    const candidates = holders.map((h) => h.id).filter((id) => id !== selfId);
    // A copy behind its peers (a write failed on it here) is never the best there is.
    if (localExists && !this.catchUp.isBehind(oid)) candidates.push(selfId);
    // A better-ranked copy we could not read may be newer than ours: then ours is not the best
    // there is, only the nearest, and the object waits for the next epoch.
    let betterUnread = false;
    for (const id of rankCopies(history, ownersAt, candidates, epoch)) {
      if (id === selfId) {
        if (betterUnread) break;
        if (generation === this.generation) this.markCurrent(oid);
        return;
      }
      const source = holders.find((h) => h.id === id)!;
      try {
        const remoteSum = localExists ? await this.peers.ask(source, 'peer.checksum', { oid, force: true, recovery: true }) : undefined;
        await this.takeCopy(source, oid, remoteSum, true, generation);
        return;
      } catch (error) {
        lastError = error;
        if (this.catchUp.isBehind(oid)) throw error;
        if (asSdError(error).code !== 'NO_OBJECT') betterUnread = true;
      }
    }
    // A strip no holder could give (damaged, unreadable) is decoded from its stripe instead.
    if (isStripOid(oid) && !this.catchUp.isBehind(oid)) return this.rebuildStrip(oid, generation);
    throw lastError;
  }

  private async rebuildStrip(oid: Oid, generation: number): Promise<void> {
    const deps = { ec: this.gateway.ec, placement: this.placement, store: this.store, copyWatch: this.gateway.copyWatch };
    const stored = await rebuildStrip(deps, oid, () => !this.verified.has(oid) && generation === this.generation);
    if (stored === 0) return;
    this.markCurrent(oid);
    this.state.receivedBytes += stored;
  }

  /** Once every member recovered this epoch: drop copies this node does not own any more. */
  async removeStale(epoch: number): Promise<number> {
    if (epoch !== this.epoch || this.state.running) return 0;
    const selfId = this.group.self.id;
    let removed = 0;
    for (const oid of await this.store.list()) {
      if (this.epoch !== epoch) return removed;
      if (this.placement.nodes(oid, epoch).some((n) => n.id === selfId)) continue;
      await this.store.remove(oid);
      removed += 1;
    }
    if (removed > 0) this.log.info({ epoch, removed }, 'removed copies this node no longer owns');
    return removed;
  }
}

function union(a: Set<Oid> | 'all', b: Set<Oid> | 'all'): Set<Oid> | 'all' {
  if (a === 'all' || b === 'all') return 'all';
  return new Set([...a, ...b]);
}
