// VDI create / snapshot / clone / rollback / delete / resize, ordered cluster-wide: each runs in
// the driver's critical section (block), does its object work, and publishes the registry change
// with unblock, so two racing requests never allocate one VID twice or leave a half-made VDI.
import type { ClusterDriver } from '../cluster/driver.js';
import { SdError, asSdError } from '../engine/errors.js';
import { reclaimRetryFirstMs, reclaimRetryLongestMs, registryDurableWaitMs, tableEntriesPerChunk } from '../engine/limits.js';
import { asVid, inodeOid, isInodeOid, oidIndex, oidVid, type Oid } from '../engine/oid.js';
import {
  checkObjectInVdi,
  planClone,
  planCreate,
  planResize,
  planRollback,
  planSnapshot,
  tableEntriesInChunk,
  type SnapshotRef,
  type VdiEntry,
} from '../engine/vdi.js';
import type { Gateway } from './gateway.js';
import type { Group, GroupMessage, RegistryDurability } from './group.js';
import type { Clock } from '../io/clock.js';
import type { Peers } from './peers.js';
import { RetryLoop } from './retry-loop.js';
import { ecConfig } from './ec-config.js';
import { recyclableVids } from './vdi-recycle.js';

function notDurable(node: string, why: string): SdError {
  return new SdError('NOT_DURABLE', `the VDI registry change could not be stored on ${node}: ${why}`);
}

export interface VdiUsage {
  entry: VdiEntry;
  usedBytes: number;
  sharedBytes: number;
}

export class VdiService {
  constructor(
    private readonly group: Group,
    private readonly driver: ClusterDriver,
    private readonly gateway: Gateway,
    private readonly peers: Peers,
    private readonly nowSec: () => number,
    private readonly log: { warn(o: object, m?: string): void; info(o: object, m?: string): void },
    clock: Clock,
  ) {
    this.reclaimRetry = new RetryLoop(clock, reclaimRetryFirstMs, reclaimRetryLongestMs, async () => {
      if (this.group.status !== 'running') return false;
      try {
        return (await this.reclaimReturned()).complete;
      } catch (error) {
        this.log.warn({ err: asSdError(error).message }, 'reclaim failed; trying again later');
        return false;
      }
    });
  }

  private readonly reclaimRetry: RetryLoop;

  /** Runs `plan` holding the cluster lock; its entries are published as the lock is released. */
  private async critical(plan: () => Promise<VdiEntry[]>): Promise<VdiEntry[]> {
    let entries: VdiEntry[] = [];
    await this.criticalMessage(async () => {
      entries = await plan();
      return entries.length > 0 ? { type: 'vdi', entries } : undefined;
    });
    return entries;
  }

  /**
   * Runs `plan` holding the cluster lock; the registry change it returns is published as the
   * lock is released, and acknowledged once every member stored it.
   */
  async criticalMessage(plan: () => Promise<GroupMessage | undefined>): Promise<void> {
    this.group.requireRunning();
    await this.driver.block();
    let message: GroupMessage | undefined;
    let failure: unknown;
    try {
      message = await plan();
    } catch (error) {
      failure = error;
    }
    await this.driver.unblock((message ?? { type: 'noop' }) as never);
    await this.driver.sync();
    if (failure !== undefined) throw failure;
    await this.group.flushed();
    if (message !== undefined) await this.confirmDurable(this.group.registry.version);
  }

  /**
   * The change is acknowledged only once every member has it on disk (or has left): a member
   * that could not store it would otherwise bring the older registry back after a restart.
   */
  private async confirmDurable(version: number): Promise<void> {
    const pending = new Map(this.group.members.map((node) => [node.id, node]));
    for (let epoch = this.group.epoch; pending.size > 0; ) {
      const unreachable: string[] = [];
      await Promise.all(
        [...pending.values()].map(async (node) => {
          let answer: RegistryDurability;
          try {
            answer = node.id === this.group.self.id
              ? await this.group.registryDurable(version, registryDurableWaitMs)
              : await this.peers.ask(node, 'peer.registry-durable', { version });
          } catch (error) {
            if (asSdError(error).code !== 'NETWORK') throw error;
            unreachable.push(node.id);
            return;
          }
          if (answer.durable) pending.delete(node.id);
          else throw notDurable(node.id, answer.fault ?? `not stored within ${registryDurableWaitMs} ms`);
        }),
      );
      if (pending.size === 0) return;
      // A member that does not answer is either leaving (then it no longer counts) or the change
      // cannot be confirmed.
      const next = await this.group.epochAfter(epoch, registryDurableWaitMs);
      if (next === epoch) throw notDurable(unreachable[0]!, 'the node does not answer');
      epoch = next;
      for (const id of [...pending.keys()]) if (!this.group.members.some((m) => m.id === id)) pending.delete(id);
    }
  }

  async lookup(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    try {
      return this.group.registry.lookup(name, ref);
    } catch (error) {
      // A change made through another node may not have reached us yet.
      await this.driver.sync();
      return this.group.registry.lookup(name, ref);
    }
  }

  /**
   * A client's object request names an object of a VDI that exists (a write: one not deleted),
   * within its size. A VDI made or grown through another node may not have reached us yet: on
   * a refusal, sync once and check again. The gateway's own table writes (snapshot, clone) come
   * before their entry and skip this.
   */
  async checkClientObject(oid: Oid, write: boolean): Promise<void> {
    const check = () => {
      const vid = oidVid(oid);
      const entry = this.group.registry.get(vid);
      if (!entry || (write && entry.deleted)) throw new SdError('NO_VDI', `no VDI with id ${vid.toString(16)}`);
      checkObjectInVdi(entry, oid);
    };
    try {
      check();
    } catch {
      await this.driver.sync();
      check();
    }
  }

  async create(request: { name: string; sizeBytes: number; copies?: number | undefined; copyPolicy?: number | undefined; hyper: boolean }): Promise<VdiEntry> {
    // A cluster of gateways stores nothing: the original failed writing the new inode.
    if (this.group.ring().zoneCount === 0) throw new SdError('VDI_WRITE', 'Failed to write to requested VDI');
    const [entry] = await this.critical(async () => [
      planCreate(this.group.registry, {
        ...request,
        // No -c: the cluster's redundancy, erasure coding included (new VDIs inherit it).
        ...(request.copies === undefined
          ? { copies: this.group.config!.copies, copyPolicy: this.group.config!.copyPolicy }
          : { copies: request.copies, copyPolicy: ecConfig({ copies: request.copies, copyPolicy: request.copyPolicy, strict: false }).copyPolicy }),
        blockSizeShift: this.group.config!.blockSizeShift,
        nowSec: this.nowSec(),
      }),
    ]);
    return entry!;
  }

  async snapshot(name: string, tag: string): Promise<VdiEntry> {
    const entries = await this.critical(async () => {
      const { frozen, working } = planSnapshot(this.group.registry, name, tag, this.nowSec());
      // The frozen objects hold every write cached before the snapshot: on the disk now, so a
      // snapshot never changes, not even with the power (docs/durability.md).
      await this.gateway.flush(asVid(frozen.vid));
      await this.copyTable(frozen, working);
      return [frozen, working];
    });
    return entries[0]!;
  }

  async clone(source: string, ref: SnapshotRef, target: string, copies: number | undefined): Promise<VdiEntry> {
    const [entry] = await this.critical(async () => {
      const snapshot = this.group.registry.lookup(source, ref);
      const clone = planClone(this.group.registry, snapshot, target, this.nowSec(), copies);
      await this.copyTable(snapshot, clone);
      return [clone];
    });
    return entry!;
  }

  async rollback(name: string, ref: SnapshotRef): Promise<VdiEntry> {
    const entries = await this.critical(async () => {
      const snapshot = this.group.registry.lookup(name, ref);
      if (snapshot.snapshotSec === 0) throw new SdError('NO_TAG', 'Failed to find requested tag');
      const { retired, working } = planRollback(this.group.registry, name, snapshot, this.nowSec());
      await this.copyTable(snapshot, working);
      return retired ? [retired, working] : [working];
    });
    await this.reclaimOrRetry();
    return entries.at(-1)!;
  }

  async remove(name: string, ref: SnapshotRef): Promise<void> {
    await this.critical(async () => {
      const entry = this.group.registry.lookup(name, ref);
      return [{ ...entry, deleted: true }];
    });
    await this.reclaimOrRetry();
  }

  async resize(name: string, sizeBytes: number): Promise<VdiEntry> {
    const [entry] = await this.critical(async () => [planResize(this.group.registry.lookup(name, undefined), sizeBytes)]);
    return entry!;
  }

  /**
   * Which owner-table chunks exist anywhere, by VID: one listing per member instead of a failed
   * read per missing chunk (a hyper VDI has up to 4096 chunks, nearly all never written).
   */
  private async existingTableChunks(): Promise<Map<number, number[]>> {
    const chunks = new Map<number, Set<number>>();
    const add = (oid: Oid) => {
      if (!isInodeOid(oid)) return;
      const set = chunks.get(oidVid(oid)) ?? new Set<number>();
      set.add(oidIndex(oid));
      chunks.set(oidVid(oid), set);
    };
    await Promise.all(
      this.group.members
        .filter((n) => n.vnodes > 0)
        .map(async (node) => (await this.gateway.listObjects(node, true)).forEach(add)),
    );
    return new Map([...chunks].map(([vid, set]) => [vid, [...set].sort((a, b) => a - b)]));
  }

  /** The entries of one chunk that the VDI's size reaches (the rest are 0 for good). */
  private async readTableChunk(entry: VdiEntry, chunk: number): Promise<Uint32Array | undefined> {
    const entries = new Uint32Array(tableEntriesInChunk(entry, chunk));
    if (entries.length === 0) return entries;
    try {
      const bytes = await this.gateway.read(inodeOid(asVid(entry.vid), chunk), 0, entries.byteLength);
      Buffer.from(entries.buffer).set(bytes.subarray(0, entries.byteLength));
      return entries;
    } catch (error) {
      if (asSdError(error).code === 'NO_OBJECT') return undefined;
      throw error;
    }
  }

  /** The new VDI starts with the source's owner table: every object shared until written. */
  private async copyTable(source: VdiEntry, target: VdiEntry): Promise<void> {
    for (const chunk of (await this.existingTableChunks()).get(source.vid) ?? []) {
      const table = await this.readTableChunk(source, chunk);
      if (!table || table.length === 0) continue;
      // The target is new: creating it makes a whole chunk, zeros past the entries written.
      await this.gateway.write(inodeOid(asVid(target.vid), chunk), 0, Buffer.from(table.buffer), true);
    }
  }

  /**
   * Frees what no live VDI can reach: objects of deleted VDIs that no live owner table points
   * at, and the tables of deleted VDIs once nothing of theirs is referenced. The objects are found
   * by listing every member, not through the deleted VDI's table: a replica that was down at the
   * delete brings back data objects whose table was freed meanwhile. A live table that is listed
   * but cannot be read stops the reclaim (its references are unknown).
   */
  async reclaim(): Promise<{ removed: number; complete: boolean }> {
    const registry = this.group.registry;
    const deleted = new Set(registry.all().filter((e) => e.deleted).map((e) => e.vid));
    const existing = await this.existingObjects();
    const candidates = [...existing].filter((oid) => deleted.has(oidVid(oid)));
    if (candidates.length === 0) return { removed: 0, complete: true };
    const tableChunks = new Map<number, number[]>();
    for (const oid of existing) {
      if (isInodeOid(oid)) tableChunks.set(oidVid(oid), [...(tableChunks.get(oidVid(oid)) ?? []), oidIndex(oid)]);
    }
    const referenced = new Map<number, Set<number>>(); // owner vid → indices some live VDI uses
    for (const entry of registry.live()) {
      for (const chunk of tableChunks.get(entry.vid) ?? []) {
        const table = await this.readTableChunk(entry, chunk);
        if (!table) throw new SdError('NO_OBJECT', `owner table ${chunk} of live VID ${entry.vid.toString(16)} is listed but unreadable`);
        // A plain loop: a chunk has 2^20 entries, nearly all 0, and a callback each cost more.
        for (let slot = 0; slot < table.length; slot++) {
          const owner = table[slot]!;
          if (owner === 0 || owner === entry.vid) continue;
          const owned = referenced.get(owner) ?? new Set<number>();
          owned.add(chunk * tableEntriesPerChunk + slot);
          referenced.set(owner, owned);
        }
      }
    }
    let removed = 0;
    let complete = true;
    const tables: Oid[] = [];
    for (const oid of candidates) {
      if (isInodeOid(oid)) tables.push(oid);
      else if (!referenced.get(oidVid(oid))?.has(oidIndex(oid))) {
        complete = (await this.gateway.remove(oid)) && complete;
        removed += 1;
      }
    }
    // A deleted VDI's table goes last, and only once no live VDI shares anything of it.
    for (const oid of tables) if (!referenced.has(oidVid(oid))) complete = (await this.gateway.remove(oid)) && complete;
    if (removed > 0) this.log.info({ removed }, 'reclaimed objects of deleted VDIs');
    return { removed, complete };
  }

  /**
   * The reclaim that follows a delete or rollback; what it could not finish (a member away or
   * cut off) is tried again in the background, so a passing fault leaves no orphans.
   */
  private async reclaimOrRetry(): Promise<void> {
    let complete = false;
    try {
      complete = (await this.reclaim()).complete;
    } finally {
      if (!complete) this.reclaimLater();
    }
    if (complete && this.group.config?.recycleVids) await this.criticalMessage(() => this.recycled());
  }

  /** -R: the VIDs of deleted families of which nothing is left anywhere (vdi-recycle.ts). */
  private async recycled(): Promise<GroupMessage | undefined> {
    if (!this.group.config?.recycleVids || !this.group.registry.all().some((e) => e.deleted)) return undefined;
    const freed = recyclableVids(this.group.registry, await this.existingObjects(), this.group.epochs, this.group.members);
    if (freed.length === 0) return undefined;
    this.log.info({ vids: freed.map((vid) => vid.toString(16)) }, 'VIDs of deleted VDIs free again (-R)');
    return { type: 'vdi', entries: [], freed };
  }

  /** Runs `reclaimReturned` until one pass reached every member (backing off while it fails). */
  reclaimLater(): void {
    this.reclaimRetry.request();
  }

  stop(): void {
    this.reclaimRetry.stop();
  }

  /**
   * After every member finished recovering an epoch: a member that was away at a delete has
   * brought its copies back. Held in the cluster's critical section, so no snapshot, clone or
   * delete changes which tables reference what while the references are read.
   */
  async reclaimReturned(): Promise<{ removed: number; complete: boolean }> {
    if (!this.group.registry.all().some((e) => e.deleted)) return { removed: 0, complete: true };
    let result = { removed: 0, complete: false };
    await this.criticalMessage(async () => {
      result = await this.reclaim();
      return result.complete ? this.recycled() : undefined;
    });
    return result;
  }

  /** Every object some member holds (one listing per member). */
  private async existingObjects(): Promise<Set<Oid>> {
    const found = new Set<Oid>();
    await Promise.all(
      this.group.members
        .filter((n) => n.vnodes > 0)
        .map(async (node) => (await this.gateway.listObjects(node, false)).forEach((oid) => found.add(oid))),
    );
    return found;
  }

  async usage(): Promise<VdiUsage[]> {
    await this.driver.sync();
    const result: VdiUsage[] = [];
    const existing = await this.existingTableChunks();
    for (const entry of this.group.registry.live()) {
      let own = 0;
      let shared = 0;
      for (const chunk of existing.get(entry.vid) ?? []) {
        const table = await this.readTableChunk(entry, chunk);
        if (!table) continue;
        for (const owner of table) {
          if (owner === entry.vid) own += 1;
          else if (owner !== 0) shared += 1;
        }
      }
      const objectBytes = 2 ** entry.blockSizeShift;
      result.push({ entry, usedBytes: own * objectBytes, sharedBytes: shared * objectBytes });
    }
    return result;
  }
}
