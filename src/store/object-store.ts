// The objects of one sheep, as files named by their 16-hex-digit id under STORE/obj, each with
// the checksums of its blocks in front of the data (./block-sums.ts), checked by every read.
//
// DESIGN: durability (docs/durability.md). A write is either *cached* or *durable*.
// - Cached (writeback, the default of NBD exports): the object is first recorded dirty in
//   ./dirty-set.ts (durably, group-committed, once per object between syncs), then written in
//   place through a kept-open handle, with no sync and no journal: it survives the death of the
//   process (the OS has it), not a power loss. `flush` syncs exactly the dirty objects asked
//   for, once each, in parallel, then the directory once, and records them synced. At open, a
//   dirty object may hold a block whose data and sum disagree (a write torn by a crash): its sums
//   are made again from what it holds; if the machine lost power meanwhile it is also reported
//   *lost* (older than its peers' copies, maybe) until a peer's copy replaces it.
// - Durable (FUA, --writethrough, recovery, catch-up, VDI metadata): acknowledged once on the
//   disk. A whole object goes to a temporary file that is synced and renamed over; a partial
//   write is first appended to the checksummed write-ahead log (./journal.ts), made durable by a
//   group commit, then applied in place. A crash leaves either the old or the new bytes: logged
//   records are replayed at open, a torn tail (bad checksum) was never acknowledged.
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { SdError, asSdError } from '../engine/errors.js';
import { oidHex, parseOid, type Oid } from '../engine/oid.js';
import type { Clock } from '../io/clock.js';
import { GroupSync, writeFileAtomic, type Disk, type DiskFile } from '../io/disk.js';
import {
  blocksSpanned,
  dataOffset,
  encodeIdentity,
  firstBadBlock,
  identityBytes,
  identityProblem,
  identitySizeBytes,
  isZeroRange,
  sumBlockBytes,
  sumsOf,
  sumsOffset,
} from './block-sums.js';
import { ChecksumCache } from './checksums.js';
import { DirtySet } from './dirty-set.js';
import { Journal } from './journal.js';
import { ReadHandles } from './read-handles.js';

/** Files kept to be rewritten: overwriting allocated blocks is several times faster than new ones. */
const recycledFilesMax = 32;
/** A replaced file is reused only after reads that began before the replacement have ended. */
const recycleDelayMs = 2000;

/** Named in STORE/obj/.format: objects carry their identity and block sums (block-sums.ts). */
const storeFormat = 'sdo2';

/** Records of the earlier one-file-per-record journal, still replayed at open. */
const journalMagic = 0x53444a31; // "SDJ1"
const journalHeaderBytes = 32;

export interface ObjectStoreOptions {
  dir: string; // STORE/obj
  disk: Disk;
  /** When a replaced file may be reused (see recycleDelayMs). */
  clock: Clock;
  /**
   * false: block sums neither kept nor checked (the header still names the object). Only for
   * `npm run bench` to measure what they cost; a store is never to change between the two.
   */
  blockSums?: boolean;
  /**
   * This machine's boot id: a store opened under another than its last tells that the cache may
   * have been lost (./dirty-set.ts). Undefined: unknown, taken as lost.
   */
  bootId?: string;
}

/** Dirty objects synced at once by one flush. */
const flushParallelMax = 32;

export interface OpenResult {
  replayed: number;
  dropped: number;
  /** Dirty objects whose sums were made again from their bytes (a crash with writes cached). */
  resummed: number;
  /** Copies that may be older than their peers' (cached writes lost with the power): to catch up. */
  lost: Oid[];
}

export class ObjectStore {
  private readonly dir: string;
  private readonly temporaryDir: string;
  private readonly journalDir: string;
  private readonly disk: Disk;
  private readonly clock: Clock;
  private readonly locks = new Map<Oid, Promise<unknown>>();
  private readonly checksums = new ChecksumCache();
  private sequence = 0;
  private readonly recycled: Array<{ file: string; sinceMs: number }> = [];
  private readonly objectDirSync: GroupSync;
  private readonly readHandles: ReadHandles<Oid>;
  /** Open handles of objects written in place (cached writes), bounded like the read handles. */
  private readonly writeHandles: ReadHandles<Oid>;
  private readonly journal: Journal;
  private readonly blockSums: boolean;
  private readonly dirty: DirtySet;
  private readonly bootId: string | undefined;
  /** Cached writes per dirty object: a flush records an object synced only if none came since. */
  private readonly cachedWrites = new Map<Oid, number>();
  /** A cached write created a name, or a removal of a dirty object: the next flush syncs the directory. */
  private namesUnsynced = false;
  /** Counters for tests and `npm run bench`: objects synced by flushes, flushes run. */
  readonly flushStats = { flushes: 0, objectsSynced: 0 };

  constructor(options: ObjectStoreOptions) {
    this.blockSums = options.blockSums ?? true;
    this.dir = options.dir;
    this.temporaryDir = path.join(options.dir, '.tmp');
    this.journalDir = path.join(options.dir, '.journal');
    this.disk = options.disk;
    this.clock = options.clock;
    this.objectDirSync = new GroupSync(() => this.disk.syncDir(this.dir));
    this.readHandles = new ReadHandles((oid) => this.disk.open(this.objectPath(oid), 'read'));
    this.writeHandles = new ReadHandles((oid) => this.disk.open(this.objectPath(oid), 'write'));
    this.dirty = new DirtySet(options.dir, options.disk);
    this.bootId = options.bootId;
    this.journal = new Journal(this.journalDir, this.disk, {
      replay: (record) => this.applyRange(record.oid, record.offsetBytes, record.data, record.sizeBytes, true),
      syncObject: (oid) => this.syncObject(oid),
    });
  }

  /** Whether this store keeps block sums (always, but for the integrity benchmark's baseline). */
  get keepsSums(): boolean {
    return this.blockSums;
  }

  /**
   * Creates the directories, drops temporary files, replays what the journal holds. Refuses a
   * store whose objects are of the format before block sums: every read of them would fail.
   */
  async open(): Promise<OpenResult> {
    await this.disk.mkdirs(this.temporaryDir);
    await this.disk.mkdirs(this.journalDir);
    const formatFile = path.join(this.dir, '.format');
    if (!(await this.disk.exists(formatFile))) {
      if ((await this.list()).length > 0) {
        throw new SdError('UNSUPPORTED', `${this.dir} holds objects of an earlier format, without block checksums: copy the data out with the earlier version`);
      }
      await writeFileAtomic(this.disk, formatFile, Buffer.from(`${storeFormat}\n`));
    }
    for (const name of await this.disk.list(this.temporaryDir)) {
      await this.disk.remove(path.join(this.temporaryDir, name));
    }
    let replayed = 0;
    let dropped = 0;
    // One file per record: the journal of earlier versions of this store.
    const records = (await this.disk.list(this.journalDir)).filter((name) => !name.startsWith('log.')).sort();
    for (const name of records) {
      const file = path.join(this.journalDir, name);
      if (await this.replay(file)) replayed += 1;
      else dropped += 1;
      await this.disk.remove(file);
    }
    const logged = await this.journal.open();
    const left = await this.dirty.load(this.bootId);
    for (const oid of left.dirty) await this.resum(oid);
    const lostNow = left.powerLost ? left.dirty : [];
    await this.dirty.start(lostNow);
    if (left.dirty.length > 0) await this.objectDirSync.sync(); // a removed empty file, too
    return {
      replayed: replayed + logged.replayed,
      dropped: dropped + logged.dropped,
      resummed: left.dirty.length,
      lost: [...new Set([...left.lost, ...lostNow])],
    };
  }

  /**
   * A dirty object after a crash: its blocks' sums are made again from the bytes it holds (a
   * write the crash tore may have landed its data and not its sums, or the other way round), and
   * it is synced. A file without a header of ours was created by a cached write that never
   * reached the disk: it goes, the object was not there before. A damaged or foreign header
   * stays, and fails reads until a peer's copy replaces it.
   */
  private async resum(oid: Oid): Promise<void> {
    let file;
    try {
      file = await this.disk.open(this.objectPath(oid), 'write');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    let unwritten = false;
    try {
      const head = Buffer.alloc(identityBytes);
      const got = await file.read(head, 0);
      unwritten = head.subarray(0, got).every((byte) => byte === 0);
      if (!unwritten && identityProblem(head, oid) === undefined && this.blockSums) {
        const sizeBytes = identitySizeBytes(head);
        if ((await file.sizeBytes()) < dataOffset + sizeBytes) await file.truncate(dataOffset + sizeBytes);
        const data = Buffer.alloc(sizeBytes);
        await file.read(data, dataOffset);
        await file.write(sumsOf(data), sumsOffset);
        await file.datasync();
      }
    } finally {
      await file.close();
    }
    if (unwritten) await this.disk.remove(this.objectPath(oid));
  }

  private objectPath(oid: Oid): string {
    return path.join(this.dir, oidHex(oid));
  }

  /** Runs `work` with exclusive access to one object, so a rename never races an in-place write. */
  private async exclusive<T>(oid: Oid, work: () => Promise<T>, changes = true): Promise<T> {
    const previous = this.locks.get(oid) ?? Promise.resolve();
    // Every exclusive section may change the object: its remembered checksum goes, before and after.
    const changing = async () => {
      if (!changes) return work();
      this.checksums.forget(oid);
      try {
        return await work();
      } finally {
        this.checksums.forget(oid);
      }
    };
    const next = previous.catch(() => undefined).then(changing);
    this.locks.set(oid, next);
    try {
      return await next;
    } finally {
      if (this.locks.get(oid) === next) this.locks.delete(oid);
    }
  }

  async exists(oid: Oid): Promise<boolean> {
    return this.disk.exists(this.objectPath(oid));
  }

  /**
   * sha1 of the object's first `sizeBytes` (holes and bytes past its end as zeros); `fresh`: read
   * (and so verify) the copy again rather than trust a remembered sum, which damage at rest
   * would not change.
   */
  async checksum(oid: Oid, sizeBytes: number, fresh = false): Promise<string> {
    if (fresh) {
      this.checksums.forget(oid);
      this.readHandles.forget(oid); // a file removed or replaced behind our back is looked up again
    }
    return this.checksums.get(oid, sizeBytes, () => this.read(oid, 0, sizeBytes));
  }

  /**
   * Reads `lengthBytes` at `offsetBytes`, verified against the blocks' sums; bytes past the
   * file's end read as zeros (and must sum so). A copy that fails is never returned: SdError
   * CORRUPT. A read that crossed a write in place (its data landed, its sums not yet) is looked
   * at again once no write of the object runs, so only a copy damaged at rest fails.
   */
  async read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    const first = await this.readChecked(oid, offsetBytes, lengthBytes);
    if (first.data) return first.data;
    const again = await this.exclusive(oid, () => this.readChecked(oid, offsetBytes, lengthBytes));
    if (again.data) return again.data;
    throw new SdError('CORRUPT', `object ${oidHex(oid)}: ${again.problem}`);
  }

  /** Why our copy of `oid` (its first `lengthBytes`) cannot be served, or undefined when it can. */
  async verify(oid: Oid, lengthBytes: number): Promise<string | undefined> {
    this.readHandles.forget(oid);
    try {
      await this.read(oid, 0, lengthBytes);
      return undefined;
    } catch (error) {
      const sd = asSdError(error);
      if (sd.code === 'NO_OBJECT') return 'missing';
      if (sd.code === 'CORRUPT') return sd.message;
      throw error;
    }
  }

  private async readChecked(
    oid: Oid,
    offsetBytes: number,
    lengthBytes: number,
  ): Promise<{ data: Buffer; problem?: undefined } | { data?: undefined; problem: string }> {
    try {
      return await this.readHandles.use(oid, async (file, memo) => {
        const { first, end } = blocksSpanned(offsetBytes, lengthBytes);
        const span = Buffer.allocUnsafe((end - first) * sumBlockBytes);
        // The header this handle last found good: one read, not two. Data that fails its
        // remembered sums (written in place since, or damaged) is checked against the file's.
        const known = memo.header;
        if (known && known.length >= sumsOffset + end * 4) {
          const checked = checkSpan(known, span, await file.read(span, dataOffset + first * sumBlockBytes), first, end, offsetBytes, lengthBytes, this.blockSums);
          if (checked.data) return checked;
          memo.header = undefined;
        }
        // A whole 4 MiB object's sums at least: the next reads of this object need no header read.
        const head = Buffer.alloc(sumsOffset + Math.max(end, headerBlocksRead) * 4);
        // Header and data at once: two reads in flight, not one after the other.
        const [headGot, got] = await Promise.all([file.read(head, 0), file.read(span, dataOffset + first * sumBlockBytes)]);
        const problem = identityProblem(head.subarray(0, Math.min(headGot, identityBytes)), oid);
        if (problem) return { problem };
        const checked = checkSpan(head, span, got, first, end, offsetBytes, lengthBytes, this.blockSums);
        if (checked.data) memo.header = head;
        return checked;
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new SdError('NO_OBJECT', `no object ${oidHex(oid)}`);
      }
      throw error;
    }
  }

  /**
   * Replaces the whole object atomically: the data goes to another file, synced, then renamed
   * over. The replaced file is kept (hard-linked) to take a later write into blocks that are
   * already allocated; data with zero blocks goes to a fresh sparse file instead, to stay thin.
   */
  /**
   * `sums`: the data's block sums when the caller has them (made where the data came in).
   * `cached`: written in place and left in the OS cache (see the top of this file).
   */
  async writeWhole(oid: Oid, data: Buffer, sizeBytes: number, sums?: Buffer, cached = false): Promise<void> {
    if (data.length > sizeBytes) throw new SdError('INVALID_ARGUMENT', 'object data larger than the object');
    if (cached) return this.exclusive(oid, () => this.writeWholeCached(oid, data, sizeBytes, sums));
    await this.exclusive(oid, async () => {
      await this.supersedeLogged(oid);
      const target = this.objectPath(oid);
      const dense = data.length === sizeBytes && !hasZeroBlock(data);
      const oldest = this.recycled[0];
      const reuse = dense && oldest && this.clock.nowMs() - oldest.sinceMs >= recycleDelayMs ? this.recycled.shift()!.file : undefined;
      const temporary = reuse ?? path.join(this.temporaryDir, `${oidHex(oid)}.${process.pid}.${this.sequence++}`);
      const file = await this.disk.open(temporary, 'create');
      try {
        const header = this.blockSums ? Buffer.concat([encodeIdentity(oid, sizeBytes), sums ?? sumsOf(data)]) : encodeIdentity(oid, sizeBytes);
        if (reuse) {
          await file.write(header, 0);
          await file.write(data, dataOffset);
        } else {
          await writeSkippingZeroBlocks(file, header, 0); // a zero block's sum is 0: holes stay holes
          await writeSkippingZeroBlocks(file, data, dataOffset);
        }
        await file.truncate(dataOffset + sizeBytes);
        await file.datasync();
      } catch (error) {
        // A full disk must not keep what failed: the partial file would hold on to the space.
        await file.close().catch(() => undefined);
        await this.disk.remove(temporary).catch(() => undefined);
        throw error;
      }
      await file.close();
      if (this.recycled.length < recycledFilesMax) {
        const keep = path.join(this.temporaryDir, `recycled.${process.pid}.${this.sequence++}`);
        try {
          await this.disk.link(target, keep);
          this.recycled.push({ file: keep, sinceMs: this.clock.nowMs() });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        }
      }
      await this.disk.rename(temporary, target);
      this.readHandles.forget(oid);
      this.writeHandles.forget(oid);
      await this.objectDirSync.sync();
      // The object is on the disk whole now: nothing cached before it is left to sync.
      this.cachedWrites.delete(oid);
      await this.dirty.markSynced(oid);
    });
  }

  /**
   * A whole object in place, cached: over the file there is (its header kept, zero blocks that
   * were holes left holes), or in a new sparse file under the object's own name.
   */
  private async writeWholeCached(oid: Oid, data: Buffer, sizeBytes: number, sums: Buffer | undefined): Promise<void> {
    await this.beginCached(oid);
    const header = this.blockSums ? Buffer.concat([encodeIdentity(oid, sizeBytes), sums ?? sumsOf(data)]) : encodeIdentity(oid, sizeBytes);
    const existing = await this.openForWrite(oid);
    if (existing === undefined) {
      const file = await this.disk.open(this.objectPath(oid), 'create');
      this.namesUnsynced = true;
      try {
        await writeSkippingZeroBlocks(file, header, 0);
        await writeSkippingZeroBlocks(file, data, dataOffset);
        await file.truncate(dataOffset + sizeBytes);
      } catch (error) {
        // There was no object: a half-made file must not pass for one (nor hold the space).
        await file.close().catch(() => undefined);
        await this.disk.remove(this.objectPath(oid)).catch(() => undefined);
        throw error;
      }
      await file.close();
      return;
    }
    await this.writeHandles.use(oid, async (file) => {
      const head = Buffer.alloc(identityBytes);
      await file.read(head, 0);
      const holes = identityProblem(head, oid) === undefined && this.blockSums ? Buffer.alloc((Math.ceil(sizeBytes / sumBlockBytes)) * 4) : undefined;
      if (holes) await file.read(holes, sumsOffset);
      await file.write(header, 0);
      await writeChangedBlocks(file, data, dataOffset, holes);
      if ((await file.sizeBytes()) !== dataOffset + sizeBytes) await file.truncate(dataOffset + sizeBytes);
    });
  }

  /** A handle of the object's file from the cache, or undefined when there is no file. */
  private async openForWrite(oid: Oid): Promise<true | undefined> {
    try {
      await this.writeHandles.use(oid, async () => undefined);
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  /** Before a cached write: the object is durably dirty, and no logged range lies under it. */
  private async beginCached(oid: Oid): Promise<void> {
    await this.dirty.markDirty(oid);
    this.cachedWrites.set(oid, (this.cachedWrites.get(oid) ?? 0) + 1);
    await this.supersedeLogged(oid);
  }

  /**
   * Writes a range in place; creates a sparse object if there is none. Durable: through the
   * journal. `cached`: left in the OS cache (see the top of this file).
   */
  async writeRange(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number, cached = false): Promise<void> {
    if (offsetBytes + data.length > sizeBytes) {
      throw new SdError('OUT_OF_RANGE', 'write past the end of the object');
    }
    if (cached) {
      await this.exclusive(oid, async () => {
        await this.beginCached(oid);
        if ((await this.openForWrite(oid)) === undefined) {
          this.namesUnsynced = true;
          return this.applyRange(oid, offsetBytes, data, sizeBytes, false);
        }
        await this.writeHandles.use(oid, (file) => this.applyTo(file, false, oid, offsetBytes, data, sizeBytes, false));
      });
      return;
    }
    await this.exclusive(oid, () =>
      this.journal.write({ kind: 'range', oid, offsetBytes, sizeBytes, data }, () =>
        this.applyRange(oid, offsetBytes, data, sizeBytes, false),
      ),
    );
  }

  /**
   * Before a whole write or a removal: make the object's logged ranges durable in the object
   * itself, then log that they are superseded, so replay never lays them over newer bytes.
   */
  private async supersedeLogged(oid: Oid): Promise<void> {
    if (!this.journal.has(oid)) return;
    await this.syncObject(oid);
    // A logged write may have made the file: its name must outlive the records that could remake it.
    await this.objectDirSync.sync();
    await this.journal.write({ kind: 'supersede', oid }, async () => undefined);
  }

  private async syncObject(oid: Oid): Promise<void> {
    try {
      await this.writeHandles.use(oid, (file) => file.datasync());
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
  }

  /**
   * In place, data then its blocks' sums; `replaying` at open, where no log stands behind the
   * bytes any more (so they are synced) and the sums are made again from what the file holds: a
   * crash may have kept the data of a logged write and lost its sums, or the other way round.
   */
  private async applyRange(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number, replaying: boolean): Promise<void> {
    this.checksums.forget(oid); // replay runs outside `exclusive`
    let created = false;
    let file;
    try {
      file = await this.disk.open(this.objectPath(oid), 'write');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      file = await this.disk.open(this.objectPath(oid), 'create');
      created = true;
    }
    try {
      await this.applyTo(file, created, oid, offsetBytes, data, sizeBytes, replaying);
      if (replaying) await file.datasync();
    } catch (error) {
      await file.close().catch(() => undefined);
      // A file this write made and could not finish: there was no object, so there is none.
      if (created) await this.disk.remove(this.objectPath(oid)).catch(() => undefined);
      throw error;
    }
    await file.close();
    // Only a new name needs the directory synced, and only once no log can recreate it.
    if (created && replaying) await this.objectDirSync.sync();
  }

  /** The range into an open file: data, then its blocks' sums. */
  private async applyTo(file: DiskFile, created: boolean, oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number, replaying: boolean): Promise<void> {
    if (created || (await file.sizeBytes()) < dataOffset + sizeBytes) await file.truncate(dataOffset + sizeBytes);
    if (created || (replaying && (await this.identityUnwritten(file, oid)))) await file.write(encodeIdentity(oid, sizeBytes), 0);
    const sums = this.blockSums ? sumsOf(await this.withWholeBlocks(oid, file, offsetBytes, data, replaying)) : undefined;
    await file.write(data, dataOffset + offsetBytes);
    if (sums) await file.write(sums, sumsOffset + Math.floor(offsetBytes / sumBlockBytes) * 4);
  }

  /**
   * At replay the identity is written only where none is yet (a crash after the file was made,
   * before its header was) or it is ours already. Another object's, or a damaged one, stays:
   * writing ours over it would make a foreign or damaged file pass as this object's copy.
   */
  private async identityUnwritten(file: DiskFile, oid: Oid): Promise<boolean> {
    const head = Buffer.alloc(identityBytes);
    const got = await file.read(head, 0);
    return head.subarray(0, got).every((byte) => byte === 0) || identityProblem(head, oid) === undefined;
  }

  /**
   * `data` widened to whole blocks with the bytes around it, to sum. Those bytes are checked
   * first (not when replaying: their sums may be the ones a crash lost): a write never makes a
   * damaged block pass.
   */
  private async withWholeBlocks(oid: Oid, file: DiskFile, offsetBytes: number, data: Buffer, replaying: boolean): Promise<Buffer> {
    const { first, end } = blocksSpanned(offsetBytes, data.length);
    const startBytes = first * sumBlockBytes;
    const endBytes = end * sumBlockBytes;
    if (offsetBytes === startBytes && offsetBytes + data.length === endBytes) return data;
    const span = Buffer.alloc(endBytes - startBytes);
    const edges = [...new Set([first, end - 1])].filter(
      (block) => (block === first && offsetBytes > startBytes) || (block === end - 1 && offsetBytes + data.length < endBytes),
    );
    for (const block of edges) {
      const old = span.subarray((block - first) * sumBlockBytes, (block - first + 1) * sumBlockBytes);
      await file.read(old, dataOffset + block * sumBlockBytes);
      if (replaying) continue;
      const sum = Buffer.alloc(4);
      await file.read(sum, sumsOffset + block * 4);
      if (firstBadBlock(old, sum, block) >= 0) {
        throw new SdError('CORRUPT', `object ${oidHex(oid)}: block ${block} (bytes ${block * sumBlockBytes}+${sumBlockBytes}) fails its checksum`);
      }
    }
    data.copy(span, offsetBytes - startBytes);
    return span;
  }

  private async replay(file: string): Promise<boolean> {
    const handle = await this.disk.open(file, 'read');
    let header: Buffer;
    let data: Buffer;
    try {
      header = Buffer.alloc(journalHeaderBytes);
      if ((await handle.read(header, 0)) < journalHeaderBytes) return false;
      const decoded = decodeJournalHeader(header);
      if (!decoded) return false;
      data = Buffer.alloc(decoded.lengthBytes);
      if ((await handle.read(data, journalHeaderBytes)) < decoded.lengthBytes) return false;
      if (crc32(data) !== decoded.dataCrc) return false;
      await this.applyRange(decoded.oid, decoded.offsetBytes, data, decoded.sizeBytes, true);
      return true;
    } finally {
      await handle.close();
    }
  }

  async remove(oid: Oid): Promise<boolean> {
    return this.exclusive(oid, async () => {
      await this.supersedeLogged(oid);
      const existed = await this.disk.exists(this.objectPath(oid));
      await this.disk.remove(this.objectPath(oid));
      this.readHandles.forget(oid);
      this.writeHandles.forget(oid);
      if (this.dirty.isDirty(oid)) this.namesUnsynced = true; // the next flush makes the removal durable
      return existed;
    });
  }

  /**
   * Makes every cached write to the dirty objects `filter` selects durable: each synced once, in
   * parallel, then the directory once; then recorded synced. Answers how many were synced.
   */
  async flush(filter: (oid: Oid) => boolean = () => true): Promise<number> {
    const oids = this.dirty.dirtyOids(filter);
    this.flushStats.flushes += 1;
    const seen = new Map<Oid, number>();
    for (let at = 0; at < oids.length; at += flushParallelMax) {
      await Promise.all(
        oids.slice(at, at + flushParallelMax).map((oid) =>
          this.exclusive(
            oid,
            async () => {
              seen.set(oid, this.cachedWrites.get(oid) ?? 0);
              await this.syncObject(oid);
            },
            false,
          ),
        ),
      );
    }
    if (this.namesUnsynced) {
      this.namesUnsynced = false;
      try {
        await this.objectDirSync.sync();
      } catch (error) {
        this.namesUnsynced = true;
        throw error;
      }
    }
    for (const [oid, writes] of seen) {
      if ((this.cachedWrites.get(oid) ?? 0) !== writes) continue; // written again since: still dirty
      this.cachedWrites.delete(oid);
      await this.dirty.markSynced(oid);
    }
    if (seen.size > 0) await this.dirty.syncRecords();
    this.flushStats.objectsSynced += oids.length;
    return oids.length;
  }

  /** Whether `oid` has cached writes not yet synced. */
  isDirty(oid: Oid): boolean {
    return this.dirty.isDirty(oid);
  }

  /** A copy reported lost (`open`) was replaced by a peer's, durably: it is no longer suspect. */
  async settleLost(oid: Oid): Promise<void> {
    await this.dirty.settle(oid);
  }

  /** Syncs what is cached, waits for a checkpoint in progress, releases the logs and handles. */
  async close(): Promise<void> {
    await this.flush().catch(() => undefined); // a clean stop leaves nothing to lose with the power
    await this.journal.close();
    await this.dirty.close();
    this.readHandles.closeAll();
    this.writeHandles.closeAll();
  }

  async list(): Promise<Oid[]> {
    const oids: Oid[] = [];
    for (const name of await this.disk.list(this.dir)) {
      const oid = parseOid(name);
      if (oid !== undefined) oids.push(oid);
    }
    return oids;
  }
}

const zeroBlock = Buffer.alloc(4096);

/** The 4 KiB blocks of `data` (the last may be shorter), each told whether it is all zeros. */
function* blocksOf(data: Buffer): Generator<{ atBytes: number; zero: boolean }> {
  for (let atBytes = 0; atBytes < data.length; atBytes += zeroBlock.length) {
    yield { atBytes, zero: isZeroRange(data, atBytes, Math.min(atBytes + zeroBlock.length, data.length)) };
  }
}

function hasZeroBlock(data: Buffer): boolean {
  for (const block of blocksOf(data)) if (block.zero) return true;
  return false;
}

/**
 * Writes `data` over a file's blocks, leaving out zero blocks where `holeSums` (the old sums)
 * says the block was zeros already (a hole stays a hole); every block when there are no sums.
 */
async function writeChangedBlocks(file: DiskFile, data: Buffer, offsetBytes: number, holeSums: Buffer | undefined): Promise<void> {
  if (holeSums === undefined) return file.write(data, offsetBytes);
  let runStart = -1;
  for (const { atBytes, zero } of blocksOf(data)) {
    const skip = zero && holeSums.readUInt32BE((atBytes / sumBlockBytes) * 4) === 0;
    if (!skip && runStart < 0) runStart = atBytes;
    if (skip && runStart >= 0) {
      await file.write(data.subarray(runStart, atBytes), offsetBytes + runStart);
      runStart = -1;
    }
  }
  if (runStart >= 0) await file.write(data.subarray(runStart), offsetBytes + runStart);
}

/** Leaves 4 KiB blocks of zeros unwritten so thin objects stay thin on disk. */
async function writeSkippingZeroBlocks(
  file: { write(data: Buffer, offsetBytes: number): Promise<void> },
  data: Buffer,
  offsetBytes: number,
): Promise<void> {
  let runStart = -1;
  for (const { atBytes, zero } of blocksOf(data)) {
    if (!zero && runStart < 0) runStart = atBytes;
    if (zero && runStart >= 0) {
      await file.write(data.subarray(runStart, atBytes), offsetBytes + runStart);
      runStart = -1;
    }
  }
  if (runStart >= 0) await file.write(data.subarray(runStart), offsetBytes + runStart);
}

function decodeJournalHeader(header: Buffer):
  | { oid: Oid; offsetBytes: number; lengthBytes: number; sizeBytes: number; dataCrc: number }
  | undefined {
  if (header.readUInt32BE(0) !== journalMagic) return undefined;
  if (crc32(header.subarray(0, 28)) !== header.readUInt32BE(28)) return undefined;
  const oid = parseOid(header.readBigUInt64BE(4));
  if (oid === undefined) return undefined;
  return {
    oid,
    offsetBytes: header.readUInt32BE(12),
    lengthBytes: header.readUInt32BE(16),
    sizeBytes: header.readUInt32BE(20),
    dataCrc: header.readUInt32BE(24),
  };
}

/** Header bytes a read takes when it reads the header: the sums of a 4 MiB object. */
const headerBlocksRead = (4 << 20) / sumBlockBytes;

/**
 * The requested bytes of `span` (blocks [first, end), `got` bytes of it read) verified against
 * `head`'s sums; blocks past the object's end read as zeros, unchecked.
 */
function checkSpan(
  head: Buffer,
  span: Buffer,
  got: number,
  first: number,
  end: number,
  offsetBytes: number,
  lengthBytes: number,
  blockSums: boolean,
): { data: Buffer; problem?: undefined } | { data?: undefined; problem: string } {
  if (got < span.length) span.fill(0, got);
  const checkedEnd = Math.min(end, Math.ceil(identitySizeBytes(head) / sumBlockBytes));
  if (checkedEnd < end) span.fill(0, Math.max(0, checkedEnd - first) * sumBlockBytes);
  const bad = blockSums && checkedEnd > first ? firstBadBlock(span.subarray(0, (checkedEnd - first) * sumBlockBytes), head.subarray(sumsOffset + first * 4), first) : -1;
  if (bad >= 0) return { problem: `block ${bad} (bytes ${bad * sumBlockBytes}+${sumBlockBytes}) fails its checksum` };
  const at = offsetBytes - first * sumBlockBytes;
  return { data: at === 0 && lengthBytes === span.length ? span : span.subarray(at, at + lengthBytes) };
}
