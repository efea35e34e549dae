// The objects of a sheep spread over several disks (the original's multi-disk, sheep/store/md.c):
// one ObjectStore per disk directory, behind ObjectStore's own interface, so the daemon does not
// know how many disks it has. Where an object belongs is the weighted ring (engine/md-ring.ts);
// where it is is remembered per object, so a plug or unplug moves objects in the background, one
// at a time, while every object stays readable and writable where it stands. A disk that fails
// (EIO) is taken out by itself; its objects are reported lost for the owner to fetch again from
// the other replicas. See docs/multi-disk.md.
import * as path from 'node:path';
import { SdError, asSdError } from '../engine/errors.js';
import { mdDisksMax } from '../engine/limits.js';
import { MdRing } from '../engine/md-ring.js';
import { oidHex, parseOid, type Oid } from '../engine/oid.js';
import type { Clock } from '../io/clock.js';
import type { Disk } from '../io/disk.js';
import type { Log } from '../io/log.js';
import { ObjectStore, type OpenResult } from './object-store.js';
import { OidGate } from './oid-gate.js';

/**
 * Every public member of ObjectStore, which the daemon is written against. MdStore implements
 * it, so a member added to ObjectStore fails to compile here until MdStore forwards it too.
 */
export type LocalStore = { [K in keyof ObjectStore]: ObjectStore[K] };

/** One disk as `dog node md info` shows it. */
export interface MdDiskData {
  index: number;
  path: string;
  sizeBytes: number;
  usedBytes: number;
  availableBytes: number;
}

/** A disk failed and was taken out: the objects it held, and how many disks are left. */
export interface MdDiskFailure {
  path: string;
  cause: string;
  lost: Oid[];
  disksLeft: number;
}

type DiskState = 'in' | 'leaving' | 'failed';

interface MdDisk {
  path: string;
  sizeBytes: number;
  store: ObjectStore;
  state: DiskState;
}

export interface MdStoreOptions {
  /** Object directories, in the order given (the first one's ring identity is its path). */
  dirs: readonly string[];
  /** The meta store (epochs, config, registry): never plugged as an object disk. */
  metaDir: string;
  disk: Disk;
  clock: Clock;
  log: Log;
  blockSums?: boolean;
  /**
   * Take a failing disk out (a sheep started with a disk list). Without, an I/O error only fails
   * its request, as on a one-directory sheep, which would otherwise leave at its first EIO.
   */
  failover: boolean;
  /** This machine's boot id, for each disk's dirty set (object-store.ts). */
  bootId?: string;
}

/** An operating-system error that says the disk itself is broken, not that a file is missing. */
export function isDiskFailure(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EIO' || code === 'EROFS' || code === 'ENXIO' || code === 'ENODEV';
}

/**
 * Every disk failed: the node is leaving (the owner stops it). A network error, as the original
 * answered, so the writer waits for the epoch without this node and retries there.
 */
function noDiskLeft(): SdError {
  return new SdError('NETWORK', 'no disks available: this node is leaving');
}

function noSpace(error: unknown): boolean {
  return error instanceof SdError ? error.code === 'NO_SPACE' : (error as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC';
}

export class MdStore implements LocalStore {
  private readonly disks: MdDisk[] = [];
  /** Where each object is (it may not be where the ring places it yet). */
  private readonly locations = new Map<Oid, MdDisk>();
  /**
   * Objects whose disk failed, until written whole again or removed: a partial write must not
   * make a copy of one range and zeros pass for the object.
   */
  private readonly lost = new Set<Oid>();
  private ring = new MdRing([]);
  private readonly gate = new OidGate();
  private moving = false;
  private movesAgain = false;
  private closed = false;
  /** How large an object is, for moving it whole (the owner's placement knows). */
  objectSizeBytes: (oid: Oid) => number = () => 4 * 1024 * 1024;
  /** A disk failed and was taken out (set by the owner: recover `lost`, or leave when none is left). */
  onDiskFailed: (failure: MdDiskFailure) => void = () => undefined;
  /** Objects a move found damaged on a disk being unplugged: dropped, for the owner to fetch again. */
  onLost: (oids: Oid[], cause: string) => void = () => undefined;

  constructor(private readonly options: MdStoreOptions) {
    if (options.dirs.length === 0) throw new SdError('INVALID_ARGUMENT', 'no object directory');
  }

  get keepsSums(): boolean {
    return this.options.blockSums ?? true;
  }

  /** Opens every disk; a disk that fails at start is left out (when another one opens). */
  async open(): Promise<OpenResult> {
    const total: OpenResult = { replayed: 0, dropped: 0, resummed: 0, lost: [] };
    const opened = await Promise.all(this.options.dirs.map((dir) => this.openDisk(dir, false)));
    for (const [index, outcome] of opened.entries()) {
      if (outcome.ok) {
        total.replayed += outcome.journal.replayed;
        total.dropped += outcome.journal.dropped;
        total.resummed += outcome.journal.resummed;
        total.lost.push(...outcome.journal.lost);
        this.disks.push(outcome.disk);
        continue;
      }
      if (!this.options.failover || !isDiskFailure(outcome.error)) throw outcome.error;
      this.options.log.error({ disk: this.options.dirs[index], err: String(outcome.error) }, 'disk failed at start: left out');
    }
    if (this.disks.length === 0) throw new SdError('IO', 'no disk could be opened');
    this.ring = this.ringOf();
    for (const disk of this.disks) await this.locate(disk);
    return total;
  }

  private async openDisk(dir: string, purge: boolean): Promise<{ ok: true; disk: MdDisk; journal: OpenResult } | { ok: false; error: unknown }> {
    const { disk } = this.options;
    try {
      await disk.mkdirs(dir);
      if (purge) await this.purge(dir);
      const store = new ObjectStore({
        dir,
        disk,
        clock: this.options.clock,
        blockSums: this.keepsSums,
        ...(this.options.bootId === undefined ? {} : { bootId: this.options.bootId }),
      });
      const journal = await store.open();
      // The size of the file system the directory is on: stable, unlike its free space.
      const { totalBytes } = await disk.stats(dir);
      return { ok: true, disk: { path: dir, sizeBytes: totalBytes, store, state: 'in' }, journal };
    } catch (error) {
      return { ok: false, error };
    }
  }

  /**
   * A plugged directory's earlier objects and logs go (as the original purged it): a disk that
   * comes back may hold copies that missed writes. Files that are not the store's stay.
   */
  private async purge(dir: string): Promise<void> {
    const { disk } = this.options;
    for (const name of await disk.list(dir)) {
      if (parseOid(name) !== undefined) await disk.remove(path.join(dir, name));
    }
    for (const sub of ['.journal', '.tmp']) {
      for (const name of await disk.list(path.join(dir, sub))) await disk.remove(path.join(dir, sub, name));
    }
  }

  /** Learns what `disk` holds. A copy also found elsewhere (a move cut short) keeps the placed one. */
  private async locate(disk: MdDisk): Promise<void> {
    for (const oid of await disk.store.list()) {
      const other = this.locations.get(oid);
      if (other === undefined) {
        this.locations.set(oid, disk);
        continue;
      }
      const keep = this.ring.diskOf(oid) === disk.path ? disk : other;
      const drop = keep === disk ? other : disk;
      this.options.log.warn({ oid: oidHex(oid), kept: keep.path, removed: drop.path }, 'object found on two disks: one copy removed');
      await drop.store.remove(oid);
      this.locations.set(oid, keep);
    }
  }

  private ringOf(): MdRing {
    return new MdRing(this.disks.filter((d) => d.state === 'in').map(({ path: p, sizeBytes }) => ({ path: p, sizeBytes })));
  }

  private byPath(diskPath: string | undefined): MdDisk | undefined {
    return this.disks.find((d) => d.path === diskPath && d.state === 'in');
  }

  /** The disks a new copy of `oid` may go to, the one it belongs on first. */
  private candidates(oid: Oid): MdDisk[] {
    return this.ring.order(oid).map((p) => this.byPath(p)!);
  }

  /** Where `oid` is, or where it would be created. */
  private route(oid: Oid): MdDisk {
    const located = this.locations.get(oid);
    if (located !== undefined && located.state !== 'failed') return located;
    const placed = this.byPath(this.ring.diskOf(oid));
    if (placed === undefined) throw noDiskLeft();
    return placed;
  }

  /** Runs `work` on `disk`; a disk failure takes the disk out and becomes SdError IO. */
  private async on<T>(disk: MdDisk, work: (store: ObjectStore) => Promise<T>): Promise<T> {
    try {
      return await work(disk.store);
    } catch (error) {
      if (!this.options.failover || !isDiskFailure(error)) throw error;
      this.fail(disk, error);
      if (!this.disks.some((d) => d.state === 'in')) throw noDiskLeft();
      throw new SdError('IO', `disk ${disk.path} failed: ${asSdError(error).message}`);
    }
  }

  private fail(disk: MdDisk, error: unknown): void {
    if (disk.state === 'failed') return;
    disk.state = 'failed';
    const lost: Oid[] = [];
    for (const [oid, at] of this.locations) {
      if (at !== disk) continue;
      lost.push(oid);
      this.locations.delete(oid);
      this.lost.add(oid);
    }
    this.disks.splice(this.disks.indexOf(disk), 1);
    this.ring = this.ringOf();
    const disksLeft = this.disks.filter((d) => d.state === 'in').length;
    const cause = asSdError(error).message;
    this.options.log.error({ disk: disk.path, err: cause, objects: lost.length, disksLeft }, 'disk failed: taken out, its objects are recovered from other replicas');
    void disk.store.close().catch(() => undefined);
    this.onDiskFailed({ path: disk.path, cause, lost, disksLeft });
    if (disksLeft > 0) this.kickMoves(); // objects of a disk being unplugged need a new target
  }

  // ---- ObjectStore's interface ---------------------------------------------------------------

  /**
   * Runs `work` where the object is. A whole write that put it on another disk removes the old
   * copy after it has recorded the new place: a look that found it missing on the old disk, its
   * place changed meanwhile, looks again on the new one.
   */
  private whereItIs<T>(oid: Oid, work: (store: ObjectStore) => Promise<T>, absent: (value: T) => boolean = () => false): Promise<T> {
    return this.gate.shared(oid, async () => {
      const first = this.route(oid);
      let outcome: { value: T } | { error: unknown };
      try {
        outcome = { value: await this.on(first, work) };
      } catch (error) {
        outcome = { error };
      }
      const missed = 'error' in outcome ? outcome.error instanceof SdError && outcome.error.code === 'NO_OBJECT' : absent(outcome.value);
      const now = missed ? this.locations.get(oid) : undefined;
      if (now !== undefined && now !== first && now.state !== 'failed') return this.on(now, work);
      if ('error' in outcome) throw outcome.error;
      return outcome.value;
    });
  }

  /** One look where the object is, or (unknown here) where it belongs, as a one-directory store looked. */
  async exists(oid: Oid): Promise<boolean> {
    return this.whereItIs(oid, (store) => store.exists(oid), (found) => !found);
  }

  checksum(oid: Oid, sizeBytes: number, fresh = false): Promise<string> {
    return this.whereItIs(oid, (store) => store.checksum(oid, sizeBytes, fresh));
  }

  read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.whereItIs(oid, (store) => store.read(oid, offsetBytes, lengthBytes));
  }

  verify(oid: Oid, lengthBytes: number): Promise<string | undefined> {
    return this.whereItIs(oid, (store) => store.verify(oid, lengthBytes), (problem) => problem === 'missing');
  }

  /**
   * To the disk the object belongs on (so a whole write also moves a misplaced object), else,
   * when that disk is full, the next one on the ring; the copy it replaces is removed.
   */
  writeWhole(oid: Oid, data: Buffer, sizeBytes: number, sums?: Buffer, cached = false): Promise<void> {
    return this.gate.serial(oid, async () => {
      let lastError: unknown = noDiskLeft();
      for (const target of this.candidates(oid)) {
        try {
          await this.on(target, (store) => store.writeWhole(oid, data, sizeBytes, sums, cached));
        } catch (error) {
          lastError = error;
          if (noSpace(error) || (this.options.failover && target.state === 'failed')) continue;
          throw error;
        }
        const before = this.locations.get(oid);
        this.locations.set(oid, target);
        this.lost.delete(oid);
        if (before !== undefined && before !== target && before.state !== 'failed') {
          await this.on(before, (store) => store.remove(oid)).catch((error: unknown) =>
            this.options.log.warn({ oid: oidHex(oid), disk: before.path, err: asSdError(error).message }, 'replaced copy not removed'),
          );
        }
        return;
      }
      throw lastError;
    });
  }

  /**
   * In place where the object is; a new object goes where it belongs, or to the next disk when
   * that one is full. An object whose disk failed is gone: NO_OBJECT, so the writer sends it whole.
   */
  writeRange(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number, cached = false): Promise<void> {
    return this.gate.serial(oid, async () => {
      const located = this.locations.get(oid);
      if (located !== undefined) {
        try {
          await this.on(located, (store) => store.writeRange(oid, offsetBytes, data, sizeBytes, cached));
          return;
        } catch (error) {
          if (located.state === 'failed') throw new SdError('NO_OBJECT', `object ${oidHex(oid)} was on disk ${located.path}, which failed`);
          throw error;
        }
      }
      if (this.lost.has(oid)) throw new SdError('NO_OBJECT', `object ${oidHex(oid)} was lost with its disk`);
      let lastError: unknown = noDiskLeft();
      const targets = this.candidates(oid);
      for (const [index, target] of targets.entries()) {
        try {
          await this.on(target, (store) => store.writeRange(oid, offsetBytes, data, sizeBytes, cached));
          this.locations.set(oid, target);
          return;
        } catch (error) {
          lastError = error;
          if (target.state === 'failed') continue;
          if (!noSpace(error) || index === targets.length - 1) throw error;
          // Tried on the next disk: what the failed create left here must not pass for a copy.
          await target.store.remove(oid).catch(() => undefined);
        }
      }
      throw lastError;
    });
  }

  remove(oid: Oid): Promise<boolean> {
    return this.gate.serial(oid, async () => {
      const located = this.locations.get(oid);
      if (this.lost.delete(oid) && located === undefined) return true; // gone with its disk
      try {
        // Unknown here: removed where it would be, as a one-directory store did.
        const existed = await this.on(located ?? this.route(oid), (store) => store.remove(oid));
        this.locations.delete(oid);
        return existed;
      } catch (error) {
        if (located?.state === 'failed') return true; // gone with its disk
        throw error;
      }
    });
  }

  /**
   * What the disks hold, read from them as a one-directory store always did (a file that went
   * behind the store's back is not listed); one a disk holds unknown to us is remembered there.
   */
  async list(): Promise<Oid[]> {
    const found = new Set<Oid>();
    for (const disk of this.disks.filter((d) => d.state !== 'failed')) {
      let oids: Oid[];
      try {
        oids = await this.on(disk, (store) => store.list());
      } catch (error) {
        if (disk.state === 'failed') continue;
        throw error;
      }
      for (const oid of oids) {
        found.add(oid);
        if (!this.locations.has(oid)) this.locations.set(oid, disk);
      }
    }
    return [...found];
  }

  /** Syncs the dirty objects `filter` selects on every disk (each disk's own dirty set). */
  async flush(filter: (oid: Oid) => boolean = () => true): Promise<number> {
    const disks = this.disks.filter((d) => d.state !== 'failed');
    const counts = await Promise.all(disks.map((d) => this.on(d, (store) => store.flush(filter))));
    return counts.reduce((sum, n) => sum + n, 0);
  }

  get flushStats(): { flushes: number; objectsSynced: number } {
    let flushes = 0;
    let objectsSynced = 0;
    for (const d of this.disks) {
      flushes = Math.max(flushes, d.store.flushStats.flushes); // one flush reaches every disk
      objectsSynced += d.store.flushStats.objectsSynced;
    }
    return { flushes, objectsSynced };
  }

  /** Dirty on whichever disk holds it (a move writes durably, so only one can be). */
  isDirty(oid: Oid): boolean {
    return this.disks.some((d) => d.state !== 'failed' && d.store.isDirty(oid));
  }

  /** A lost copy was replaced by a peer's: settled on every disk that reported it. */
  async settleLost(oid: Oid): Promise<void> {
    await Promise.all(this.disks.filter((d) => d.state !== 'failed').map((d) => this.on(d, (store) => store.settleLost(oid))));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.disks.map((d) => d.store.close()));
  }

  // ---- multi-disk ----------------------------------------------------------------------------

  /** The disks plugged now, in ring order (by path), each with its use. */
  async info(): Promise<MdDiskData[]> {
    const { disk } = this.options;
    const plugged = this.disks.filter((d) => d.state === 'in').sort((a, b) => (a.path < b.path ? -1 : 1));
    return Promise.all(
      plugged.map(async (d, index) => {
        const [stats, usedBytes] = await Promise.all([disk.stats(d.path), disk.usedBytes(d.path)]);
        return { index, path: d.path, sizeBytes: usedBytes + stats.availableBytes, usedBytes, availableBytes: stats.availableBytes };
      }),
    );
  }

  /** The bytes every disk's objects take, and what is free beside them (as `node info` shows). */
  async usage(): Promise<{ usedBytes: number; availableBytes: number }> {
    const disks = await this.info();
    return { usedBytes: disks.reduce((sum, d) => sum + d.usedBytes, 0), availableBytes: disks.reduce((sum, d) => sum + d.availableBytes, 0) };
  }

  /** Objects not yet on the disk they belong on (moving, or held back by a full disk). */
  misplaced(): number {
    let count = 0;
    for (const [oid, at] of this.locations) if (this.ring.diskOf(oid) !== at.path) count += 1;
    return count;
  }

  /**
   * Moves the objects a start found off the disks they belong on (the disk list changed since the
   * last run). Called by the owner once `objectSizeBytes` can answer (the registry is loaded).
   */
  moveMisplaced(): void {
    if (this.misplaced() > 0) this.kickMoves();
  }

  /** Adds disks (their earlier objects purged); objects that now belong on them move there. */
  async plug(dirs: readonly string[]): Promise<void> {
    this.checkPaths(dirs);
    for (const dir of dirs) {
      const known = this.disks.find((d) => d.path === dir);
      if (known) throw new SdError('INVALID_ARGUMENT', `${dir} is ${known.state === 'in' ? 'plugged already' : 'being unplugged'}`);
      if (dir === this.options.metaDir) throw new SdError('INVALID_ARGUMENT', `${dir} is the meta store`);
    }
    if (this.disks.length + dirs.length > mdDisksMax) throw new SdError('INVALID_ARGUMENT', `a sheep has at most ${mdDisksMax} disks`);
    const opened = await Promise.all(dirs.map((dir) => this.openDisk(dir, true)));
    const failed = opened.findIndex((o) => !o.ok);
    if (failed >= 0) {
      for (const o of opened) if (o.ok) await o.disk.store.close().catch(() => undefined);
      const error = (opened[failed] as { error: unknown }).error;
      throw new SdError('IO', `cannot use ${dirs[failed]}: ${asSdError(error).message}`);
    }
    for (const o of opened) if (o.ok) this.disks.push(o.disk);
    this.ring = this.ringOf();
    this.options.log.info({ disks: dirs, plugged: this.disks.filter((d) => d.state === 'in').length }, 'disks plugged: objects move to them');
    this.kickMoves();
  }

  /** Takes disks out of the ring; their objects move to the others, then the disks are let go. */
  async unplug(dirs: readonly string[]): Promise<void> {
    this.checkPaths(dirs);
    const leaving = dirs.map((dir) => {
      const known = this.byPath(dir);
      if (!known) throw new SdError('INVALID_ARGUMENT', `${dir} is not a plugged disk`);
      return known;
    });
    if (this.disks.filter((d) => d.state === 'in' && !leaving.includes(d)).length === 0) {
      throw new SdError('INVALID_ARGUMENT', 'cannot unplug every disk: the objects would have nowhere to go (dog node kill stops the node)');
    }
    for (const d of leaving) d.state = 'leaving';
    this.ring = this.ringOf();
    this.options.log.info({ disks: dirs }, 'disks unplugged: their objects move to the other disks');
    this.kickMoves();
  }

  private checkPaths(dirs: readonly string[]): void {
    if (dirs.length === 0) throw new SdError('INVALID_ARGUMENT', 'no disk given');
    for (const dir of dirs) {
      if (!path.isAbsolute(dir)) throw new SdError('INVALID_ARGUMENT', `${dir} is not an absolute path`);
    }
    if (new Set(dirs).size !== dirs.length) throw new SdError('INVALID_ARGUMENT', 'a disk is given twice');
  }

  /** Resolves once no move is running nor due (tests, and `close`). */
  async settled(): Promise<void> {
    while (this.moving) await this.options.clock.sleep(20);
  }

  private kickMoves(): void {
    if (this.moving) {
      this.movesAgain = true;
      return;
    }
    this.moving = true;
    void this.moveAll()
      .catch((error: unknown) => this.options.log.warn({ err: asSdError(error).message }, 'moving objects between disks failed'))
      .finally(() => (this.moving = false));
  }

  /** Passes over every object until all are where they belong (or can go nowhere better). */
  private async moveAll(): Promise<void> {
    do {
      this.movesAgain = false;
      let moved = 0;
      for (const [oid, at] of [...this.locations]) {
        if (this.closed) return;
        if (this.ring.diskOf(oid) === at.path) continue;
        if (await this.moveOne(oid)) moved += 1;
      }
      for (const d of this.disks.filter((disk) => disk.state === 'leaving')) {
        if ([...this.locations.values()].includes(d)) continue;
        this.disks.splice(this.disks.indexOf(d), 1);
        await d.store.close().catch(() => undefined);
        this.options.log.info({ disk: d.path }, 'disk unplugged: every object moved off it');
      }
      if (moved > 0) this.options.log.info({ moved, misplaced: this.misplaced() }, 'objects moved between disks');
    } while (this.movesAgain && !this.closed);
  }

  /** Moves one object to where it belongs (or, that disk full, the next); true when it moved. */
  private moveOne(oid: Oid): Promise<boolean> {
    return this.gate.exclusive(oid, async () => {
      const from = this.locations.get(oid);
      if (from === undefined || this.ring.diskOf(oid) === from.path) return false;
      const sizeBytes = this.objectSizeBytes(oid);
      let data: Buffer;
      try {
        data = await this.on(from, (store) => store.read(oid, 0, sizeBytes));
      } catch (error) {
        if (asSdError(error).code !== 'CORRUPT' || from.state !== 'leaving') return false;
        // A damaged copy on a disk going away is dropped: the owner fetches a good one.
        this.locations.delete(oid);
        await from.store.remove(oid).catch(() => undefined);
        this.onLost([oid], asSdError(error).message);
        return false;
      }
      // Only disks that come before `from` in the object's order: never a move away from home.
      for (const target of this.candidates(oid)) {
        if (target === from) return false;
        try {
          await this.on(target, (store) => store.writeWhole(oid, data, sizeBytes));
        } catch (error) {
          if (noSpace(error) || target.state === 'failed') continue;
          throw error;
        }
        this.locations.set(oid, target);
        await this.on(from, (store) => store.remove(oid)).catch(() => undefined);
        return true;
      }
      return false;
    });
  }
}
