// The volume layer (src/volume): VolumeIo over an in-memory ObjectIo, and its bounded owner-table
// cache — LRU eviction that never drops an entry update still on its way to the replicas.
import { describe, expect, test } from 'vitest';
import { SdError } from '../src/engine/errors.js';
import { tableEntriesPerChunk } from '../src/engine/limits.js';
import { asVid, dataOid, inodeOid, type Oid } from '../src/engine/oid.js';
import { tableEntriesInChunk } from '../src/engine/vdi.js';
import { OwnerTable } from '../src/volume/owner-table.js';
import { VolumeIo } from '../src/volume/volume-io.js';
import { MemoryObjects } from './support/memory-objects.js';

const objectBytes = 4 * 2 ** 20;

describe('volume I/O', () => {
  const entry = (vid: number, parentVid = 0, snapshotSec = 0) => ({
    vid, name: 'v', tag: '', snapId: 1, parentVid, createdSec: 0, snapshotSec,
    sizeBytes: 64 * 2 ** 20, copies: 1, blockSizeShift: 22, hyper: false, deleted: false,
  });
  const sizeOf = (o: Oid) => ((o >> 63n) === 1n ? 4 * 2 ** 20 : objectBytes);

  test('unaligned writes across objects, thin reads, copy-on-write from a parent', async () => {
    const objects = new MemoryObjects(sizeOf);
    const parent = new VolumeIo(objects, entry(1));
    const data = Buffer.alloc(objectBytes + 100, 0xab);
    await parent.write(objectBytes - 50, data);
    expect(await parent.read(objectBytes - 51, 2)).toEqual(Buffer.from([0, 0xab]));
    expect(await parent.read(10 * objectBytes, 8)).toEqual(Buffer.alloc(8)); // never written
    expect([...objects.objects.keys()].filter((o) => (o >> 63n) === 0n)).toHaveLength(3);
    // A child made from the parent's table shares until it writes (COW keeps the rest).
    const tables = [...objects.objects.entries()].filter(([o]) => (o >> 63n) === 1n);
    for (const [o, bytes] of tables) objects.objects.set(((o & ~(0xffffffn << 32n)) | (2n << 32n)) as Oid, Buffer.from(bytes));
    const child = new VolumeIo(objects, entry(2, 1));
    await child.write(objectBytes, Buffer.from('child'));
    expect((await child.read(objectBytes, 6)).toString('latin1')).toBe('child\xab');
    expect((await parent.read(objectBytes, 5))).toEqual(Buffer.alloc(5, 0xab));
    expect(await child.owner(1)).toBe(2);
    expect(await child.owner(0)).toBe(1);
  });

  test('discard of whole objects frees them; extents report holes', async () => {
    const objects = new MemoryObjects(sizeOf);
    const volume = new VolumeIo(objects, entry(1));
    await volume.write(0, Buffer.alloc(3 * objectBytes, 1));
    await volume.discard(objectBytes, objectBytes);
    expect(await volume.extents(0, 4 * objectBytes)).toEqual([
      { offsetBytes: 0, lengthBytes: objectBytes, allocated: true },
      { offsetBytes: objectBytes, lengthBytes: objectBytes, allocated: false },
      { offsetBytes: 2 * objectBytes, lengthBytes: objectBytes, allocated: true },
      { offsetBytes: 3 * objectBytes, lengthBytes: objectBytes, allocated: false },
    ]);
    expect(objects.objects.has(dataOid(asVid(1), 1))).toBe(false);
    expect(await volume.read(objectBytes, 4)).toEqual(Buffer.alloc(4));
  });

  test('snapshots are read-only; ranges past the end are refused', async () => {
    const snapshot = new VolumeIo(new MemoryObjects(sizeOf), entry(1, 0, 5));
    await expect(snapshot.write(0, Buffer.alloc(1))).rejects.toMatchObject({ code: 'READ_ONLY' });
    const volume = new VolumeIo(new MemoryObjects(sizeOf), entry(1));
    await expect(volume.read(64 * 2 ** 20 - 1, 2)).rejects.toMatchObject({ code: 'OUT_OF_RANGE' });
  });
});


const tableBytes = tableEntriesPerChunk * 4;
const isTable = (oid: Oid) => oid >> 63n === 1n;
const chunkOf = (oid: Oid) => Number(oid & 0xffffffffn);

/** MemoryObjects that logs every table load and save, and can hold table saves until released. */
class WatchedObjects extends MemoryObjects {
  readonly events: string[] = [];
  /** Called at every table load and save, to sample the cache while requests are in flight. */
  onTableIo: () => void = () => undefined;
  failTableLoads = 0;
  private held: Array<() => void> | undefined;

  hold(): void {
    this.held = [];
  }
  get heldSaves(): number {
    return this.held?.length ?? 0;
  }
  release(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const resume of held) resume();
  }

  override async read(oid: Oid, offset: number, length: number): Promise<Buffer> {
    if (isTable(oid)) {
      this.events.push(`load ${chunkOf(oid)}`);
      this.onTableIo();
      if (this.failTableLoads > 0) {
        this.failTableLoads -= 1;
        throw new SdError('IO', 'disk error');
      }
    }
    return super.read(oid, offset, length);
  }

  override async write(oid: Oid, offset: number, data: Buffer, create: boolean): Promise<void> {
    if (isTable(oid)) {
      const held = this.held;
      if (held) await new Promise<void>((resume) => held.push(resume));
      this.events.push(`save ${chunkOf(oid)} entries ${offset / 4}..${offset / 4 + data.length / 4 - 1}`);
      this.onTableIo();
    }
    return super.write(oid, offset, data, create);
  }
}

/** Lets every callback already queued run (a negative check: what must not have happened yet). */
async function turns(): Promise<void> {
  for (let i = 0; i < 10; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

describe('owner-table cache', () => {
  const sizeOf = (oid: Oid) => (isTable(oid) ? tableBytes : 2 ** 20);
  const entryIn = (chunk: number, slot = 3) => chunk * tableEntriesPerChunk + slot;
  /** A VDI of 8 whole table chunks. */
  const size = { sizeBytes: 8 * tableEntriesPerChunk * 2 ** 20, blockSizeShift: 20 };

  test('keeps at most chunksMax chunks, evicting the least recently used', async () => {
    const objects = new WatchedObjects(sizeOf);
    const table = new OwnerTable(objects, asVid(1), 2, size);
    const cached: number[] = [];
    for (const chunk of [0, 1, 0, 2, 0, 1]) {
      expect(await table.owner(entryIn(chunk))).toBe(0);
      cached.push(table.cachedChunks);
    }
    // 0 was used after 1, so 2 evicts 1; then 1 evicts 2.
    expect(objects.events).toEqual(['load 0', 'load 1', 'load 2', 'load 1']);
    expect(cached).toEqual([1, 2, 2, 2, 2, 2]);
  });

  test('holds the bound under concurrent use of more chunks than it may keep', async () => {
    const objects = new WatchedObjects(sizeOf);
    const table = new OwnerTable(objects, asVid(1), 3, size);
    let mostCached = 0;
    objects.onTableIo = () => (mostCached = Math.max(mostCached, table.cachedChunks));
    const chunks = Array.from({ length: 12 }, (_, k) => k % 8);
    await Promise.all(chunks.map((chunk, k) => table.setOwner(entryIn(chunk, k), 1)));
    expect(mostCached).toBe(3);
    expect(table.cachedChunks).toBe(3);
    const fresh = new OwnerTable(objects, asVid(1), 1, size);
    for (const [k, chunk] of chunks.entries()) expect(await fresh.owner(entryIn(chunk, k))).toBe(1);
  });

  test('an entry update on its way keeps its chunk cached: the eviction waits and loses nothing', async () => {
    const objects = new WatchedObjects(sizeOf);
    const table = new OwnerTable(objects, asVid(1), 1, size);
    await table.owner(0);
    objects.hold();
    const first = table.setOwner(5, 1);
    await turns();
    expect(objects.heldSaves).toBe(1);
    const second = table.setOwner(9, 1); // coalesced into the round after the held one
    let otherOwner: number | undefined;
    const other = table.owner(entryIn(1)).then((owner) => (otherOwner = owner));
    await turns();
    // Chunk 1 needs chunk 0's place, and chunk 0 has updates in flight.
    expect(otherOwner).toBeUndefined();
    expect(objects.events).toEqual(['load 0']);
    expect(table.cachedChunks).toBe(1);
    objects.release();
    await Promise.all([first, second, other]);
    expect(otherOwner).toBe(0);
    expect(objects.events).toEqual(['load 0', 'save 0 entries 5..5', 'save 0 entries 9..9', 'load 1']);
    // Chunk 0 was evicted after its saves: loaded again, it has both entries.
    expect([await table.owner(5), await table.owner(9), await table.owner(7)]).toEqual([1, 1, 0]);
    expect(objects.events.at(-1)).toBe('load 0');
    expect(table.cachedChunks).toBe(1);
  });

  test('a chunk that fails to load takes no place and is loaded again by the next use', async () => {
    const objects = new WatchedObjects(sizeOf);
    const table = new OwnerTable(objects, asVid(1), 1, size);
    objects.failTableLoads = 1;
    await expect(table.owner(entryIn(0))).rejects.toMatchObject({ code: 'IO' });
    expect(table.cachedChunks).toBe(0);
    await table.setOwner(entryIn(1), 1);
    await table.setOwner(entryIn(0), 1);
    expect([await table.owner(entryIn(0)), await table.owner(entryIn(1))]).toEqual([1, 1]);
    expect(objects.events).toEqual(['load 0', 'load 1', 'save 1 entries 3..3', 'load 0', 'save 0 entries 3..3', 'load 1']);
  });

  test('a small VDI reads only the entries its size reaches, and entries past them stay 0', async () => {
    const objects = new WatchedObjects(sizeOf);
    const lengths: number[] = [];
    const read = objects.read.bind(objects);
    objects.read = (oid, offset, length) => {
      if (isTable(oid)) lengths.push(length);
      return read(oid, offset, length);
    };
    const small = { sizeBytes: 10 * 2 ** 20 + 1, blockSizeShift: 20 }; // 11 objects
    const table = new OwnerTable(objects, asVid(1), 1, small);
    await table.setOwner(10, 1);
    const whole = new OwnerTable(objects, asVid(1), 1, size);
    expect([await whole.owner(10), await whole.owner(11), await whole.owner(9)]).toEqual([1, 0, 0]);
    const again = new OwnerTable(objects, asVid(1), 1, small);
    expect([await again.owner(10), await again.owner(9)]).toEqual([1, 0]);
    expect(lengths).toEqual([11 * 4, tableBytes, 11 * 4]);
    expect(tableEntriesInChunk(small, 0)).toBe(11);
    expect(tableEntriesInChunk(small, 1)).toBe(0);
    expect(tableEntriesInChunk({ sizeBytes: (tableEntriesPerChunk + 2) * 2 ** 20, blockSizeShift: 20 }, 1)).toBe(2);
  });

  test('a hyper VDI with one cached chunk: concurrent writes over three chunks all read back', async () => {
    const objects = new WatchedObjects(sizeOf);
    const entry = {
      vid: 1, name: 'h', tag: '', snapId: 1, parentVid: 0, createdSec: 0, snapshotSec: 0,
      sizeBytes: 4 * tableEntriesPerChunk * 2 ** 20, copies: 1, blockSizeShift: 20, hyper: true, deleted: false,
    };
    const volume = new VolumeIo(objects, entry, 1);
    const indexes = [0, entryIn(1, 0), entryIn(2, 0), 1, entryIn(1, 1), entryIn(2, 1)];
    const at = (index: number) => index * 2 ** 20 + 100;
    await Promise.all(indexes.map((index, k) => volume.write(at(index), Buffer.alloc(4096, k + 1))));
    const reopened = new VolumeIo(objects, entry, 1);
    for (const [k, index] of indexes.entries()) {
      expect(await reopened.read(at(index), 4096)).toEqual(Buffer.alloc(4096, k + 1));
      expect(await reopened.owner(index)).toBe(1);
    }
    expect(objects.objects.has(dataOid(asVid(1), entryIn(2, 1)))).toBe(true);
    expect([0, 1, 2].every((chunk) => objects.objects.has(inodeOid(asVid(1), chunk)))).toBe(true);
  });
});
