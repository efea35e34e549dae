// The store's write cache (docs/durability.md) on a memory disk: cached writes survive the death
// of the process (the disk's cache outlives it), are recorded dirty so a power loss is noticed
// and the copies it may have made older are reported lost, and a flush makes them durable,
// syncing exactly the dirty objects of the VDI asked for, once each.
import { describe, expect, it } from 'vitest';
import { asVid, dataOid, inodeOid } from '../src/engine/oid.js';
import { MemoryDisk } from '../src/io/memory-disk.js';
import { systemClock } from '../src/io/clock.js';
import { ObjectStore } from '../src/store/object-store.js';
import { decodeDirtyRecords, encodeDirtyRecord } from '../src/store/dirty-set.js';
import { dataOffset } from '../src/store/block-sums.js';
import { md5, pattern, SimTestCluster } from './support/sim-cluster.js';

const MiB = 1024 * 1024;

const sizeBytes = 1024 * 1024;
const dir = '/store/obj';
const vid = asVid(7);
const a = dataOid(vid, 1);
const b = dataOid(vid, 2);
const other = dataOid(asVid(8), 1);

async function openStore(disk: MemoryDisk, bootId: string): Promise<{ store: ObjectStore; opened: Awaited<ReturnType<ObjectStore['open']>> }> {
  const store = new ObjectStore({ dir, disk: disk.incarnation(), clock: systemClock, bootId });
  const opened = await store.open();
  return { store, opened };
}

const block = (fill: number) => Buffer.alloc(4096, fill);

describe('the dirty set file', () => {
  it('keeps the last word on each object; a torn record is skipped, not the end', () => {
    const bytes = Buffer.concat([
      encodeDirtyRecord('boot', 42n),
      encodeDirtyRecord('dirty', a),
      encodeDirtyRecord('dirty', b),
      Buffer.alloc(20, 0x77), // torn
      encodeDirtyRecord('synced', a),
      encodeDirtyRecord('lost', other),
    ]);
    const state = decodeDirtyRecords(bytes);
    expect(state.boot).toBe(42n);
    expect([...state.dirty]).toEqual([b]);
    expect([...state.lost]).toEqual([other]);
  });
});

describe('cached writes on a memory disk', () => {
  it('survive the death of the process: reopened on the same boot, every byte is there and nothing is lost', async () => {
    const disk = new MemoryDisk();
    const { store } = await openStore(disk, 'boot-1');
    await store.writeRange(a, 4096, block(1), sizeBytes, true);
    await store.writeWhole(b, Buffer.alloc(sizeBytes, 2), sizeBytes, undefined, true);
    expect(store.isDirty(a) && store.isDirty(b)).toBe(true);
    disk.fence(); // kill -9: the cache stays
    const { store: again, opened } = await openStore(disk, 'boot-1');
    expect(opened).toMatchObject({ resummed: 2, lost: [] });
    expect(await again.read(a, 4096, 4096)).toEqual(block(1));
    expect((await again.read(b, 0, sizeBytes)).equals(Buffer.alloc(sizeBytes, 2))).toBe(true);
    expect(again.isDirty(a)).toBe(false); // synced at open
  });

  it('a block whose data landed and whose sum did not (a write torn by a crash) is summed again, not a permanent error', async () => {
    const disk = new MemoryDisk();
    const { store } = await openStore(disk, 'boot-1');
    await store.writeRange(a, 0, block(1), sizeBytes, true);
    // The data of a second write reached the file, its sum did not.
    const raw = await disk.open(`${dir}/${a.toString(16).padStart(16, '0')}`, 'write');
    await raw.write(block(9), dataOffset);
    await raw.close();
    await expect(store.read(a, 0, 4096)).rejects.toMatchObject({ code: 'CORRUPT' });
    disk.fence();
    const { store: again } = await openStore(disk, 'boot-1');
    expect(await again.read(a, 0, 4096)).toEqual(block(9));
  });

  it('lost with the power when not flushed: the copies are reported lost and read without error as they were', async () => {
    const disk = new MemoryDisk();
    const { store } = await openStore(disk, 'boot-1');
    await store.writeWhole(a, Buffer.alloc(sizeBytes, 1), sizeBytes); // durable
    await store.writeRange(a, 0, block(5), sizeBytes, true); // cached over it
    await store.writeRange(b, 0, block(6), sizeBytes, true); // cached, a new object
    disk.crash();
    const { store: again, opened } = await openStore(disk, 'boot-2');
    expect(new Set(opened.lost)).toEqual(new Set([a, b]));
    expect(await again.read(a, 0, 4096)).toEqual(block(1)); // the old bytes
    expect(await again.exists(b)).toBe(false); // never reached the disk: not there, not a broken file
    // Still lost after another restart, until a peer's copy replaced it.
    disk.fence();
    const { store: third, opened: reopened } = await openStore(disk, 'boot-2');
    expect(new Set(reopened.lost)).toEqual(new Set([a, b]));
    await third.writeWhole(a, Buffer.alloc(sizeBytes, 3), sizeBytes);
    await third.settleLost(a);
    await third.close();
    const { opened: settled } = await openStore(disk, 'boot-3');
    expect(settled.lost).toEqual([b]);
  });

  it('a flush makes them durable: a power loss after it loses nothing, and reports nothing lost', async () => {
    const disk = new MemoryDisk();
    const { store } = await openStore(disk, 'boot-1');
    await store.writeRange(a, 8192, block(7), sizeBytes, true);
    await store.writeWhole(b, Buffer.alloc(sizeBytes, 8), sizeBytes, undefined, true);
    await store.writeRange(inodeOid(vid), 0, Buffer.from([1, 2, 3, 4]), 4 * sizeBytes, true);
    await store.writeRange(other, 0, block(9), sizeBytes, true);
    // Exactly the VDI's dirty objects, once each; a second flush has nothing to do.
    expect(await store.flush((oid) => Number((oid >> 32n) & 0xffffffn) === vid)).toBe(3);
    expect(await store.flush((oid) => Number((oid >> 32n) & 0xffffffn) === vid)).toBe(0);
    expect(store.isDirty(other)).toBe(true);
    disk.crash();
    const { store: again, opened } = await openStore(disk, 'boot-2');
    expect(opened.lost).toEqual([other]);
    expect(await again.read(a, 8192, 4096)).toEqual(block(7));
    expect((await again.read(b, 0, sizeBytes)).equals(Buffer.alloc(sizeBytes, 8))).toBe(true);
    expect(await again.read(inodeOid(vid), 0, 4)).toEqual(Buffer.from([1, 2, 3, 4]));
  });

  it('a write during a flush keeps its object dirty', async () => {
    const disk = new MemoryDisk();
    const { store } = await openStore(disk, 'boot-1');
    await store.writeRange(a, 0, block(1), sizeBytes, true);
    const flushing = store.flush();
    const writing = store.writeRange(a, 4096, block(2), sizeBytes, true);
    await Promise.all([flushing, writing]);
    expect(store.isDirty(a)).toBe(true);
    disk.crash();
    const { opened } = await openStore(disk, 'boot-2');
    expect(opened.lost).toEqual([a]);
  });
});

describe('FLUSH and FUA through the gateway, on every replica (simulated cluster)', () => {
  it('a cached write is dirty on every replica until a flush; FUA and writethrough writes never are; a flush survives power loss of every host', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    await c.start(0, 1, 2);
    await c.format(0, 3);
    await c.create(0, 'v', 8 * MiB);
    const volume = await c.settle(c.sheep(0).volumeProvider().open('v'), 'open v');
    const vidOf = volume.info.vid;
    const object0 = dataOid(asVid(vidOf), 0);
    const object1 = dataOid(asVid(vidOf), 1);
    const dirtyOn = (oid: typeof object0) => [0, 1, 2].filter((i) => c.sheep(i).store.isDirty(oid));
    const first = pattern(MiB, 1);
    await c.settle(volume.write(0, first), 'cached write');
    expect(dirtyOn(object0)).toEqual([0, 1, 2]);
    await c.settle(volume.flush(), 'flush');
    expect(dirtyOn(object0)).toEqual([]);
    expect(dirtyOn(inodeOid(asVid(vidOf)))).toEqual([]); // its table entry too
    // FUA: that write on every replica's disk before the reply, nothing left dirty.
    const fua = pattern(4096, 2);
    await c.settle(volume.write(8192, fua, true), 'FUA write');
    expect(dirtyOn(object0)).toEqual([]);
    // A writethrough export: every write durable before its acknowledgement.
    const through = await c.settle(c.sheep(1).volumeProvider().open('v/writethrough'), 'open v/writethrough');
    const second = pattern(MiB, 3);
    await c.settle(through.write(MiB, second), 'writethrough write');
    expect(dirtyOn(object1)).toEqual([]);
    // Power loss of every host at once: all of it is there.
    for (const host of c.hosts.all) c.hosts.crash(host, true);
    await c.start(0, 1, 2);
    await c.waitSettled();
    const expected = Buffer.concat([first, second]);
    fua.copy(expected, 8192);
    for (const via of [0, 1, 2]) expect(await c.readMd5(via, 'v', 2 * MiB), `through node ${via}`).toBe(md5(expected));
  });

  it('cached writes survive kill -9 of every sheep, and power loss of copies − 1 hosts', async () => {
    const c = new SimTestCluster({ hosts: 3 });
    await c.start(0, 1, 2);
    await c.format(0, 3);
    await c.create(0, 'v', 8 * MiB);
    const data = pattern(2 * MiB, 4);
    await c.write(0, 'v', 0, data);
    for (const host of c.hosts.all) c.hosts.crash(host, false);
    await c.start(0, 1, 2);
    await c.waitSettled();
    for (const via of [0, 1, 2]) expect(await c.readMd5(via, 'v', 2 * MiB)).toBe(md5(data));
    const more = pattern(MiB, 5);
    await c.write(2, 'v', MiB, more);
    c.hosts.crash(c.host(0), true);
    c.hosts.crash(c.host(1), true);
    await c.start(0, 1);
    await c.waitSettled();
    more.copy(data, MiB);
    for (const via of [0, 1, 2]) expect(await c.readMd5(via, 'v', 2 * MiB), `through node ${via}`).toBe(md5(data));
  });
});
