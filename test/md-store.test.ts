// The multi-disk store in process (src/store/md-store.ts), on memory disks: objects spread over
// the disks and stay readable and writable while a plug or unplug moves them; a disk that fails
// with EIO is taken out and its objects are reported lost; a full disk sends new objects on.
import { describe, expect, it } from 'vitest';
import { asSdError } from '../src/engine/errors.js';
import { oidHex, type Oid } from '../src/engine/oid.js';
import { systemClock } from '../src/io/clock.js';
import { FaultDisk } from '../src/io/fault-disk.js';
import { silentLog } from '../src/io/log.js';
import { MemoryDisk } from '../src/io/memory-disk.js';
import { seededRandom } from '../src/io/random.js';
import { MdStore, type MdDiskFailure } from '../src/store/md-store.js';
import { ObjectStore } from '../src/store/object-store.js';

const objectBytes = 64 * 1024;
const dirs = ['/md/d0', '/md/d1', '/md/d2'];
const strayOid = ((0x4321n << 32n) | 1n) as Oid;
const oids: Oid[] = Array.from({ length: 30 }, (_, i) => ((0x1234n << 32n) | BigInt(i)) as Oid);

function content(oid: Oid, round: number): Buffer {
  const data = Buffer.alloc(objectBytes);
  for (let at = 0; at < objectBytes; at += 4) data.writeUInt32LE((Number(oid & 0xffffn) * 7919 + round * 104729 + at) >>> 0, at);
  return data;
}

function setup(options: { dirs?: readonly string[]; failover?: boolean } = {}) {
  const inner = new MemoryDisk();
  const disk = new FaultDisk(inner, { clock: systemClock, random: seededRandom(1) });
  const failures: MdDiskFailure[] = [];
  const make = (d: readonly string[]) => {
    const store = new MdStore({ dirs: d, metaDir: '/md/meta', disk, clock: systemClock, log: silentLog, failover: options.failover ?? true });
    store.objectSizeBytes = () => objectBytes;
    store.onDiskFailed = (failure) => failures.push(failure);
    return store;
  };
  return { inner, disk, failures, make };
}

/** Object files directly in `dir`. */
async function filesIn(disk: MemoryDisk | FaultDisk, dir: string): Promise<string[]> {
  return (await disk.list(dir)).filter((name) => /^[0-9a-f]{16}$/.test(name));
}

async function writeAll(store: MdStore, round: number): Promise<void> {
  await Promise.all(oids.map((oid) => store.writeWhole(oid, content(oid, round), objectBytes)));
}

describe('md store', () => {
  it('spreads objects over the disks, one copy each, and finds them again after a restart', async () => {
    const { inner, make } = setup();
    let store = make(dirs);
    await store.open();
    await writeAll(store, 1);
    const counts = await Promise.all(dirs.map(async (d) => (await filesIn(inner, d)).length));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(oids.length);
    expect(counts.filter((n) => n > 0).length).toBe(3);
    await store.close();
    store = make(dirs);
    await store.open();
    expect((await store.list()).sort()).toEqual([...oids].sort());
    for (const oid of oids) expect((await store.read(oid, 0, objectBytes)).equals(content(oid, 1))).toBe(true);
    await store.close();
  });

  it('moves what a start finds off its disk (the disk list changed) once asked to', async () => {
    const { inner, make } = setup();
    const first = make(dirs.slice(0, 2));
    await first.open();
    await writeAll(first, 1);
    await first.close();
    const store = make(dirs);
    await store.open();
    expect(store.misplaced()).toBeGreaterThan(0);
    store.moveMisplaced();
    await store.settled();
    expect(store.misplaced()).toBe(0);
    expect((await filesIn(inner, dirs[2]!)).length).toBeGreaterThan(0);
    for (const oid of oids) expect((await store.read(oid, 0, objectBytes)).equals(content(oid, 1))).toBe(true);
    await store.close();
  });

  it('keeps the placed copy of an object found on two disks (a move cut short)', async () => {
    const { inner, make } = setup();
    const store = make(dirs);
    await store.open();
    const oid = oids[0]!;
    await store.writeWhole(oid, content(oid, 1), objectBytes);
    await store.close();
    const homes = await Promise.all(dirs.map(async (d) => ((await inner.exists(`${d}/${oidHex(oid)}`)) ? d : undefined)));
    const other = dirs.find((d) => !homes.includes(d))!;
    const stray = new ObjectStore({ dir: other, disk: inner, clock: systemClock });
    await stray.open();
    await stray.writeWhole(oid, content(oid, 1), objectBytes);
    await stray.close();
    const again = make(dirs);
    await again.open();
    expect(await filesIn(inner, other)).toEqual([]);
    expect(homes.filter(Boolean)).toHaveLength(1);
    expect((await again.read(oid, 0, objectBytes)).equals(content(oid, 1))).toBe(true);
    await again.close();
  });

  it('moves objects off an unplugged disk while reads and writes go on, and onto a plugged one', async () => {
    const { inner, make } = setup();
    const store = make(dirs);
    await store.open();
    await writeAll(store, 1);
    const model = new Map(oids.map((oid) => [oid, content(oid, 1)]));
    // Partial writes and reads of every object while the moves run.
    const traffic = async (round: number) => {
      for (const oid of oids) {
        const patch = Buffer.alloc(4096, round);
        await store.writeRange(oid, 8192, patch, objectBytes);
        patch.copy(model.get(oid)!, 8192);
        expect((await store.read(oid, 0, objectBytes)).equals(model.get(oid)!)).toBe(true);
      }
    };
    await store.unplug([dirs[1]!]);
    await Promise.all([traffic(7), store.settled()]);
    await store.settled();
    expect(await filesIn(inner, dirs[1]!)).toEqual([]);
    expect((await store.info()).map((d) => d.path)).toEqual([dirs[0], dirs[2]]);
    // A plugged directory's earlier objects are purged; it then takes its share.
    const stray = new ObjectStore({ dir: '/md/d3', disk: inner, clock: systemClock });
    await stray.open();
    await stray.writeWhole(strayOid, content(strayOid, 1), objectBytes);
    await stray.close();
    await store.plug(['/md/d3']);
    await Promise.all([traffic(8), store.settled()]);
    await store.settled();
    const onNew = await filesIn(inner, '/md/d3');
    expect(onNew.length).toBeGreaterThan(0);
    expect(onNew).not.toContain(oidHex(strayOid));
    expect(store.misplaced()).toBe(0);
    for (const oid of oids) expect((await store.read(oid, 0, objectBytes)).equals(model.get(oid)!)).toBe(true);
    expect((await store.list()).length).toBe(oids.length);
    await store.close();
  });

  it('takes a disk that fails with EIO out, reports its objects lost, and keeps serving', async () => {
    const { inner, disk, failures, make } = setup();
    const store = make(dirs);
    await store.open();
    await writeAll(store, 1);
    const onD1 = (await filesIn(inner, dirs[1]!)).sort();
    expect(onD1.length).toBeGreaterThan(1);
    disk.addRule({ pathIncludes: `${dirs[1]}/`, code: 'EIO' });
    const victim = BigInt(`0x${onD1[0]}`) as Oid;
    await expect(store.read(victim, 0, 4096)).rejects.toMatchObject({ code: 'IO' });
    expect(failures).toHaveLength(1);
    expect(failures[0]!.path).toBe(dirs[1]);
    expect(failures[0]!.disksLeft).toBe(2);
    expect(failures[0]!.lost.map(oidHex).sort()).toEqual(onD1);
    // A lost object is gone; a partial write asks for it whole; a whole write lands elsewhere.
    expect(await store.exists(victim)).toBe(false);
    await expect(store.writeRange(victim, 0, Buffer.alloc(10, 1), objectBytes)).rejects.toMatchObject({ code: 'NO_OBJECT' });
    await store.writeWhole(victim, content(victim, 2), objectBytes);
    expect((await store.read(victim, 0, objectBytes)).equals(content(victim, 2))).toBe(true);
    // The others never noticed.
    for (const oid of oids) {
      if (onD1.includes(oidHex(oid))) continue;
      expect((await store.read(oid, 0, objectBytes)).equals(content(oid, 1))).toBe(true);
    }
    expect((await store.info()).map((d) => d.path)).toEqual([dirs[0], dirs[2]]);
    // The last disks failing: the node has nowhere to keep anything (a network error: it leaves).
    disk.addRule({ pathIncludes: '/md/d', code: 'EIO' });
    const results = await Promise.allSettled(oids.map((oid) => store.writeWhole(oid, content(oid, 3), objectBytes)));
    expect(failures.at(-1)!.disksLeft).toBe(0);
    const codes = new Set(results.map((r) => (r.status === 'rejected' ? asSdError(r.reason).code : 'ok')));
    expect(codes.has('NETWORK')).toBe(true);
    expect(codes.has('ok')).toBe(false);
  });

  it('on a one-directory store an EIO fails only its request', async () => {
    const { disk, failures, make } = setup({ failover: false });
    const store = make(['/md/obj']);
    await store.open();
    await writeAll(store, 1);
    disk.addRule({ pathIncludes: '/md/obj/', code: 'EIO', times: 1, operations: ['read'] });
    await expect(store.read(oids[0]!, 0, 4096)).rejects.toMatchObject({ code: 'EIO' });
    expect(failures).toEqual([]);
    expect((await store.read(oids[0]!, 0, objectBytes)).equals(content(oids[0]!, 1))).toBe(true);
    await store.close();
  });

  it('sends new objects past a full disk to the next one on the ring', async () => {
    const { inner, disk, make } = setup();
    const store = make(dirs);
    await store.open();
    disk.addRule({ pathIncludes: `${dirs[0]}/`, code: 'ENOSPC', operations: ['write', 'datasync'] });
    await writeAll(store, 1);
    await Promise.all(oids.map((oid) => store.writeRange((oid | (1n << 20n)) as Oid, 0, Buffer.alloc(100, 5), objectBytes)));
    expect(await filesIn(inner, dirs[0]!)).toEqual([]);
    expect((await store.list()).length).toBe(oids.length * 2);
    for (const oid of oids) expect((await store.read(oid, 0, objectBytes)).equals(content(oid, 1))).toBe(true);
    await store.close();
  });
});
