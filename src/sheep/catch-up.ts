// Copies a local write failed on (EIO, ENOSPC, a broken journal) while the other replicas may have
// taken it: this copy is behind theirs. Until it catches up it is never served as current (a
// reader goes to a replica that has the write; when every copy is behind, the reader waits, then
// reads one as it stands), and a partial write to it is refused so the gateway sends the whole
// object. It catches up from a replica that vouches for its copy; when every other owner is
// behind too, they all missed the same writes, and the first behind owner in placement order
// keeps its own copy, as suspects are settled (recovery.ts).
import type { NodeInfo } from '../cluster/driver.js';
import { SdError, asSdError } from '../engine/errors.js';
import { behindObjectsMax, catchUpFirstMs, catchUpLongestMs } from '../engine/limits.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Clock } from '../io/clock.js';
import type { Log } from '../io/log.js';
import type { LocalStore } from '../store/md-store.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';
import type { CopyWatch } from './copy-watch.js';
import type { Placement } from './placement.js';
import { RetryLoop } from './retry-loop.js';

export class CatchUp {
  private readonly behind = new Set<Oid>();
  /** Behind because our copy failed its checksums (and why): never served, never kept. */
  private readonly damaged = new Map<Oid, string>();
  /** A damaged copy was rewritten from another replica's (read repair). */
  onRepaired: (oid: Oid, from: NodeInfo) => void = () => undefined;
  /** More failed than could be tracked: every local copy counts as behind until a full pass. */
  private allBehind = false;
  /** Times the cap was passed: a pass clears `allBehind` only if none happened during it. */
  private overflows = 0;
  private readonly loop: RetryLoop;
  private stopped = false;

  constructor(
    private readonly group: Group,
    private readonly store: LocalStore,
    private readonly placement: Placement,
    private readonly peers: Peers,
    private readonly copyWatch: CopyWatch,
    private readonly clock: Clock,
    private readonly log: Log,
    /** Our copy of `oid` is now current (written whole from a good copy, or kept). */
    private readonly onCaughtUp: (oid: Oid) => void,
  ) {
    this.loop = new RetryLoop(clock, catchUpFirstMs, catchUpLongestMs, () => this.pass());
  }

  isBehind(oid: Oid): boolean {
    return this.allBehind || this.behind.has(oid);
  }

  /** Why our copy of `oid` must not be served, when it failed its checksums. */
  damage(oid: Oid): string | undefined {
    return this.damaged.get(oid);
  }

  /** Our copy failed its checksums: it is behind, and is rewritten from a replica that vouches for its own. */
  markDamaged(oid: Oid, problem: string): void {
    if (!this.damaged.has(oid)) {
      this.log.error({ oid: oidHex(oid), node: this.group.self.id, err: problem }, 'copy fails its checksum: it is repaired from another replica');
      if (this.damaged.size < behindObjectsMax) this.damaged.set(oid, problem);
    }
    this.markBehind(oid, problem, true);
  }

  /** A write of `oid` failed here: its outcome on the other replicas is unknown. */
  markBehind(oid: Oid, cause: string, quiet = false): void {
    if (!this.behind.has(oid)) {
      if (this.behind.size >= behindObjectsMax) {
        if (!this.allBehind) this.log.error({ tracked: this.behind.size }, 'too many failed writes to track: every local copy counts as behind');
        this.allBehind = true;
        this.overflows += 1;
      } else {
        this.behind.add(oid);
        if (!quiet) this.log.warn({ oid: oidHex(oid), err: cause }, 'a write failed here: this copy is behind until it catches up');
      }
    }
    this.loop.request();
  }

  /** A copy that was behind is current again (the store forgets it was lost with the power). */
  onNoLongerBehind: (oid: Oid) => void = () => undefined;

  /** Our copy became current another way (a whole write, recovery). */
  caughtUp(oid: Oid): void {
    if (this.behind.delete(oid)) this.onNoLongerBehind(oid);
    this.damaged.delete(oid);
  }

  /** Rewrites our copy of `oid` from `sourceId`'s, now (check and repair, scrub). */
  async repairFrom(oid: Oid, sourceId: string): Promise<void> {
    const source = this.group.members.find((m) => m.id === sourceId);
    if (!source) throw new SdError('NODE_NOT_FOUND', `no node ${sourceId} in the cluster`);
    const data = await this.peers.ask(source, 'peer.read', { oid, offset: 0, length: this.placement.contentBytes(oid), force: false, recovery: true });
    await this.store.writeWhole(oid, data, this.placement.objectSizeBytes(oid));
    this.log.info({ oid: oidHex(oid), node: this.group.self.id, from: source.id }, 'repaired a copy from another replica');
    this.onRepaired(oid, source);
    this.caughtUp(oid);
    this.onCaughtUp(oid);
  }

  stop(): void {
    this.stopped = true;
    this.loop.stop();
  }

  /** One pass over the behind copies; true when none is left. */
  private async pass(): Promise<boolean> {
    if (this.group.status !== 'running') return false;
    try {
      const wasAll = this.allBehind;
      const overflows = this.overflows;
      let overflowed = false;
      const oids = wasAll ? await this.store.list() : [...this.behind];
      let left = 0;
      for (const oid of oids) {
        if (this.stopped) return true;
        if (!wasAll && !this.behind.has(oid)) continue; // caught up meanwhile
        if (!(await this.catchUpOne(oid))) {
          left += 1;
          if (!wasAll) continue;
          if (this.behind.size < behindObjectsMax) this.behind.add(oid);
          else overflowed = true;
        }
      }
      if (wasAll && !overflowed && this.overflows === overflows) this.allBehind = false;
      return left === 0 && !this.allBehind;
    } catch (error) {
      this.log.warn({ err: asSdError(error).message }, 'catching up behind copies failed');
      return false;
    }
  }

  /** True once our copy of `oid` needs nothing more. */
  private async catchUpOne(oid: Oid): Promise<boolean> {
    const selfId = this.group.self.id;
    const owners = this.placement.nodes(oid).filter((n) => this.group.members.some((m) => m.id === n.id));
    if (!owners.some((n) => n.id === selfId)) {
      // Not ours any more: the copy stays unserved until the stale-copy removal takes it.
      return !(await this.store.exists(oid));
    }
    const behindPeers: NodeInfo[] = [];
    let undecided = false;
    for (const node of owners) {
      if (node.id === selfId) continue;
      const watch = this.copyWatch.watch(oid);
      try {
        const size = this.placement.objectSizeBytes(oid);
        const data = await this.peers.ask(node, 'peer.read', { oid, offset: 0, length: this.placement.contentBytes(oid), force: false, recovery: true });
        // A replica write began meanwhile: newer than what we read (copy-watch.ts). A whole one
        // catches our copy up by itself; otherwise the next pass tries again.
        if (watch.written) return !this.isBehind(oid);
        await this.store.writeWhole(oid, data, size);
        if (this.damaged.has(oid)) {
          this.log.info({ oid: oidHex(oid), node: selfId, from: node.id }, 'repaired a damaged copy from another replica');
          this.onRepaired(oid, node);
        }
        this.caughtUp(oid);
        this.onCaughtUp(oid);
        return true;
      } catch (error) {
        const code = asSdError(error).code;
        if (code === 'BEHIND') behindPeers.push(node);
        else undecided = true; // recovering, unreachable, or a disk still failing here
      } finally {
        watch.release();
      }
    }
    if (undecided) return false;
    // Every other owner is behind as well: the first behind owner in placement order keeps its
    // copy, and the others take it from there once it vouches for it.
    const first = owners.find((n) => n.id === selfId || behindPeers.some((b) => b.id === n.id));
    if (first?.id !== selfId || this.damaged.has(oid)) return false; // a damaged copy is never kept
    this.caughtUp(oid);
    this.onCaughtUp(oid);
    return true;
  }
}
