// The only door to the local disk. The store is written against `Disk`, so tests can hand it a
// disk that fails; `nodeDisk` is the real one.
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { constants, read as fsRead, write as fsWrite } from 'node:fs';

export interface DiskFile {
  read(buffer: Buffer, offsetBytes: number): Promise<number>;
  write(data: Buffer, offsetBytes: number): Promise<void>;
  truncate(lengthBytes: number): Promise<void>;
  datasync(): Promise<void>;
  sizeBytes(): Promise<number>;
  close(): Promise<void>;
}

export interface DiskStats {
  totalBytes: number;
  availableBytes: number;
}

export interface Disk {
  open(file: string, mode: 'read' | 'write' | 'create'): Promise<DiskFile>;
  rename(source: string, target: string): Promise<void>;
  /** A second name for a file (a hard link). */
  link(existing: string, alias: string): Promise<void>;
  remove(file: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  mkdirs(dir: string): Promise<void>;
  exists(file: string): Promise<boolean>;
  /** Makes renames and removals inside `dir` durable. */
  syncDir(dir: string): Promise<void>;
  stats(dir: string): Promise<DiskStats>;
  /** Bytes the files under `dir` take on disk (allocated blocks, so holes don't count). */
  usedBytes(dir: string): Promise<number>;
}

// Reads and writes go through the callback API on the handle's descriptor: a FileHandle's promise
// methods cost about 6 µs more CPU per call (measured: 15 against 9 µs for a 4 KiB pread at
// queue depth 16), and a 4 KiB object read makes two of them. The handle still owns the fd:
// callers never close it while one of these runs (store/read-handles.ts counts readers).
function readAt(fd: number, buffer: Buffer, at: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsRead(fd, buffer, at, buffer.length - at, position, (error, bytes) => (error ? reject(error) : resolve(bytes)));
  });
}

function writeAt(fd: number, data: Buffer, at: number, position: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fsWrite(fd, data, at, data.length - at, position, (error, bytes) => (error ? reject(error) : resolve(bytes)));
  });
}

class NodeFile implements DiskFile {
  constructor(private readonly handle: fsp.FileHandle) {}
  async read(buffer: Buffer, offsetBytes: number): Promise<number> {
    let done = 0;
    while (done < buffer.length) {
      const bytesRead = await readAt(this.handle.fd, buffer, done, offsetBytes + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return done;
  }
  async write(data: Buffer, offsetBytes: number): Promise<void> {
    let done = 0;
    while (done < data.length) done += await writeAt(this.handle.fd, data, done, offsetBytes + done);
  }
  truncate(lengthBytes: number): Promise<void> {
    return this.handle.truncate(lengthBytes);
  }
  datasync(): Promise<void> {
    return this.handle.datasync();
  }
  async sizeBytes(): Promise<number> {
    return (await this.handle.stat()).size;
  }
  close(): Promise<void> {
    return this.handle.close();
  }
}

const openFlags = {
  read: constants.O_RDONLY,
  write: constants.O_RDWR,
  create: constants.O_RDWR | constants.O_CREAT,
} as const;

export const nodeDisk: Disk = {
  async open(file, mode) {
    return new NodeFile(await fsp.open(file, openFlags[mode], 0o600));
  },
  rename: (source, target) => fsp.rename(source, target),
  link: (existing, alias) => fsp.link(existing, alias),
  async remove(file) {
    await fsp.rm(file, { force: true });
  },
  async list(dir) {
    try {
      return await fsp.readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  },
  async mkdirs(dir) {
    await fsp.mkdir(dir, { recursive: true });
  },
  async exists(file) {
    try {
      await fsp.access(file);
      return true;
    } catch {
      return false;
    }
  },
  async syncDir(dir) {
    const handle = await fsp.open(dir, constants.O_RDONLY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  async stats(dir) {
    const stats = await fsp.statfs(dir);
    return { totalBytes: stats.blocks * stats.bsize, availableBytes: stats.bavail * stats.bsize };
  },
  async usedBytes(dir) {
    let total = 0;
    for (const name of await nodeDisk.list(dir)) {
      try {
        const stat = await fsp.stat(path.join(dir, name));
        if (stat.isFile()) total += stat.blocks * 512;
      } catch {
        // removed while we looked: it takes no space
      }
    }
    return total;
  },
};

/** Small metadata files (config, epochs, registry): written whole, durable, never torn. */
export async function writeFileAtomic(disk: Disk, file: string, data: Buffer): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}`;
  const handle = await disk.open(temporary, 'create');
  try {
    await handle.truncate(0);
    await handle.write(data, 0);
    await handle.datasync();
  } catch (error) {
    // On a full disk a partial temporary would hold on to the space the next try needs.
    await handle.close().catch(() => undefined);
    await disk.remove(temporary).catch(() => undefined);
    throw error;
  }
  await handle.close();
  await disk.rename(temporary, file);
  await disk.syncDir(path.dirname(file));
}

export async function readFileOrUndefined(disk: Disk, file: string): Promise<Buffer | undefined> {
  let handle: DiskFile;
  try {
    handle = await disk.open(file, 'read');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  try {
    const buffer = Buffer.alloc(await handle.sizeBytes());
    await handle.read(buffer, 0);
    return buffer;
  } finally {
    await handle.close();
  }
}

/**
 * Group commit: callers that arrive while a sync runs share the next one, so many concurrent
 * renames cost one directory sync instead of one each.
 */
export class GroupSync {
  private current: Promise<void> | undefined;
  private next: Promise<void> | undefined;

  constructor(private readonly run: () => Promise<void>) {}

  sync(): Promise<void> {
    if (!this.current) {
      this.current = this.run().finally(() => {
        this.current = undefined;
      });
      return this.current;
    }
    this.next ??= this.current
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.sync();
      });
    return this.next;
  }
}
