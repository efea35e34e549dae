// An in-memory Disk with a volatile write cache, for tests and the simulator. Every file has the
// bytes readers see and the bytes on the platter: `datasync` copies the first to the second.
// Every directory has the names readers see and the durable names: `syncDir` copies them.
// `crash()` keeps only what is durable, as a power loss would, and fences off whoever used the
// disk before (their handles and calls fail with EIO and change nothing). Directories themselves
// are durable once made (mkdir is modelled as mkdir + sync of the parent). Space is counted in
// 4 KiB blocks that were written, so holes are free and thin provisioning shows.
import * as path from 'node:path';
import type { Disk, DiskFile, DiskStats } from './disk.js';

export const memoryBlockBytes = 4096;
/** The default capacity: large enough never to fill unless a test asks for less. */
export const memoryDiskBytesDefault = 2 ** 40;

/** Blocks are never mutated once stored, so one zero block can stand for every zero block. */
const zeroBlock: Buffer = Buffer.alloc(memoryBlockBytes);

function errnoError(code: string, message: string): NodeJS.ErrnoException {
  const error = new Error(`${code}: ${message}`) as NodeJS.ErrnoException;
  error.code = code;
  return error;
}

/** The content of a file: allocated blocks by index, and the length. */
interface Content {
  blocks: Map<number, Buffer>;
  sizeBytes: number;
}

class Inode {
  live: Content = { blocks: new Map(), sizeBytes: 0 };
  durable: Content = { blocks: new Map(), sizeBytes: 0 };
  /** Blocks changed in `live` since the last datasync (sizes are always copied). */
  dirty = new Set<number>();
  /** A datasync is needed for `durable` to catch up. */
  unsynced = false;
  /** Names in the live directories that point at this inode. */
  names = 0;

  constructor(readonly id: number) {}

  sync(): void {
    if (!this.unsynced) return;
    const blocks = this.durable.blocks;
    for (const index of this.dirty) {
      const block = this.live.blocks.get(index);
      if (block === undefined) blocks.delete(index);
      else blocks.set(index, block);
    }
    this.durable.sizeBytes = this.live.sizeBytes;
    this.dirty.clear();
    this.unsynced = false;
  }

  /** After a crash: what readers see is what was durable. */
  revert(): void {
    this.live = { blocks: new Map(this.durable.blocks), sizeBytes: this.durable.sizeBytes };
    this.dirty.clear();
    this.unsynced = false;
  }
}

type Directory = Map<string, Inode>;

/** What a read of a file sees, as blocks (the file's own map: use it before the next write). */
export interface FileView {
  sizeBytes: number;
  /** Allocated blocks by index; absent blocks are holes (zeros). */
  blocks: ReadonlyMap<number, Buffer>;
}

/**
 * Whether reads of `lengthBytes` at offset 0 of two files return the same bytes (holes and bytes
 * past a file's end read as zeros), without copying them: only allocated blocks are compared,
 * and a block shared by both (a copy of a copy) is not compared at all.
 */
export function sameBytes(a: FileView, b: FileView, lengthBytes: number): boolean {
  const blockCount = Math.ceil(lengthBytes / memoryBlockBytes);
  for (const index of a.blocks.keys()) if (index < blockCount && !sameBlock(a, b, index, lengthBytes)) return false;
  for (const index of b.blocks.keys()) {
    if (index < blockCount && !a.blocks.has(index) && !sameBlock(a, b, index, lengthBytes)) return false;
  }
  return true;
}

function sameBlock(a: FileView, b: FileView, index: number, lengthBytes: number): boolean {
  const start = index * memoryBlockBytes;
  const length = Math.min(memoryBlockBytes, lengthBytes - start);
  const blockA = a.blocks.get(index) ?? zeroBlock;
  const blockB = b.blocks.get(index) ?? zeroBlock;
  const seenA = Math.max(0, Math.min(length, a.sizeBytes - start));
  const seenB = Math.max(0, Math.min(length, b.sizeBytes - start));
  if (seenA === length && seenB === length) {
    return blockA === blockB || blockA.subarray(0, length).equals(blockB.subarray(0, length));
  }
  return visibleBytes(blockA, seenA, length).equals(visibleBytes(blockB, seenB, length));
}

/** A block as a read sees it when the file ends `seen` bytes into it. */
function visibleBytes(block: Buffer, seen: number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  block.copy(bytes, 0, 0, seen);
  return bytes;
}

export interface MemoryDiskOptions {
  capacityBytes?: number;
}

export class MemoryDisk implements Disk {
  readonly capacityBytes: number;
  /** Names per directory as readers see them, and as they would survive a crash. */
  private liveDirs = new Map<string, Directory>();
  private durableDirs = new Map<string, Directory>();
  private nextInode = 1;
  /** Bumped by every crash: a handle or view of an older generation is dead. */
  private generation = 0;
  private allocatedBlocks = 0;
  /** The inodes whose blocks `allocatedBlocks` counts: those with a name or an open handle. */
  private counted = new Set<Inode>();
  private readonly openInodes = new Map<Inode, number>();

  constructor(options: MemoryDiskOptions = {}) {
    this.capacityBytes = options.capacityBytes ?? memoryDiskBytesDefault;
    this.liveDirs.set('/', new Map());
    this.durableDirs.set('/', new Map());
  }

  /** Power loss: unsynced bytes and names are gone; every earlier handle and view is fenced. */
  crash(): void {
    this.generation += 1;
    this.openInodes.clear();
    for (const names of this.liveDirs.values()) for (const inode of names.values()) inode.names -= 1;
    this.liveDirs = new Map([...this.durableDirs].map(([dir, names]) => [dir, new Map(names)]));
    for (const names of this.liveDirs.values()) for (const inode of names.values()) inode.names += 1;
    for (const inode of this.reachableInodes()) inode.revert();
    this.recount();
  }

  /**
   * The process using the disk died but the machine did not (kill -9): the cache survives, the
   * process's handles and views are fenced.
   */
  fence(): void {
    this.generation += 1;
    this.openInodes.clear();
    this.recount();
  }

  /**
   * A Disk for one incarnation of a process: it fails with EIO after the next crash, so code of
   * a crashed process that is still running cannot reach the disk of its successor.
   */
  incarnation(): Disk {
    const generation = this.generation;
    const guard = <T>(call: () => Promise<T>): Promise<T> =>
      this.generation === generation ? call() : Promise.reject(errnoError('EIO', 'the disk was lost (crash)'));
    return {
      open: (file, mode) => guard(() => this.open(file, mode)),
      rename: (source, target) => guard(() => this.rename(source, target)),
      link: (existing, alias) => guard(() => this.link(existing, alias)),
      remove: (file) => guard(() => this.remove(file)),
      list: (dir) => guard(() => this.list(dir)),
      mkdirs: (dir) => guard(() => this.mkdirs(dir)),
      exists: (file) => guard(() => this.exists(file)),
      syncDir: (dir) => guard(() => this.syncDir(dir)),
      stats: (dir) => guard(() => this.stats(dir)),
      usedBytes: (dir) => guard(() => this.usedBytes(dir)),
    };
  }

  // ---- Disk ----

  async open(file: string, mode: 'read' | 'write' | 'create'): Promise<DiskFile> {
    const { dir, name } = this.split(file);
    const names = this.liveDirs.get(dir);
    if (names === undefined) throw errnoError('ENOENT', `no directory ${dir}`);
    if (this.liveDirs.has(path.join(dir, name))) throw errnoError('EISDIR', `${file} is a directory`);
    let inode = names.get(name);
    if (inode === undefined) {
      if (mode !== 'create') throw errnoError('ENOENT', `no file ${file}`);
      inode = new Inode(this.nextInode++);
      this.setName(names, name, inode);
      this.counted.add(inode);
    }
    this.openInodes.set(inode, (this.openInodes.get(inode) ?? 0) + 1);
    return new MemoryFile(this, inode, mode !== 'read', this.generation);
  }

  async rename(source: string, target: string): Promise<void> {
    const from = this.split(source);
    const to = this.split(target);
    const inode = this.liveDirs.get(from.dir)?.get(from.name);
    if (inode === undefined) throw errnoError('ENOENT', `no file ${source}`);
    const targetNames = this.liveDirs.get(to.dir);
    if (targetNames === undefined) throw errnoError('ENOENT', `no directory ${to.dir}`);
    if (this.liveDirs.has(path.join(to.dir, to.name))) throw errnoError('EISDIR', `${target} is a directory`);
    const replaced = targetNames.get(to.name);
    this.deleteName(this.liveDirs.get(from.dir)!, from.name);
    this.setName(targetNames, to.name, inode);
    if (replaced !== undefined) this.uncountIfUnreachable(replaced);
  }

  async link(existing: string, alias: string): Promise<void> {
    const from = this.split(existing);
    const to = this.split(alias);
    const inode = this.liveDirs.get(from.dir)?.get(from.name);
    if (inode === undefined) throw errnoError('ENOENT', `no file ${existing}`);
    const targetNames = this.liveDirs.get(to.dir);
    if (targetNames === undefined) throw errnoError('ENOENT', `no directory ${to.dir}`);
    if (targetNames.has(to.name) || this.liveDirs.has(path.join(to.dir, to.name))) {
      throw errnoError('EEXIST', `${alias} exists`);
    }
    this.setName(targetNames, to.name, inode);
  }

  async remove(file: string): Promise<void> {
    const { dir, name } = this.split(file);
    if (this.liveDirs.has(path.join(dir, name))) throw errnoError('EISDIR', `${file} is a directory`);
    const names = this.liveDirs.get(dir);
    const inode = names?.get(name);
    if (names === undefined || inode === undefined) return;
    this.deleteName(names, name);
    this.uncountIfUnreachable(inode);
  }

  async list(dir: string): Promise<string[]> {
    const normal = path.resolve(dir);
    const names = this.liveDirs.get(normal);
    if (names === undefined) return [];
    const subdirs = [...this.liveDirs.keys()].filter((d) => d !== normal && path.dirname(d) === normal);
    return [...names.keys(), ...subdirs.map((d) => path.basename(d))].sort();
  }

  async mkdirs(dir: string): Promise<void> {
    const normal = path.resolve(dir);
    for (let at = normal; !this.liveDirs.has(at); at = path.dirname(at)) {
      const parent = path.dirname(at);
      if (this.liveDirs.get(parent)?.has(path.basename(at))) throw errnoError('EEXIST', `${at} is a file`);
      this.liveDirs.set(at, new Map());
      this.durableDirs.set(at, new Map());
    }
  }

  async exists(file: string): Promise<boolean> {
    const normal = path.resolve(file);
    if (this.liveDirs.has(normal)) return true;
    return this.liveDirs.get(path.dirname(normal))?.has(path.basename(normal)) ?? false;
  }

  async syncDir(dir: string): Promise<void> {
    const normal = path.resolve(dir);
    const names = this.liveDirs.get(normal);
    if (names === undefined) throw errnoError('ENOENT', `no directory ${dir}`);
    this.durableDirs.set(normal, new Map(names));
  }

  async stats(dir: string): Promise<DiskStats> {
    if (!this.liveDirs.has(path.resolve(dir))) throw errnoError('ENOENT', `no directory ${dir}`);
    const usedBytes = this.allocatedBlocks * memoryBlockBytes;
    return { totalBytes: this.capacityBytes, availableBytes: Math.max(0, this.capacityBytes - usedBytes) };
  }

  async usedBytes(dir: string): Promise<number> {
    const names = this.liveDirs.get(path.resolve(dir));
    if (names === undefined) return 0;
    let blocks = 0;
    for (const inode of names.values()) blocks += inode.live.blocks.size;
    return blocks * memoryBlockBytes;
  }

  /**
   * The live content of a file as a read would see it, without copying it (for a checker that
   * compares many large, mostly sparse files: see `sameBytes`); undefined if there is no such file.
   */
  view(file: string): FileView | undefined {
    const { dir, name } = this.split(file);
    const inode = this.liveDirs.get(dir)?.get(name);
    return inode && { sizeBytes: inode.live.sizeBytes, blocks: inode.live.blocks };
  }

  // ---- damage at rest (the simulator's corruption faults) ----
  // Bit rot, a torn sector, an operator's `cp` over the wrong file: the bytes change on the
  // platter and in the cache alike, behind every handle's back (open handles see it too).

  /** The file's inode number (a rename over it or a remove changes what the name points at). */
  fileId(file: string): number | undefined {
    const { dir, name } = this.split(file);
    return this.liveDirs.get(dir)?.get(name)?.id;
  }

  /** XORs one byte of the file with `mask` (1..255); a hole becomes an allocated block. */
  flipByteAtRest(file: string, offsetBytes: number, mask: number): void {
    const inode = this.inodeAt(file);
    const index = Math.floor(offsetBytes / memoryBlockBytes);
    for (const content of [inode.live, inode.durable]) {
      if (offsetBytes >= content.sizeBytes) continue;
      const block = Buffer.from(content.blocks.get(index) ?? zeroBlock);
      block[offsetBytes % memoryBlockBytes]! ^= mask;
      content.blocks.set(index, block.equals(zeroBlock) ? zeroBlock : block);
    }
    this.recount();
  }

  /** Cuts the file to `lengthBytes` (at most its size), cache and platter alike. */
  truncateAtRest(file: string, lengthBytes: number): void {
    const inode = this.inodeAt(file);
    for (const content of [inode.live, inode.durable]) {
      if (lengthBytes >= content.sizeBytes) continue;
      const keep = Math.ceil(lengthBytes / memoryBlockBytes);
      for (const index of [...content.blocks.keys()]) if (index >= keep) content.blocks.delete(index);
      const last = content.blocks.get(keep - 1);
      if (lengthBytes % memoryBlockBytes !== 0 && last) {
        const block = Buffer.from(last);
        block.fill(0, lengthBytes % memoryBlockBytes);
        content.blocks.set(keep - 1, block.equals(zeroBlock) ? zeroBlock : block);
      }
      content.sizeBytes = lengthBytes;
    }
    this.recount();
  }

  /** `file` now holds `source`'s bytes (as `cp source file && sync`), in its own inode. */
  overwriteAtRest(file: string, source: string): void {
    const inode = this.inodeAt(file);
    const from = this.inodeAt(source).live;
    // Blocks are never mutated once stored: sharing them is a copy.
    inode.live = { blocks: new Map(from.blocks), sizeBytes: from.sizeBytes };
    inode.durable = { blocks: new Map(from.blocks), sizeBytes: from.sizeBytes };
    inode.dirty.clear();
    inode.unsynced = false;
    this.recount();
  }

  private inodeAt(file: string): Inode {
    const { dir, name } = this.split(file);
    const inode = this.liveDirs.get(dir)?.get(name);
    if (inode === undefined) throw errnoError('ENOENT', `no file ${file}`);
    return inode;
  }

  // ---- for MemoryFile ----

  /** Throws EIO when a crash happened since the handle was opened. */
  checkGeneration(generation: number): void {
    if (generation !== this.generation) throw errnoError('EIO', 'the disk was lost (crash)');
  }

  /** Reserves `blocks` new blocks or throws ENOSPC. */
  allocate(blocks: number): void {
    if ((this.allocatedBlocks + blocks) * memoryBlockBytes > this.capacityBytes) {
      throw errnoError('ENOSPC', 'no space left on the memory disk');
    }
    this.allocatedBlocks += blocks;
  }

  release(blocks: number): void {
    this.allocatedBlocks -= blocks;
  }

  closed(inode: Inode): void {
    const count = (this.openInodes.get(inode) ?? 1) - 1;
    if (count > 0) this.openInodes.set(inode, count);
    else {
      this.openInodes.delete(inode);
      this.uncountIfUnreachable(inode);
    }
  }

  // ---- internals ----

  private split(file: string): { dir: string; name: string } {
    const normal = path.resolve(file);
    return { dir: path.dirname(normal), name: path.basename(normal) };
  }

  private reachableInodes(): Set<Inode> {
    const inodes = new Set<Inode>(this.openInodes.keys());
    for (const names of this.liveDirs.values()) for (const inode of names.values()) inodes.add(inode);
    return inodes;
  }

  /** A name in a live directory: the inode counts as reachable while it has one. */
  private setName(names: Directory, name: string, inode: Inode): void {
    const previous = names.get(name);
    if (previous !== undefined) previous.names -= 1;
    names.set(name, inode);
    inode.names += 1;
  }

  private deleteName(names: Directory, name: string): void {
    const inode = names.get(name);
    if (inode === undefined) return;
    names.delete(name);
    inode.names -= 1;
  }

  /**
   * After `inode` lost a name or its last handle: its space is free once it has neither. The
   * count stays what `recount` would make it, without walking every file (the only other way an
   * inode stops being reachable, a crash or fence, recounts).
   */
  private uncountIfUnreachable(inode: Inode): void {
    if (inode.names > 0 || this.openInodes.has(inode) || !this.counted.delete(inode)) return;
    this.allocatedBlocks -= inode.live.blocks.size;
  }

  /** Space of files with no name and no open handle is free again. */
  private recount(): void {
    this.counted = this.reachableInodes();
    let blocks = 0;
    for (const inode of this.counted) blocks += inode.live.blocks.size;
    this.allocatedBlocks = blocks;
  }
}

class MemoryFile implements DiskFile {
  private open = true;

  constructor(
    private readonly disk: MemoryDisk,
    private readonly inode: Inode,
    private readonly writable: boolean,
    private readonly generation: number,
  ) {}

  private check(write: boolean): void {
    if (!this.open) throw errnoError('EBADF', 'file is closed');
    this.disk.checkGeneration(this.generation);
    if (write && !this.writable) throw errnoError('EBADF', 'file is open for reading only');
  }

  async read(buffer: Buffer, offsetBytes: number): Promise<number> {
    this.check(false);
    const content = this.inode.live;
    const end = Math.min(content.sizeBytes, offsetBytes + buffer.length);
    // Holes are zeroed a run at a time: a mostly empty 4 MiB owner table is one fill, not 1024.
    let holeFrom = -1;
    for (let at = offsetBytes; at < end; ) {
      const index = Math.floor(at / memoryBlockBytes);
      const within = at - index * memoryBlockBytes;
      const take = Math.min(memoryBlockBytes - within, end - at);
      const block = content.blocks.get(index);
      if (block && block !== zeroBlock) {
        if (holeFrom >= 0) buffer.fill(0, holeFrom - offsetBytes, at - offsetBytes);
        holeFrom = -1;
        block.copy(buffer, at - offsetBytes, within, within + take);
      } else if (holeFrom < 0) holeFrom = at;
      at += take;
    }
    if (holeFrom >= 0) buffer.fill(0, holeFrom - offsetBytes, end - offsetBytes);
    return Math.max(0, end - offsetBytes);
  }

  async write(data: Buffer, offsetBytes: number): Promise<void> {
    this.check(true);
    const content = this.inode.live;
    const end = offsetBytes + data.length;
    const first = Math.floor(offsetBytes / memoryBlockBytes);
    const last = Math.ceil(end / memoryBlockBytes);
    let fresh = 0;
    for (let index = first; index < last; index++) if (!content.blocks.has(index)) fresh += 1;
    this.disk.allocate(fresh);
    // One allocation for the whole write, cut into its blocks (a 4 KiB buffer each was most of
    // the garbage collector's work); a block only partly written starts from its old bytes.
    const slab = Buffer.allocUnsafe((last - first) * memoryBlockBytes);
    for (let index = first; index < last; index++) {
      const blockStart = index * memoryBlockBytes;
      const from = Math.max(offsetBytes, blockStart);
      const to = Math.min(end, blockStart + memoryBlockBytes);
      const block = slab.subarray((index - first) * memoryBlockBytes, (index - first + 1) * memoryBlockBytes);
      if (to - from < memoryBlockBytes) (content.blocks.get(index) ?? zeroBlock).copy(block);
      data.copy(block, from - blockStart, from - offsetBytes, to - offsetBytes);
      content.blocks.set(index, block.equals(zeroBlock) ? zeroBlock : block);
      this.inode.dirty.add(index);
    }
    content.sizeBytes = Math.max(content.sizeBytes, end);
    this.inode.unsynced = true;
  }

  async truncate(lengthBytes: number): Promise<void> {
    this.check(true);
    const content = this.inode.live;
    const keep = Math.ceil(lengthBytes / memoryBlockBytes);
    let released = 0;
    for (const index of [...content.blocks.keys()]) {
      if (index < keep) continue;
      content.blocks.delete(index);
      this.inode.dirty.add(index);
      released += 1;
    }
    this.disk.release(released);
    // The bytes of the last kept block past the new end read as zeros if the file grows again.
    const tail = lengthBytes % memoryBlockBytes;
    const lastBlock = content.blocks.get(keep - 1);
    if (tail !== 0 && lastBlock) {
      const block = Buffer.from(lastBlock);
      block.fill(0, tail);
      content.blocks.set(keep - 1, block.equals(zeroBlock) ? zeroBlock : block);
      this.inode.dirty.add(keep - 1);
    }
    content.sizeBytes = lengthBytes;
    this.inode.unsynced = true;
  }

  async datasync(): Promise<void> {
    this.check(false);
    this.inode.sync();
  }

  async sizeBytes(): Promise<number> {
    this.check(false);
    return this.inode.live.sizeBytes;
  }

  async close(): Promise<void> {
    if (!this.open) return;
    this.open = false;
    this.disk.closed(this.inode);
  }
}
