// `cluster format -R`: which VIDs of deleted VDIs may be used again (src/sheep/vdi-recycle.ts).
// Pure: registry, listed objects and epochs in, VIDs out.
import { describe, expect, it } from 'vitest';
import type { NodeInfo } from '../src/cluster/driver.js';
import { asVid, dataOid, type Oid } from '../src/engine/oid.js';
import { VdiRegistry, planClone, planCreate, planSnapshot, type VdiEntry } from '../src/engine/vdi.js';
import { families, recyclableVids, recycleClockSkewSec } from '../src/sheep/vdi-recycle.js';
import type { EpochRecord } from '../src/store/meta.js';

const node = (port: number): NodeInfo => ({ id: `127.0.0.1:${port}`, addr: '127.0.0.1', port, zone: port, vnodes: 128, nbdPort: 0 });
const [a, b, c] = [node(7000), node(7001), node(7002)];
const epoch = (n: number, timeSec: number, nodes: NodeInfo[]): EpochRecord => ({ epoch: n, timeSec, nodes });

/** vm, its snapshot s1, and clone cl of s1, made at t=100; other made alone. */
function registry(): { registry: VdiRegistry; vm: VdiEntry; s1: VdiEntry; clone: VdiEntry; other: VdiEntry } {
  const registry = new VdiRegistry();
  const create = (name: string) => planCreate(registry, { name, sizeBytes: 1 << 30, copies: 2, blockSizeShift: 22, hyper: false, nowSec: 100 });
  const vm0 = create('vm');
  registry.apply([vm0]);
  const { frozen, working } = planSnapshot(registry, 'vm', 's1', 100);
  registry.apply([frozen, working]);
  const clone = planClone(registry, frozen, 'cl', 100);
  registry.apply([clone]);
  const other = create('other');
  registry.apply([other]);
  return { registry, vm: working, s1: frozen, clone, other };
}
const deleteAll = (r: VdiRegistry, entries: VdiEntry[]) => r.apply(entries.map((e) => ({ ...e, deleted: true })));

describe('VID recycling', () => {
  it('groups a VDI, its snapshots and their clones into one family', () => {
    const { registry: r, vm, s1, clone, other } = registry();
    const sets = families(r.all()).map((f) => f.map((e) => e.vid).sort((x, y) => x - y));
    expect(sets.sort((x, y) => x[0]! - y[0]!)).toEqual([[vm.vid, s1.vid, clone.vid].sort((x, y) => x - y), [other.vid]].sort((x, y) => x[0]! - y[0]!));
  });

  it('frees a family only once every member of it is deleted', () => {
    const { registry: r, vm, s1, clone, other } = registry();
    const epochs = [epoch(1, 50, [a, b, c])];
    deleteAll(r, [vm, s1]);
    // The clone lives: its parent s1 must stay, or `vdi tree` would lose its root.
    expect(recyclableVids(r, new Set(), epochs, [a, b, c])).toEqual([]);
    deleteAll(r, [clone, other]);
    expect(recyclableVids(r, new Set(), epochs, [a, b, c])).toEqual([vm.vid, s1.vid, clone.vid, other.vid].sort((x, y) => x - y));
  });

  it('keeps the VIDs while any object of the family is left', () => {
    const { registry: r, vm, s1, clone, other } = registry();
    deleteAll(r, [vm, s1, clone, other]);
    const left = new Set<Oid>([dataOid(asVid(s1.vid), 3)]);
    expect(recyclableVids(r, left, [epoch(1, 50, [a, b, c])], [a, b, c])).toEqual([other.vid]);
  });

  it('keeps the VIDs while a node that stored data since the family was made is away', () => {
    const { registry: r, vm, s1, clone, other } = registry();
    deleteAll(r, [vm, s1, clone, other]);
    // c left after the VDIs were made at t=100 (or in the same second): it may hold copies.
    const epochs = [epoch(1, 50, [a, b, c]), epoch(2, 100, [a, b])];
    expect(recyclableVids(r, new Set(), epochs, [a, b])).toEqual([]);
    // A node that left before they were made holds nothing of them: well before, as the times
    // come from different clocks.
    expect(recyclableVids(r, new Set(), [epoch(1, 50, [a, b, c]), epoch(2, 90, [a, b])], [a, b])).toEqual([]);
    const earlier = [epoch(1, 50 - recycleClockSkewSec, [a, b, c]), epoch(2, 99 - recycleClockSkewSec, [a, b])];
    expect(recyclableVids(r, new Set(), earlier, [a, b])).toHaveLength(4);
    // Back (and its copies reclaimed, so none is listed): free.
    expect(recyclableVids(r, new Set(), [...epochs, epoch(3, 300, [a, b, c])], [a, b, c])).toHaveLength(4);
  });

  it('frees the VIDs for new VDIs: a name gets its hash VID back', () => {
    const { registry: r, vm, s1, clone, other } = registry();
    const first = r.all().find((e) => e.name === 'vm' && e.snapId === 1)!.vid;
    deleteAll(r, [vm, s1, clone, other]);
    r.free(recyclableVids(r, new Set(), [epoch(1, 50, [a, b, c])], [a, b, c]));
    expect(r.all()).toEqual([]);
    expect(r.allocateVid('vm')).toBe(first);
  });
});
