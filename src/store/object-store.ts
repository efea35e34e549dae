// The objects of one sheep, as files named by their 16-hex-digit id under STORE/obj.
// Atomicity: a write of a whole object goes to a temporary file that is synced and renamed over;
// a partial write is first appended to a checksummed journal record that is synced, then applied
// in place and synced. A crash leaves either the old or the new bytes: journal records that
// survive are replayed at open, torn ones (bad checksum) were never acknowledged and are dropped.
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { SdError } from '../engine/errors.js';
import { oidHex, parseOid, type Oid } from '../engine/oid.js';
import { GroupSync, type Disk } from '../io/disk.js';
import { ReadHandles } from './read-handles.js';

/** Files kept to be rewritten: overwriting allocated blocks is several times faster than new ones. */
const recycledFilesMax = 32;
/** A replaced file is reused only after reads that began before the replacement have ended. */
const recycleDelayMs = 2000;

const journalMagic = 0x53444a31; // "SDJ1"
const journalHeaderBytes = 32;

export interface ObjectStoreOptions {
  dir: string; // STORE/obj
  disk: Disk;
}

export class ObjectStore {
  private readonly dir: string;
  private readonly temporaryDir: string;
  private readonly journalDir: string;
  private readonly disk: Disk;
  private readonly locks = new Map<Oid, Promise<unknown>>();
  private sequence = 0;
  private readonly recycled: Array<{ file: string; sinceMs: number }> = [];
  private readonly objectDirSync: GroupSync;
  private readonly journalDirSync: GroupSync;
  private readonly readHandles: ReadHandles<Oid>;

  constructor(options: ObjectStoreOptions) {
    this.dir = options.dir;
    this.temporaryDir = path.join(options.dir, '.tmp');
    this.journalDir = path.join(options.dir, '.journal');
    this.disk = options.disk;
    this.objectDirSync = new GroupSync(() => this.disk.syncDir(this.dir));
    this.journalDirSync = new GroupSync(() => this.disk.syncDir(this.journalDir));
    this.readHandles = new ReadHandles((oid) => this.disk.open(this.objectPath(oid), 'read'));
  }

  /** Creates the directories, drops temporary files, replays surviving journal records. */
  async open(): Promise<{ replayed: number; dropped: number }> {
    await this.disk.mkdirs(this.temporaryDir);
    await this.disk.mkdirs(this.journalDir);
    for (const name of await this.disk.list(this.temporaryDir)) {
      await this.disk.remove(path.join(this.temporaryDir, name));
    }
    let replayed = 0;
    let dropped = 0;
    const records = (await this.disk.list(this.journalDir)).sort();
    for (const name of records) {
      const file = path.join(this.journalDir, name);
      if (await this.replay(file)) replayed += 1;
      else dropped += 1;
      await this.disk.remove(file);
    }
    await this.disk.syncDir(this.journalDir);
    return { replayed, dropped };
  }

  private objectPath(oid: Oid): string {
    return path.join(this.dir, oidHex(oid));
  }

  /** Runs `work` with exclusive access to one object, so a rename never races an in-place write. */
  private async exclusive<T>(oid: Oid, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(oid) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
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

  /** Reads `lengthBytes` at `offsetBytes`; bytes past the file's end read as zeros. */
  async read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    try {
      return await this.readHandles.use(oid, async (file) => {
        const buffer = Buffer.allocUnsafe(lengthBytes);
        const got = await file.read(buffer, offsetBytes);
        if (got < lengthBytes) buffer.fill(0, got);
        return buffer;
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
  async writeWhole(oid: Oid, data: Buffer, sizeBytes: number): Promise<void> {
    if (data.length > sizeBytes) throw new SdError('INVALID_ARGUMENT', 'object data larger than the object');
    await this.exclusive(oid, async () => {
      const target = this.objectPath(oid);
      const dense = data.length === sizeBytes && !hasZeroBlock(data);
      const oldest = this.recycled[0];
      const reuse = dense && oldest && Date.now() - oldest.sinceMs >= recycleDelayMs ? this.recycled.shift()!.file : undefined;
      const temporary = reuse ?? path.join(this.temporaryDir, `${oidHex(oid)}.${process.pid}.${this.sequence++}`);
      const file = await this.disk.open(temporary, 'create');
      try {
        if (reuse) await file.write(data, 0);
        else await writeSkippingZeroBlocks(file, data, 0);
        await file.truncate(sizeBytes);
        await file.datasync();
      } finally {
        await file.close();
      }
      if (this.recycled.length < recycledFilesMax) {
        const keep = path.join(this.temporaryDir, `recycled.${process.pid}.${this.sequence++}`);
        try {
          await this.disk.link(target, keep);
          this.recycled.push({ file: keep, sinceMs: Date.now() });
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
    await this.exclusive(oid, async () => {
      const record = path.join(this.journalDir, `${Date.now().toString().padStart(15, '0')}-${process.pid}-${this.sequence++}`);
      const journal = await this.disk.open(record, 'create');
      try {
        await journal.write(encodeJournalHeader(oid, offsetBytes, data, sizeBytes), 0);
        await journal.write(data, journalHeaderBytes);
        await journal.datasync();
      } finally {
        await journal.close();
      }
      await this.journalDirSync.sync();
      await this.applyRange(oid, offsetBytes, data, sizeBytes);
      await this.disk.remove(record);
    });
  }

  private async applyRange(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number): Promise<void> {
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
      if (created || (await file.sizeBytes()) < sizeBytes) await file.truncate(sizeBytes);
      await file.write(data, offsetBytes);
      await file.datasync();
    } finally {
      await file.close();
    }
    // Only a new name needs the directory synced; rewriting a file in place does not.
    if (created) await this.objectDirSync.sync();
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
      await this.applyRange(decoded.oid, decoded.offsetBytes, data, decoded.sizeBytes);
      return true;
    } finally {
      await handle.close();
    }
  }

  async remove(oid: Oid): Promise<boolean> {
    return this.exclusive(oid, async () => {
      const existed = await this.disk.exists(this.objectPath(oid));
      await this.disk.remove(this.objectPath(oid));
      this.readHandles.forget(oid);
      return existed;
    });
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

/** Leaves 4 KiB blocks of zeros unwritten so thin objects stay thin on disk. */
async function writeSkippingZeroBlocks(
  file: { write(data: Buffer, offsetBytes: number): Promise<void> },
  data: Buffer,
  offsetBytes: number,
): Promise<void> {
  const blockBytes = 4096;
  let runStart = -1;
  for (let at = 0; at < data.length; at += blockBytes) {
    const block = data.subarray(at, Math.min(at + blockBytes, data.length));
    const zero = isZero(block);
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      await file.write(data.subarray(runStart, at), offsetBytes + runStart);
      runStart = -1;
    }
  }
  if (runStart >= 0) await file.write(data.subarray(runStart), offsetBytes + runStart);
}

const zeroBlock = Buffer.alloc(4096);

function hasZeroBlock(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += zeroBlock.length) {
    const piece = data.subarray(at, Math.min(at + zeroBlock.length, data.length));
    if (piece.equals(zeroBlock.subarray(0, piece.length))) return true;
  }
  return false;
}

export function isZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += zeroBlock.length) {
    const piece = data.subarray(at, Math.min(at + zeroBlock.length, data.length));
    if (!piece.equals(zeroBlock.subarray(0, piece.length))) return false;
  }
  return true;
}

function encodeJournalHeader(oid: Oid, offsetBytes: number, data: Buffer, sizeBytes: number): Buffer {
  const header = Buffer.alloc(journalHeaderBytes);
  header.writeUInt32BE(journalMagic, 0);
  header.writeBigUInt64BE(oid, 4);
  header.writeUInt32BE(offsetBytes, 12);
  header.writeUInt32BE(data.length, 16);
  header.writeUInt32BE(sizeBytes, 20);
  header.writeUInt32BE(crc32(data), 24);
  header.writeUInt32BE(crc32(header.subarray(0, 28)), 28);
  return header;
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
