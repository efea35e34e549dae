// Object requests → every replica. Placement (placement.ts) comes from the current epoch's ring;
// reads fall back to earlier epochs' placements (an object not yet recovered is read from where
// it still is); a write that loses a replica waits for the next epoch and is retried on the new
// placement.
//
// DESIGN: durability (docs/durability.md). A write is acknowledged once every replica of the
// current epoch has it: `cached`, in its OS cache (it survives kill -9 of every sheep and the
// loss of copies−1 hosts); otherwise on its disk. `flush(vid)` (flush.ts) makes every cached
// write acknowledged before it durable on every replica's disk, which survives power loss of
// every host. Recovery, catch-up and VDI metadata always write durably.
import type { NodeInfo } from '../cluster/driver.js';
import { SdError, asSdError } from '../engine/errors.js';
import { coordinatorWaitMs, epochCatchUpMs } from '../engine/limits.js';
import { isInodeOid, oidHex, oidVid, type Oid, type Vid } from '../engine/oid.js';
import type { Clock } from '../io/clock.js';
import type { LocalStore } from '../store/md-store.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';
import type { Placement } from './placement.js';
import { decodeOids } from '../rpc/oid-list.js';
import { CopyWatch } from './copy-watch.js';
import { EcGateway } from './ec-gateway.js';
import { decodeStripHeader, isStagedOid, isStripOid, stagedOid, stripOid } from '../engine/ec-layout.js';
import { sumBlockBytes, sumsOf, sumsSentBytesMax } from '../store/block-sums.js';
import { flushEverywhere } from './flush.js';

const writeAttemptsMax = 5;
/** A read or removal re-planned after a peer reported a newer epoch, at most this often. */
const replanAttemptsMax = 3;
/** How long a read waits for recovery to verify the only copies of an object. */
const recoveringReadWaitMs = 10_000;
const recoveringReadPollMs = 100;


export class Gateway {
  /** Set by the owner: whether the local copy of an object may be served (see recovery.ts). */
  localIsCurrent: (oid: Oid) => boolean = () => true;
  /** Our copy missed a write that failed here (catch-up.ts); never served unless forced. */
  localIsBehind: (oid: Oid) => boolean = () => false;
  /** A write of our copy failed: its outcome on the other replicas is unknown. */
  onFailedWrite: (oid: Oid, cause: string) => void = () => undefined;
  onWholeWrite: (oid: Oid) => void = () => undefined;
  /** When clients last did I/O through this node (recovery yields to them). */
  lastClientIoMs = 0;
  /** A read found our copy still being verified. */
  onBusyRead: (oid: Oid) => void = () => undefined;
  /** Resolves when a replica write may be applied to our copies (recovery.ts `suspectsKnown`). */
  localWritable: () => Promise<void> = async () => undefined;
  /** Replica writes reaching our store, for recovery and catch-up copying an object meanwhile. */
  readonly copyWatch = new CopyWatch();
  /** Our copy failed its checksums (read repair takes it from here: catch-up.ts). */
  onDamaged: (oid: Oid, problem: string) => void = () => undefined;
  /** Why our copy must not be served, while it waits to be repaired. */
  localDamage: (oid: Oid) => string | undefined = () => undefined;

  constructor(
    private readonly group: Group,
    private readonly store: LocalStore,
    private readonly peers: Peers,
    private readonly clock: Clock,
    private readonly placement: Placement,
  ) {
    this.ec = new EcGateway(this, placement, group, clock);
  }

  /** Objects of erasure-coded VDIs: cut in strips, each read and written through this class. */
  readonly ec: EcGateway;

  /**
   * Reads a verified copy: current placement first, then earlier epochs'. When the only copies
   * are still being verified by recovery, waits for it (a read never returns stale data while a
   * current copy may yet appear); after `recoveringReadWaitMs` the copies under recovery are all
   * there is, and one is read as it stands.
   */
  async read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    await this.group.coordinator.admit(coordinatorWaitMs);
    this.group.requireRunning();
    this.placement.checkRange(oid, offsetBytes, lengthBytes);
    this.lastClientIoMs = this.clock.nowMs();
    if (this.isStriped(oid)) return this.ec.read(oid, offsetBytes, lengthBytes);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.readPlanned(oid, offsetBytes, lengthBytes);
      } catch (error) {
        // A peer is on a newer epoch, which we have now reached (peers.ts): plan again.
        if (!isEpochRefusal(error) || attempt >= replanAttemptsMax) throw error;
      }
    }
  }

  private async readPlanned(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    // The wait is measured on the clock, passes included: a pass that waits on unreachable
    // replicas can take a request timeout, and counting only the pauses once let a read run for
    // more than half an hour (seed 10 of the full fault mix).
    const startedMs = this.clock.nowMs();
    let outcome = await this.readPass(oid, offsetBytes, lengthBytes, false);
    while (outcome.busy && this.clock.nowMs() - startedMs < recoveringReadWaitMs) {
      await this.clock.sleep(recoveringReadPollMs);
      // Reported left meanwhile: this node's view is no basis for a read any more.
      this.group.requireRunning();
      outcome = await this.readPass(oid, offsetBytes, lengthBytes, false);
    }
    // Copies under recovery are read as they stand only when they are all there is: a replica
    // we could not reach may hold a newer one (a node cut off from its peers must not serve its
    // own stale copy).
    if (outcome.busy && outcome.error.code === 'NO_OBJECT') outcome = await this.readPass(oid, offsetBytes, lengthBytes, true);
    if (outcome.data) return outcome.data;
    const error = outcome.error;
    if (error.code === 'CORRUPT') throw new SdError('IO', `no copy of object ${oidHex(oid)} passes its checksums (${error.message})`);
    throw error.code === 'NO_OBJECT' || error.code === 'NETWORK' ? error : new SdError('IO', error.message);
  }

  private async readPass(
    oid: Oid,
    offsetBytes: number,
    lengthBytes: number,
    force: boolean,
  ): Promise<{ data: Buffer; busy: false } | { data?: undefined; busy: boolean; error: SdError }> {
    // "No object" only when every replica asked said so: one that could not be reached may hold
    // it, and a read must then fail, never pass for a hole (zeros).
    let error: SdError | undefined;
    let busy = false;
    const tried = new Set<string>();
    for (let epoch = this.group.epoch; epoch >= 1; epoch--) {
      const nodes = this.placement.nodes(oid, epoch).filter((n) => !tried.has(n.id));
      // Prefer our own copy: no network hop.
      nodes.sort((a, b) => Number(b.id === this.group.self.id) - Number(a.id === this.group.self.id));
      for (const node of nodes) {
        tried.add(node.id);
        if (epoch !== this.group.epoch && !this.group.members.some((m) => m.id === node.id)) continue;
        try {
          return { data: await this.peerRead(node, oid, offsetBytes, lengthBytes, force), busy: false };
        } catch (caught) {
          const sd = asSdError(caught);
          if (isEpochRefusal(sd)) throw sd;
          if (sd.code === 'BUSY' || sd.code === 'BEHIND') busy = true;
          else if (sd.code !== 'NO_OBJECT') error ??= sd;
        }
      }
    }
    return { busy, error: error ?? new SdError('NO_OBJECT', `no object ${oidHex(oid)}`) };
  }

  /** `cached`: acknowledged once in every replica's OS cache (see the top of this file). */
  async write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean, cached = false): Promise<void> {
    await this.group.coordinator.admit(coordinatorWaitMs);
    this.group.requireRunning();
    this.lastClientIoMs = this.clock.nowMs();
    this.placement.checkRange(oid, offsetBytes, data.length);
    if (this.isStriped(oid)) return this.ec.write(oid, offsetBytes, data, create);
    const sizeBytes = this.placement.objectSizeBytes(oid);
    // A whole object's block sums are made once, here, and travel with it to every replica.
    const whole = offsetBytes === 0 && data.length === sizeBytes && (sizeBytes / sumBlockBytes) * 4 <= sumsSentBytesMax;
    const sums = whole && this.store.keepsSums ? sumsOf(data) : undefined;
    for (let attempt = 1; ; attempt++) {
      const epoch = this.group.epoch;
      const nodes = this.placement.nodes(oid, epoch);
      if (nodes.length === 0) throw new SdError('NO_SPACE', 'no node stores data');
      const results = await Promise.allSettled(
        nodes.map((node) => this.writeReplica(node, oid, offsetBytes, data, create, sizeBytes, sums, cached)),
      );
      const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (!failure) return;
      const error = asSdError(failure.reason);
      if ((error.code !== 'NETWORK' && !isEpochRefusal(error)) || attempt >= writeAttemptsMax) throw error;
      // A lost replica: the next epoch, which reports it gone. A replica on a newer epoch: that
      // epoch, which peers.ts already waited for. Either way the write is planned again.
      if (error.code === 'NETWORK') await this.group.waitForEpoch(epoch + 1, epochCatchUpMs);
    }
  }

  private async writeReplica(
    node: NodeInfo,
    oid: Oid,
    offsetBytes: number,
    data: Buffer,
    create: boolean,
    sizeBytes: number,
    sums: Buffer | undefined,
    cached: boolean,
  ): Promise<void> {
    const whole = offsetBytes === 0 && data.length === sizeBytes;
    try {
      await this.peerWrite(node, oid, offsetBytes, data, whole || create, sums, cached);
    } catch (error) {
      if (asSdError(error).code !== 'NO_OBJECT') throw error;
      // This replica lacks an object others have (it joined since): give it the whole object
      // first, so a partial write never makes a sparse copy that hides older data.
      const full = await this.wholeObjectFor(node, oid, sizeBytes, create);
      data.copy(full, offsetBytes);
      await this.peerWrite(node, oid, 0, full, true, undefined, cached);
    }
  }

  /**
   * The current object to extend a partial write into. A create of an object that no other
   * member holds starts from zeros; one that some member holds but nobody could serve yet (its
   * copies not verified) is an error for the writer to retry, never a zero-filled copy.
   */
  private async wholeObjectFor(target: NodeInfo, oid: Oid, sizeBytes: number, create: boolean): Promise<Buffer> {
    try {
      return await this.read(oid, 0, sizeBytes);
    } catch (error) {
      if (!create || asSdError(error).code !== 'NO_OBJECT') throw error;
    }
    const others = (await this.holders(oid)).filter((n) => n.id !== target.id);
    if (others.length === 0) return Buffer.alloc(sizeBytes);
    // Other replicas of this very write may have created it meanwhile: read once more.
    return this.read(oid, 0, sizeBytes);
  }

  /** Removes the object everywhere, stale copies of earlier epochs included. */
  /** Removes every member's copy; false if a member could not be reached (it keeps its copy). */
  async remove(oid: Oid): Promise<boolean> {
    await this.group.coordinator.admit(coordinatorWaitMs);
    this.group.requireRunning();
    const policy = this.isStriped(oid) ? this.placement.ecPolicy(oid) : undefined;
    if (policy) {
      const strips = Array.from({ length: policy.data + policy.parity }, (_, i) => stripOid(oid, i)).flatMap((s) => [this.remove(s), this.remove(stagedOid(s))]);
      return (await Promise.all(strips)).every(Boolean);
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.removeEverywhere(oid);
      } catch (error) {
        if (!isEpochRefusal(error) || attempt >= replanAttemptsMax) throw error;
      }
    }
  }

  private async removeEverywhere(oid: Oid): Promise<boolean> {
    const reached = await Promise.all(
      this.group.members
        .filter((node) => node.vnodes > 0)
        .map(async (node) => {
          try {
            await this.peerRemove(node, oid);
            return true;
          } catch (error) {
            if (asSdError(error).code !== 'NETWORK') throw error;
            return false;
          }
        }),
    );
    return reached.every(Boolean);
  }

  /** Which members hold a copy right now. */
  async holders(oid: Oid): Promise<NodeInfo[]> {
    const found = await Promise.all(
      this.group.members.map(async (node) => {
        try {
          return (await this.peerExists(node, oid)) ? node : undefined;
        } catch {
          return undefined;
        }
      }),
    );
    return found.filter((n): n is NodeInfo => n !== undefined);
  }

  /** Commits a strip staged by a write, on the strip's node (ec-gateway.ts). */
  async commitStrip(strip: Oid, generation: bigint): Promise<void> {
    const node = this.placement.nodes(strip)[0];
    if (!node) throw new SdError('NO_SPACE', 'no node stores data');
    if (this.isSelf(node)) {
      await this.commitStripLocal(strip, generation);
      return;
    }
    await this.peers.call(node, 'peer.ec-commit', { oid: strip, generation: String(generation) });
  }

  /** Our staged copy of `strip` becomes the strip (a whole write, as a replica's), then goes. */
  async commitStripLocal(strip: Oid, generation: bigint): Promise<null> {
    if (!isStripOid(strip) || isStagedOid(strip)) throw new SdError('INVALID_ARGUMENT', `${oidHex(strip)} is not a strip`);
    const staged = stagedOid(strip);
    const bytes = await this.localRead(staged, 0, this.placement.objectSizeBytes(staged), true);
    if (decodeStripHeader(bytes)?.generation !== generation) throw new SdError('NO_OBJECT', `no staged ${oidHex(strip)} of generation ${generation}`);
    await this.localWrite(strip, 0, bytes, true);
    await this.store.remove(staged);
    return null;
  }

  /** A data object of an erasure-coded VDI (not one of its strips, which are plain objects). */
  private isStriped(oid: Oid): boolean {
    return !isStripOid(oid) && this.placement.ecPolicy(oid) !== undefined;
  }

  // ---- one replica: local store or a peer ----------------------------------------------

  private isSelf(node: NodeInfo): boolean {
    return node.id === this.group.self.id;
  }

  private async peerRead(node: NodeInfo, oid: Oid, offsetBytes: number, lengthBytes: number, force: boolean): Promise<Buffer> {
    if (this.isSelf(node)) return this.localRead(oid, offsetBytes, lengthBytes, force);
    return this.peers.call(node, 'peer.read', { oid, offset: offsetBytes, length: lengthBytes, force });
  }

  private async peerWrite(
    node: NodeInfo,
    oid: Oid,
    offsetBytes: number,
    data: Buffer,
    create: boolean,
    sums: Buffer | undefined,
    cached: boolean,
  ): Promise<void> {
    if (this.isSelf(node)) return this.localWrite(oid, offsetBytes, data, create, sums, cached);
    // Peers stamps `from`: if this node dies mid-write, the replicas learn which objects to reconcile.
    await this.peers.call(node, 'peer.write', { oid, offset: offsetBytes, create, sums, cached }, data);
  }

  /** Makes every cached write to VDI `vid` acknowledged so far durable on every member. */
  async flush(vid: Vid): Promise<void> {
    await this.group.coordinator.admit(coordinatorWaitMs);
    this.group.requireRunning();
    await flushEverywhere(this.group, this.peers, vid, (v) => this.localFlush(v));
  }

  /** Syncs our cached writes to VDI `vid`'s objects; answers how many objects. */
  localFlush(vid: Vid): Promise<number> {
    return this.store.flush((oid) => oidVid(oid) === vid);
  }

  /** The objects a member holds (only inode objects, if asked): ours from disk, a peer's by rpc. */
  async listObjects(node: NodeInfo, inodesOnly: boolean): Promise<Oid[]> {
    const oids = this.isSelf(node)
      ? await this.store.list()
      : decodeOids(await this.peers.ask(node, 'peer.list', { inodesOnly }));
    return inodesOnly ? oids.filter(isInodeOid) : oids;
  }

  /** The checksum of our copy, on the terms of `localRead`. */
  async localChecksum(oid: Oid, sizeBytes: number, force: boolean, fresh = false): Promise<string> {
    await this.checkServable(oid, force);
    return this.checked(oid, () => this.store.checksum(oid, sizeBytes, fresh));
  }

  /** A read of our copy; one not yet verified by recovery is reported missing unless forced. */
  async localRead(oid: Oid, offsetBytes: number, lengthBytes: number, force: boolean): Promise<Buffer> {
    this.placement.checkRange(oid, offsetBytes, lengthBytes);
    await this.checkServable(oid, force);
    return this.checked(oid, () => this.store.read(oid, offsetBytes, lengthBytes));
  }

  /** A local read that finds our copy damaged reports it (once per damage) and fails CORRUPT. */
  private async checked<T>(oid: Oid, read: () => Promise<T>): Promise<T> {
    try {
      return await read();
    } catch (error) {
      const sd = asSdError(error);
      if (sd.code === 'CORRUPT') this.onDamaged(oid, sd.message);
      throw error;
    }
  }

  private async checkServable(oid: Oid, force: boolean): Promise<void> {
    // Damaged is never served, not even forced: nothing wrong is ever returned.
    const damage = this.localDamage(oid);
    if (damage !== undefined) throw new SdError('CORRUPT', damage);
    if (!force && !this.localIsCurrent(oid)) {
      if (this.localIsBehind(oid)) throw new SdError('BEHIND', `copy of ${oidHex(oid)} missed a write that failed here`);
      if (await this.store.exists(oid)) {
        this.onBusyRead(oid);
        throw new SdError('BUSY', `copy of ${oidHex(oid)} is being recovered`);
      }
      throw new SdError('NO_OBJECT', `no object ${oidHex(oid)}`);
    }
  }

  /** A replica's write: the object's size is this node's to know (placement), not the sender's. */
  async localWrite(oid: Oid, offsetBytes: number, data: Buffer, create: boolean, sums?: Buffer, cached = false): Promise<void> {
    this.placement.checkRange(oid, offsetBytes, data.length);
    await this.localWritable();
    const sizeBytes = this.placement.objectSizeBytes(oid);
    if (offsetBytes === 0 && data.length === sizeBytes) {
      if (sums !== undefined && sums.length !== Math.ceil(data.length / sumBlockBytes) * 4) {
        throw new SdError('INVALID_ARGUMENT', `${sums.length} bytes of block sums for ${data.length} bytes of data`);
      }
      await this.copyWatch.writing(oid, async () => {
        await this.diskWrite(oid, () => this.store.writeWhole(oid, data, sizeBytes, sums, cached));
        this.onWholeWrite(oid);
      });
      return;
    }
    // A copy not verified yet takes whole writes only, even with `create`: inode table updates
    // always say create, and a partial write here would make a copy holding only that range
    // (the rest zeros) that then counted as current. The gateway sends the whole object instead.
    if (!this.localIsCurrent(oid)) throw new SdError('NO_OBJECT', `copy of ${oidHex(oid)} is being recovered`);
    if (!create && !(await this.store.exists(oid))) throw new SdError('NO_OBJECT', `no object ${oidHex(oid)}`);
    return this.copyWatch.writing(oid, () => this.diskWrite(oid, () => this.store.writeRange(oid, offsetBytes, data, sizeBytes, cached)));
  }

  /**
   * A write our disk failed may have landed on the other replicas: our copy is behind theirs
   * until it catches up, so two replicas never serve different contents.
   */
  private async diskWrite(oid: Oid, write: () => Promise<void>): Promise<void> {
    try {
      await write();
    } catch (error) {
      const sd = asSdError(error);
      if (sd.code === 'IO' || sd.code === 'NO_SPACE') this.onFailedWrite(oid, sd.message);
      if (sd.code === 'CORRUPT') this.onDamaged(oid, sd.message); // a partial write into a damaged block
      throw error;
    }
  }

  private async peerRemove(node: NodeInfo, oid: Oid): Promise<void> {
    if (this.isSelf(node)) {
      await this.store.remove(oid);
      return;
    }
    await this.peers.call(node, 'peer.remove', { oid });
  }

  /** Whether our store has a file for `oid`, good or not. */
  holds(oid: Oid): Promise<boolean> {
    return this.store.exists(oid);
  }

  private async peerExists(node: NodeInfo, oid: Oid): Promise<boolean> {
    if (this.isSelf(node)) return this.store.exists(oid);
    return this.peers.ask(node, 'peer.exists', { oid });
  }
}

/** A peer refused a request for its epoch: re-plan (after catching up) and try again. */
function isEpochRefusal(error: unknown): boolean {
  const code = asSdError(error).code;
  return code === 'OLD_EPOCH' || code === 'NEW_EPOCH';
}
