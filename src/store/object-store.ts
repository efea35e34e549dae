// The objects of one sheep, as files named by their 16-hex-digit id under STORE/obj, each with
// the checksums of its blocks in front of the data (./block-sums.ts), checked by every read.
// Atomicity: a write of a whole object goes to a temporary file that is synced and renamed over;
// a partial write is first appended to the checksummed write-ahead log (./journal.ts), made
// durable by a group commit, then applied in place. A crash leaves either the old or the new
// bytes: logged records are replayed at open, a torn tail (bad checksum) was never acknowledged.
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
  private readonly journal: Journal;
  private readonly blockSums: boolean;

  constructor(options: ObjectStoreOptions) {
    this.blockSums = options.blockSums ?? true;
    this.dir = options.dir;
    this.temporaryDir = path.join(options.dir, '.tmp');
    this.journalDir = path.join(options.dir, '.journal');
    this.disk = options.disk;
    this.clock = options.clock;
    this.objectDirSync = new GroupSync(() => this.disk.syncDir(this.dir));
    this.readHandles = new ReadHandles((oid) => this.disk.open(this.objectPath(oid), 'read'));
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
  async open(): Promise<{ replayed: number; dropped: number }> {
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
    return { replayed: replayed + logged.replayed, dropped: dropped + logged.dropped };
  }

  private objectPath(oid: Oid): string {
    return path.join(this.dir, oidHex(oid));
  }

  /** Runs `work` with exclusive access to one object, so a rename never races an in-place write. */
  private async exclusive<T>(oid: Oid, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(oid) ?? Promise.resolve();
    // Every exclusive section may change the object: its remembered checksum goes, before and after.
    const changing = async () => {
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
  /** `sums`: the data's block sums when the caller has them (made where the data came in). */
  async writeWhole(oid: Oid, data: Buffer, sizeBytes: number, sums?: Buffer): Promise<void> {
    if (data.length > sizeBytes) throw new SdError('INVALID_ARGUMENT', 'object data larger than the object');
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
      await this.objectDirSync.sync();
    });
  }

  /** Writes a range in place, through the journal; creates a sparse object if there is none. */
  async writeRange(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number): Promise<void> {
    if (offsetBytes + data.length > sizeBytes) {
      throw new SdError('OUT_OF_RANGE', 'write past the end of the object');
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
    await this.journal.write({ kind: 'supersede', oid }, async () => undefined);
  }

  private async syncObject(oid: Oid): Promise<void> {
    let file;
    try {
      file = await this.disk.open(this.objectPath(oid), 'write');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    try {
      await file.datasync();
    } finally {
      await file.close();
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
      if (created || (await file.sizeBytes()) < dataOffset + sizeBytes) await file.truncate(dataOffset + sizeBytes);
      if (created || (replaying && (await this.identityUnwritten(file, oid)))) await file.write(encodeIdentity(oid, sizeBytes), 0);
      const sums = this.blockSums ? sumsOf(await this.withWholeBlocks(oid, file, offsetBytes, data, replaying)) : undefined;
      await file.write(data, dataOffset + offsetBytes);
      if (sums) await file.write(sums, sumsOffset + Math.floor(offsetBytes / sumBlockBytes) * 4);
      if (replaying) await file.datasync();
    } finally {
      await file.close();
    }
    // Only a new name needs the directory synced, and only once no log can recreate it.
    if (created && replaying) await this.objectDirSync.sync();
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
      return existed;
    });
  }

  /** Waits for a checkpoint in progress and releases the log and the read handles. */
  async close(): Promise<void> {
    await this.journal.close();
    this.readHandles.closeAll();
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
