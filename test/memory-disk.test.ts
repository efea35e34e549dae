// The in-memory disk: the Disk contract as nodeDisk keeps it, plus the volatile cache model.
import { describe, expect, test } from 'vitest';
import { readFileOrUndefined, writeFileAtomic } from '../src/io/disk.js';
import { MemoryDisk, memoryBlockBytes } from '../src/io/memory-disk.js';

async function writeFile(disk: MemoryDisk, file: string, data: Buffer, sync: boolean): Promise<void> {
  const handle = await disk.open(file, 'create');
  await handle.write(data, 0);
  if (sync) await handle.datasync();
  await handle.close();
}

describe('memory disk', () => {
  test('open modes: read and write need the file, create makes it; read-only refuses writes', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/s/obj');
    await expect(disk.open('/s/obj/a', 'read')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(disk.open('/s/obj/a', 'write')).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(disk.open('/s/nodir/a', 'create')).rejects.toMatchObject({ code: 'ENOENT' });
    await writeFile(disk, '/s/obj/a', Buffer.from('hello'), false);
    const reader = await disk.open('/s/obj/a', 'read');
    await expect(reader.write(Buffer.from('x'), 0)).rejects.toMatchObject({ code: 'EBADF' });
    const buffer = Buffer.alloc(8, 0xff);
    expect(await reader.read(buffer, 1)).toBe(4);
    expect(buffer.subarray(0, 4).toString()).toBe('ello');
    expect(await reader.sizeBytes()).toBe(5);
    await reader.close();
    await expect(reader.read(buffer, 0)).rejects.toMatchObject({ code: 'EBADF' });
  });

  test('holes read as zeros; truncate shrinks and grows; only written blocks take space', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    const file = await disk.open('/d/f', 'create');
    await file.truncate(4 * 2 ** 20);
    expect(await disk.usedBytes('/d')).toBe(0);
    await file.write(Buffer.alloc(10, 7), 3 * memoryBlockBytes - 5); // straddles two blocks
    expect(await disk.usedBytes('/d')).toBe(2 * memoryBlockBytes);
    const back = Buffer.alloc(20, 0xff);
    await file.read(back, 3 * memoryBlockBytes - 10);
    expect([...back]).toEqual([0, 0, 0, 0, 0, ...Array(10).fill(7), 0, 0, 0, 0, 0]);
    await file.truncate(3 * memoryBlockBytes - 2);
    expect(await file.sizeBytes()).toBe(3 * memoryBlockBytes - 2);
    await file.truncate(4 * memoryBlockBytes);
    const after = Buffer.alloc(10, 0xff);
    await file.read(after, 3 * memoryBlockBytes - 5);
    expect([...after]).toEqual([7, 7, 7, 0, 0, 0, 0, 0, 0, 0]);
    expect(await disk.usedBytes('/d')).toBe(memoryBlockBytes);
    await file.close();
    const stats = await disk.stats('/d');
    expect(stats.totalBytes - stats.availableBytes).toBe(memoryBlockBytes);
  });

  test('a read across holes and written blocks zeroes every hole and copies every block', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    const file = await disk.open('/d/f', 'create');
    const sizeBytes = 8 * memoryBlockBytes;
    await file.truncate(sizeBytes);
    await file.write(Buffer.alloc(memoryBlockBytes, 1), 2 * memoryBlockBytes); // block 2
    await file.write(Buffer.alloc(memoryBlockBytes, 0), 4 * memoryBlockBytes); // block 4: written zeros
    await file.write(Buffer.alloc(3, 5), 6 * memoryBlockBytes + 7); // part of block 6
    const expected = Buffer.alloc(sizeBytes - 3);
    expected.fill(1, 2 * memoryBlockBytes - 3, 3 * memoryBlockBytes - 3);
    expected.fill(5, 6 * memoryBlockBytes + 4, 6 * memoryBlockBytes + 7);
    const back = Buffer.alloc(sizeBytes - 3 + 16, 0xff); // longer than the file: the tail is untouched
    expect(await file.read(back, 3)).toBe(sizeBytes - 3);
    expect(back.subarray(0, sizeBytes - 3).equals(expected)).toBe(true);
    expect(back.subarray(sizeBytes - 3).every((byte) => byte === 0xff)).toBe(true);
    await file.close();
  });

  test('rename replaces, link aliases, remove frees, list is sorted, exists sees files and dirs', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/s/obj/.tmp');
    await writeFile(disk, '/s/obj/.tmp/new', Buffer.from('new'), true);
    await writeFile(disk, '/s/obj/b', Buffer.from('old'), true);
    await disk.link('/s/obj/b', '/s/obj/.tmp/kept');
    await expect(disk.link('/s/obj/b', '/s/obj/.tmp/kept')).rejects.toMatchObject({ code: 'EEXIST' });
    await disk.rename('/s/obj/.tmp/new', '/s/obj/b');
    expect((await readFileOrUndefined(disk, '/s/obj/b'))?.toString()).toBe('new');
    expect((await readFileOrUndefined(disk, '/s/obj/.tmp/kept'))?.toString()).toBe('old');
    expect(await disk.list('/s/obj')).toEqual(['.tmp', 'b']);
    expect(await disk.list('/s/none')).toEqual([]);
    expect(await disk.exists('/s/obj/.tmp')).toBe(true);
    await expect(disk.rename('/s/obj/missing', '/s/obj/c')).rejects.toMatchObject({ code: 'ENOENT' });
    await disk.remove('/s/obj/.tmp/kept');
    await disk.remove('/s/obj/.tmp/kept'); // like rm -f: a missing file is fine
    expect(await disk.exists('/s/obj/.tmp/kept')).toBe(false);
    expect(await disk.usedBytes('/s/obj')).toBe(memoryBlockBytes);
    await expect(disk.remove('/s/obj/.tmp')).rejects.toMatchObject({ code: 'EISDIR' });
  });

  test('space is freed when a file has neither a name nor an open handle, and not before', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    const used = async () => (await disk.stats('/d')).totalBytes - (await disk.stats('/d')).availableBytes;
    await writeFile(disk, '/d/a', Buffer.alloc(2 * memoryBlockBytes, 1), true);
    await disk.link('/d/a', '/d/alias');
    await writeFile(disk, '/d/b', Buffer.alloc(memoryBlockBytes, 2), true);
    expect(await used()).toBe(3 * memoryBlockBytes);
    await disk.rename('/d/b', '/d/a'); // a keeps its other name
    await disk.rename('/d/a', '/d/a'); // onto itself: nothing changes
    expect(await used()).toBe(3 * memoryBlockBytes);
    const reader = await disk.open('/d/alias', 'read');
    await disk.remove('/d/alias');
    expect(await used()).toBe(3 * memoryBlockBytes); // open: still there
    await reader.close();
    expect(await used()).toBe(memoryBlockBytes);
    await disk.link('/d/a', '/d/c');
    await disk.rename('/d/c', '/d/a'); // two names of one file become one
    await disk.remove('/d/a');
    expect(await used()).toBe(0);
  });

  test('an open handle keeps reading a file that was removed or renamed over', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    await writeFile(disk, '/d/a', Buffer.from('first'), true);
    const reader = await disk.open('/d/a', 'read');
    await writeFile(disk, '/d/t', Buffer.from('second'), true);
    await disk.rename('/d/t', '/d/a');
    const buffer = Buffer.alloc(5);
    await reader.read(buffer, 0);
    expect(buffer.toString()).toBe('first');
    await reader.close();
  });

  test('unsynced write lost at crash, synced kept', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    await writeFile(disk, '/d/synced', Buffer.from('durable'), true);
    await disk.syncDir('/d');
    const file = await disk.open('/d/synced', 'write');
    await file.write(Buffer.from('VOLATILE'), 0); // overwritten in the cache only
    await writeFile(disk, '/d/unsynced-bytes', Buffer.from('lost'), false);
    await disk.syncDir('/d'); // the name is durable, its bytes are not
    await writeFile(disk, '/d/unsynced-name', Buffer.from('lost'), true); // bytes synced, name not
    disk.crash();
    await expect(file.read(Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'EIO' });
    expect((await readFileOrUndefined(disk, '/d/synced'))?.toString()).toBe('durable');
    expect(await readFileOrUndefined(disk, '/d/unsynced-bytes')).toEqual(Buffer.alloc(0));
    expect(await disk.exists('/d/unsynced-name')).toBe(false);
    expect(await disk.list('/d')).toEqual(['synced', 'unsynced-bytes']);
  });

  test('a rename not followed by syncDir is undone by a crash; writeFileAtomic survives it', async () => {
    const disk = new MemoryDisk();
    await disk.mkdirs('/d');
    await writeFileAtomic(disk, '/d/config', Buffer.from('v1'));
    await writeFile(disk, '/d/next', Buffer.from('v2'), true);
    await disk.rename('/d/next', '/d/config');
    disk.crash();
    expect((await readFileOrUndefined(disk, '/d/config'))?.toString()).toBe('v1');
    expect(await disk.list('/d')).toEqual(['config']);
    // The names a sync made durable count again: the v2 file had no durable name and is gone.
    expect(await disk.usedBytes('/d')).toBe(memoryBlockBytes);
  });

  test('an incarnation view is fenced by the next crash; a new view works', async () => {
    const disk = new MemoryDisk();
    const before = disk.incarnation();
    await before.mkdirs('/d');
    disk.crash();
    await expect(before.exists('/d')).rejects.toMatchObject({ code: 'EIO' });
    await expect(before.open('/d/x', 'create')).rejects.toMatchObject({ code: 'EIO' });
    expect(await disk.incarnation().exists('/d')).toBe(true);
    expect(await disk.exists('/d/x')).toBe(false);
  });

  test('a full disk refuses new blocks with ENOSPC, and rewrites of allocated blocks still work', async () => {
    const disk = new MemoryDisk({ capacityBytes: 2 * memoryBlockBytes });
    await disk.mkdirs('/d');
    const file = await disk.open('/d/f', 'create');
    await file.write(Buffer.alloc(2 * memoryBlockBytes, 1), 0);
    await expect(file.write(Buffer.alloc(1, 1), 2 * memoryBlockBytes)).rejects.toMatchObject({ code: 'ENOSPC' });
    await file.write(Buffer.alloc(10, 2), 100);
    expect((await disk.stats('/d')).availableBytes).toBe(0);
    await file.truncate(0);
    expect((await disk.stats('/d')).availableBytes).toBe(2 * memoryBlockBytes);
    await file.close();
  });
});
