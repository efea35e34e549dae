// The store's record of which objects may differ from what their disk holds (docs/durability.md).
// A write that is left in the operating system's cache (not synced) first makes its object
// *dirty* here, durably (one group-committed fdatasync for every object made dirty meanwhile),
// so that after any crash the objects that may be torn or old are known. A flush syncs the
// objects, then appends `synced` for each and syncs the file once (a `synced` record lost
// otherwise would only make an object suspect for nothing). At open the boot id of the last start says whether the machine
// lost power since (the cache was lost) or only the process died (the cache held every write).
// An object dirty across a power loss is *lost*: it may be older than its peers' copies, and
// stays so (durably) until a peer's copy replaced it (`settle`).
//
// The file is a list of fixed 20-byte records: u32 magic, u8 kind, 3 bytes zero, u64 oid (the
// boot id's hash for a boot record), u32 crc32 of the 16 bytes before. A record that fails its
// crc (a torn append) is skipped: every record before a sync is durable, and what follows the
// last sync was never relied on.
import * as path from 'node:path';
import { crc32 } from 'node:zlib';
import { parseOid, type Oid } from '../engine/oid.js';
import { GroupSync, writeFileAtomic, readFileOrUndefined, type Disk, type DiskFile } from '../io/disk.js';

const recordMagic = 0x53444431; // "SDD1"
export const dirtyRecordBytes = 20;
/** Past this the file is written again holding only what is still dirty or lost. */
export const dirtyFileBytesMax = 1024 * 1024;

type Kind = 'dirty' | 'synced' | 'boot' | 'lost' | 'settled';
const kindCodes: Record<Kind, number> = { dirty: 1, synced: 2, boot: 3, lost: 4, settled: 5 };
const kindsByCode = new Map(Object.entries(kindCodes).map(([kind, code]) => [code, kind as Kind]));

export function encodeDirtyRecord(kind: Kind, value: bigint): Buffer {
  const record = Buffer.alloc(dirtyRecordBytes);
  record.writeUInt32BE(recordMagic, 0);
  record.writeUInt8(kindCodes[kind], 4);
  record.writeBigUInt64BE(value, 8);
  record.writeUInt32BE(crc32(record.subarray(0, 16)), 16);
  return record;
}

export interface DirtyState {
  /** The boot id hash of the last start, if any was recorded. */
  boot: bigint | undefined;
  dirty: Set<Oid>;
  lost: Set<Oid>;
}

/** What a file's records say; bad records (torn appends) are skipped. */
export function decodeDirtyRecords(bytes: Buffer): DirtyState {
  const state: DirtyState = { boot: undefined, dirty: new Set(), lost: new Set() };
  for (let at = 0; at + dirtyRecordBytes <= bytes.length; at += dirtyRecordBytes) {
    const record = bytes.subarray(at, at + dirtyRecordBytes);
    if (record.readUInt32BE(0) !== recordMagic || crc32(record.subarray(0, 16)) !== record.readUInt32BE(16)) continue;
    const kind = kindsByCode.get(record.readUInt8(4));
    const value = record.readBigUInt64BE(8);
    if (kind === 'boot') {
      state.boot = value;
      continue;
    }
    const oid = parseOid(value);
    if (kind === undefined || oid === undefined) continue;
    if (kind === 'dirty') state.dirty.add(oid);
    else if (kind === 'synced') state.dirty.delete(oid);
    else if (kind === 'lost') state.lost.add(oid);
    else state.lost.delete(oid);
  }
  return state;
}

/** FNV-1a 64 of a boot id: what the boot record keeps. */
export function bootHash(bootId: string): bigint {
  let hash = 0xcbf29ce484222325n;
  for (const byte of Buffer.from(bootId)) hash = BigInt.asUintN(64, (hash ^ BigInt(byte)) * 0x100000001b3n);
  return hash;
}

export interface DirtyOpen {
  /** Objects that may hold torn blocks (written, not synced, when the last process ended). */
  dirty: Oid[];
  /** Whether the machine may have lost its cache since the last start (a new boot, or unknown). */
  powerLost: boolean;
}

export class DirtySet {
  private readonly file: string;
  private handle: DiskFile | undefined;
  private tailBytes = 0;
  /** Records appended so far, and how many of them a sync (or a rewrite) made durable. */
  private appended = 0;
  private synced = 0;
  /** The sync running, on the handle it began on (a rewrite closes that handle after it). */
  private syncing: Promise<void> | undefined;
  private readonly dirty = new Set<Oid>();
  private readonly lost = new Set<Oid>();
  /** Dirty records written, not yet covered by a sync: their writes wait for it. */
  private readonly groupSync: GroupSync;
  /** Appends and rewrites, one at a time, in order. */
  private tail: Promise<unknown> = Promise.resolve();
  private bootRecord = encodeDirtyRecord('boot', 0n);

  constructor(
    dir: string,
    private readonly disk: Disk,
  ) {
    this.file = path.join(dir, '.dirty');
    this.groupSync = new GroupSync(async () => {
      const target = this.appended;
      this.syncing = this.handle!.datasync();
      await this.syncing;
      this.synced = Math.max(this.synced, target);
    });
  }

  /**
   * Reads what the last run left. `bootId` undefined (not known on this system): the cache is
   * assumed lost, which only makes more copies catch up from their peers.
   */
  async load(bootId: string | undefined): Promise<DirtyOpen & { lost: Oid[] }> {
    const state = decodeDirtyRecords((await readFileOrUndefined(this.disk, this.file)) ?? Buffer.alloc(0));
    const boot = bootId === undefined ? undefined : bootHash(bootId);
    this.bootRecord = encodeDirtyRecord('boot', boot ?? 0n);
    const powerLost = boot === undefined || state.boot !== boot;
    for (const oid of state.lost) this.lost.add(oid);
    return { dirty: [...state.dirty], powerLost, lost: [...state.lost] };
  }

  /**
   * Starts the file afresh once the caller has made every dirty object whole again and synced
   * it: it names this boot and the objects still lost (`lost`, added to those loaded).
   */
  async start(lost: readonly Oid[]): Promise<void> {
    for (const oid of lost) this.lost.add(oid);
    this.dirty.clear();
    try {
      await this.rewrite();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException | undefined)?.code;
      if (code !== 'ENOSPC' && code !== 'EDQUOT') throw error;
      // A full store still starts, as the journal does: the old file stays and is appended to.
      // What it still says dirty is only re-summed again at the next start, and an old boot in
      // it only makes more copies catch up from their peers: both err on the safe side.
      const existing = await readFileOrUndefined(this.disk, this.file);
      this.handle = await this.disk.open(this.file, 'write');
      this.tailBytes = existing?.length ?? 0;
    }
  }

  isDirty(oid: Oid): boolean {
    return this.dirty.has(oid);
  }

  isLost(oid: Oid): boolean {
    return this.lost.has(oid);
  }

  /** Dirty objects of one VDI (data and owner table), or all of them. */
  dirtyOids(filter: (oid: Oid) => boolean = () => true): Oid[] {
    return [...this.dirty].filter(filter);
  }

  get dirtyCount(): number {
    return this.dirty.size;
  }

  /** Resolves once `oid` is durably recorded dirty (at once if it already is). */
  async markDirty(oid: Oid): Promise<void> {
    if (this.dirty.has(oid)) return;
    this.dirty.add(oid);
    const sequence = await this.append(encodeDirtyRecord('dirty', oid));
    try {
      while (this.synced < sequence) await this.groupSync.sync();
    } catch (error) {
      // Not durably dirty: the write must not go ahead; the next one records it again.
      this.dirty.delete(oid);
      throw error;
    }
  }

  /** `oid` was synced after its last write (the caller holds the object's lock). */
  async markSynced(oid: Oid): Promise<void> {
    if (!this.dirty.delete(oid)) return;
    await this.append(encodeDirtyRecord('synced', oid));
  }

  /** Makes the records written so far durable (a flush's `synced` ones, so a power loss after it reports nothing lost). */
  async syncRecords(): Promise<void> {
    const sequence = await this.append(Buffer.alloc(0));
    while (this.synced < sequence) await this.groupSync.sync();
  }

  /** A lost copy was replaced by a peer's, durably. */
  async settle(oid: Oid): Promise<void> {
    if (!this.lost.delete(oid)) return;
    await this.append(encodeDirtyRecord('settled', oid));
  }

  async close(): Promise<void> {
    await this.tail.catch(() => undefined);
    await this.handle?.close();
    this.handle = undefined;
  }

  /** Appends one record in order; resolves with its sequence number once it is written. */
  private append(record: Buffer): Promise<number> {
    const next = this.tail.catch(() => undefined).then(async () => {
      if (record.length === 0) return this.appended; // only a place in the order
      if (this.tailBytes + record.length > dirtyFileBytesMax) await this.rewrite();
      const at = this.tailBytes;
      this.tailBytes += record.length;
      await this.handle!.write(record, at);
      this.appended += 1;
      return this.appended;
    });
    this.tail = next;
    return next;
  }

  /** The file again, holding the boot, the dirty and the lost objects: synced, renamed over. */
  private async rewrite(): Promise<void> {
    const records = [this.bootRecord, ...[...this.dirty].map((oid) => encodeDirtyRecord('dirty', oid)), ...[...this.lost].map((oid) => encodeDirtyRecord('lost', oid))];
    const bytes = Buffer.concat(records);
    const covered = this.appended; // every dirty object so far is in `bytes`, synced
    await writeFileAtomic(this.disk, this.file, bytes);
    const previous = this.handle;
    this.handle = await this.disk.open(this.file, 'write');
    this.tailBytes = bytes.length;
    this.synced = Math.max(this.synced, covered);
    if (previous) {
      await this.syncing?.catch(() => undefined);
      await previous.close();
    }
  }
}
