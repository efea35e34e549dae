// The multi-disk ring (src/engine/md-ring.ts): objects spread in proportion to disk size, and a
// plug or unplug moves only the objects it must.
import { describe, expect, it } from 'vitest';
import { MdRing, vdiskCount } from '../src/engine/md-ring.js';
import { mdVdiskBytes, mdVdisksPerDiskMax } from '../src/engine/limits.js';

const GiB = 2 ** 30;
const oids = Array.from({ length: 20_000 }, (_, i) => (0x7c2b25n << 32n) | BigInt(i));

function shares(ring: MdRing): Map<string, number> {
  const counts = new Map<string, number>();
  for (const oid of oids) {
    const disk = ring.diskOf(oid)!;
    counts.set(disk, (counts.get(disk) ?? 0) + 1);
  }
  return new Map([...counts].map(([disk, n]) => [disk, n / oids.length]));
}

describe('md ring', () => {
  it('gives each disk vdisks in proportion to its size, at least one, at most the cap', () => {
    expect(vdiskCount(1)).toBe(1);
    expect(vdiskCount(mdVdiskBytes)).toBe(1);
    expect(vdiskCount(mdVdiskBytes + 1)).toBe(2);
    expect(vdiskCount(100 * GiB)).toBe(1600);
    expect(vdiskCount(2 ** 60)).toBe(mdVdisksPerDiskMax);
  });

  it('spreads objects in proportion to disk size', () => {
    const ring = new MdRing([
      { path: '/d/a', sizeBytes: 100 * GiB },
      { path: '/d/b', sizeBytes: 200 * GiB },
      { path: '/d/c', sizeBytes: 100 * GiB },
    ]);
    const got = shares(ring);
    expect(got.get('/d/a')).toBeCloseTo(0.25, 1);
    expect(got.get('/d/b')).toBeCloseTo(0.5, 1);
    expect(got.get('/d/c')).toBeCloseTo(0.25, 1);
    for (const [disk, expected] of [['/d/a', 0.25], ['/d/b', 0.5], ['/d/c', 0.25]] as const) {
      expect(Math.abs(got.get(disk)! - expected)).toBeLessThan(0.03);
    }
  });

  it('does not depend on the order the disks are given in', () => {
    const a = { path: '/d/a', sizeBytes: 10 * GiB };
    const b = { path: '/d/b', sizeBytes: 30 * GiB };
    const one = new MdRing([a, b]);
    const two = new MdRing([b, a]);
    for (const oid of oids.slice(0, 2000)) expect(one.order(oid)).toEqual(two.order(oid));
  });

  it('moves only the objects that land on a plugged disk, about its share', () => {
    const before = new MdRing([
      { path: '/d/a', sizeBytes: 100 * GiB },
      { path: '/d/b', sizeBytes: 100 * GiB },
    ]);
    const after = new MdRing([...before.disks, { path: '/d/c', sizeBytes: 200 * GiB }]);
    let moved = 0;
    for (const oid of oids) {
      const from = before.diskOf(oid);
      const to = after.diskOf(oid);
      if (from === to) continue;
      moved += 1;
      expect(to).toBe('/d/c'); // nothing moves between the disks that stayed
    }
    expect(Math.abs(moved / oids.length - 0.5)).toBeLessThan(0.03);
  });

  it('moves only the objects of an unplugged disk, each to where its order said next', () => {
    const before = new MdRing([
      { path: '/d/a', sizeBytes: 50 * GiB },
      { path: '/d/b', sizeBytes: 50 * GiB },
      { path: '/d/c', sizeBytes: 50 * GiB },
    ]);
    const after = new MdRing(before.disks.filter((d) => d.path !== '/d/b'));
    let moved = 0;
    for (const oid of oids) {
      const from = before.diskOf(oid)!;
      const to = after.diskOf(oid)!;
      if (from !== '/d/b') {
        expect(to).toBe(from);
        continue;
      }
      moved += 1;
      expect(to).toBe(before.order(oid)[1]);
    }
    expect(Math.abs(moved / oids.length - 1 / 3)).toBeLessThan(0.03);
  });

  it('orders every disk once, its own first; an empty ring places nothing', () => {
    const ring = new MdRing([
      { path: '/d/a', sizeBytes: GiB },
      { path: '/d/b', sizeBytes: GiB },
      { path: '/d/c', sizeBytes: GiB },
    ]);
    for (const oid of oids.slice(0, 500)) {
      const order = ring.order(oid);
      expect(new Set(order).size).toBe(3);
      expect(order[0]).toBe(ring.diskOf(oid));
    }
    expect(new MdRing([]).diskOf(1n)).toBeUndefined();
    expect(new MdRing([]).order(1n)).toEqual([]);
  });
});
