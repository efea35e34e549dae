// Open read handles of recently read objects: a 4 KiB random read should not pay an open and a
// close. A handle names an inode, so every rename over the object or removal must drop it
// (`forget`) before the write is acknowledged; a handle in use is closed when its last reader ends.
import type { DiskFile } from '../io/disk.js';

export const readHandlesMax = 256;

/** What a reader may remember about the open file, for as long as the handle lives. */
export interface HandleMemo {
  /** The file's header (identity and block sums) as last read and found good. */
  header?: Buffer | undefined;
}

interface Entry {
  file: Promise<DiskFile>;
  memo: HandleMemo;
  readers: number;
  retired: boolean;
}

export class ReadHandles<K> {
  private readonly entries = new Map<K, Entry>();

  constructor(private readonly open: (key: K) => Promise<DiskFile>) {}

  async use<T>(key: K, work: (file: DiskFile, memo: HandleMemo) => Promise<T>): Promise<T> {
    let entry = this.entries.get(key);
    if (entry) {
      // Most recently used last, so eviction takes the oldest.
      this.entries.delete(key);
      this.entries.set(key, entry);
    } else {
      entry = { file: this.open(key), memo: {}, readers: 0, retired: false };
      this.entries.set(key, entry);
      entry.file.catch(() => {
        if (this.entries.get(key) === entry) this.entries.delete(key);
      });
      this.evict();
    }
    entry.readers += 1;
    try {
      return await work(await entry.file, entry.memo);
    } finally {
      entry.readers -= 1;
      if (entry.retired && entry.readers === 0) void closeQuietly(entry.file);
    }
  }

  /** The object was replaced or removed: later reads must open it again. */
  forget(key: K): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.retire(entry);
  }

  closeAll(): void {
    for (const key of [...this.entries.keys()]) this.forget(key);
  }

  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= readHandlesMax) return;
      this.entries.delete(key);
      this.retire(entry);
    }
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.readers === 0) void closeQuietly(entry.file);
  }
}

async function closeQuietly(file: Promise<DiskFile>): Promise<void> {
  try {
    await (await file).close();
  } catch {
    // never opened, or already gone: nothing to release
  }
}
