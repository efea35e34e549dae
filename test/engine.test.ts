import { describe, expect, test } from 'vitest';
import { nameToVid } from '../src/engine/hash.js';
import { asVid, dataOid, inodeOid, oidHex, parseOid } from '../src/engine/oid.js';
import { Ring } from '../src/engine/ring.js';
import { formatSize, parseSize } from '../src/engine/size.js';
import { VdiRegistry, planClone, planCreate, planSnapshot } from '../src/engine/vdi.js';
import { formatDate, formatVdiTree } from '../src/cli/format.js';

describe('VDI ids', () => {
  test('FNV-1a of the name masked to 24 bits, as the original', () => {
    expect(nameToVid('test').toString(16)).toBe('7c2b25');
    expect(nameToVid('test0').toString(16)).toBe('fd34af');
    expect(nameToVid('clone1').toString(16)).toBe('c8f989');
  });

  test('snapshot freezes the old id, the working copy takes the next free one', () => {
    const registry = new VdiRegistry();
    const request = { name: 'test', sizeBytes: 2 ** 30, copies: 3, hyper: false, blockSizeShift: 22, nowSec: 1 };
    registry.apply([planCreate(registry, request)]);
    const { frozen, working } = planSnapshot(registry, 'test', 'snap1', 2);
    expect(frozen.vid.toString(16)).toBe('7c2b25');
    expect(working.vid.toString(16)).toBe('7c2b26');
    expect(working.snapId).toBe(2);
    registry.apply([frozen, working]);
    const clone = planClone(registry, registry.lookup('test', { tag: 'snap1' }), 'clone1', 3);
    expect(clone.vid.toString(16)).toBe('c8f989');
    expect(() => planCreate(registry, request)).toThrow('VDI exists already');
  });

  test('ids are not reused after delete and wrap at the end of the space', () => {
    const registry = new VdiRegistry();
    const entry = planCreate(registry, { name: 'a', sizeBytes: 1, copies: 1, hyper: false, blockSizeShift: 22, nowSec: 0 });
    registry.apply([{ ...entry, deleted: true }]);
    const again = planCreate(registry, { name: 'a', sizeBytes: 1, copies: 1, hyper: false, blockSizeShift: 22, nowSec: 0 });
    expect(again.vid).toBe(entry.vid + 1);
  });

  test('limits on names and sizes', () => {
    const registry = new VdiRegistry();
    const base = { copies: 3, hyper: false, blockSizeShift: 22, nowSec: 0 };
    expect(() => planCreate(registry, { ...base, name: '', sizeBytes: 1 })).toThrow(/empty/);
    expect(() => planCreate(registry, { ...base, name: 'x'.repeat(256), sizeBytes: 1 })).toThrow(/256 bytes/);
    expect(() => planCreate(registry, { ...base, name: 'x', sizeBytes: 0 })).toThrow(/larger than 0/);
    expect(() => planCreate(registry, { ...base, name: 'x', sizeBytes: 4 * 2 ** 40 + 1 })).toThrow(/too large/);
    expect(planCreate(registry, { ...base, name: 'x', sizeBytes: 16 * 2 ** 50, hyper: true }).sizeBytes).toBe(2 ** 54);
  });
});

describe('object ids', () => {
  test('layout and parsing', () => {
    const vid = asVid(0x7c2b25);
    expect(oidHex(dataOid(vid, 3))).toBe('007c2b2500000003');
    expect(oidHex(inodeOid(vid))).toBe('807c2b2500000000');
    expect(parseOid('007c2b2500000003')).toBe(dataOid(vid, 3));
    expect(parseOid('zz')).toBeUndefined();
    expect(parseOid('0000000000000003')).toBeUndefined(); // vid 0
    expect(parseOid(-1n)).toBeUndefined();
  });
});

describe('sizes', () => {
  test('parse powers of 1024 and print like strnumber', () => {
    expect(parseSize('1G')).toBe(2 ** 30);
    expect(parseSize('4m')).toBe(4 * 2 ** 20);
    expect(parseSize('16P')).toBe(2 ** 54);
    expect(() => parseSize('1X')).toThrow(/Invalid size/);
    expect(formatSize(2 ** 30)).toBe('1.0 GB');
    expect(formatSize(0)).toBe('0.0 MB');
    expect(formatSize(68 * 2 ** 20)).toBe('68 MB');
  });
});

describe('placement ring', () => {
  const nodes = Array.from({ length: 5 }, (_, i) => ({ id: `127.0.0.1:${7000 + i}`, zone: i, vnodes: 128 }));

  test('replicas are on distinct zones and copies never exceed zones', () => {
    const ring = new Ring(nodes);
    for (let i = 0; i < 200; i++) {
      const placement = ring.placement(dataOid(asVid(1), i), 3);
      expect(new Set(placement.map((n) => n.zone)).size).toBe(3);
    }
    const twoZones = new Ring(nodes.map((n) => ({ ...n, zone: n.zone % 2 })));
    expect(twoZones.placement(dataOid(asVid(1), 0), 3)).toHaveLength(2);
    expect(new Ring([{ id: 'g', zone: 0, vnodes: 0 }]).placement(dataOid(asVid(1), 0), 1)).toHaveLength(0);
  });

  test('adding a node moves about its share of objects', () => {
    const before = new Ring(nodes.slice(0, 4));
    const after = new Ring(nodes);
    let moved = 0;
    const count = 4000;
    for (let i = 0; i < count; i++) {
      const oid = dataOid(asVid(7), i);
      if (before.placement(oid, 1)[0]!.id !== after.placement(oid, 1)[0]!.id) moved += 1;
    }
    expect(moved / count).toBeGreaterThan(0.15);
    expect(moved / count).toBeLessThan(0.25);
  });
});

describe('vdi tree', () => {
  // A snapshot's state began long before it was frozen; the tree shows when it began, as the original.
  const entry = (vid: number, parentVid: number, snapshotSec: number, name = 'test', deleted = false) => ({
    vid, name, tag: '', snapId: 1, parentVid, createdSec: snapshotSec * 1000, snapshotSec, sizeBytes: 1, copies: 1,
    blockSizeShift: 22, hyper: false, deleted,
  });

  test('a deleted snapshot in the middle keeps the chain whole', () => {
    const tree = formatVdiTree([entry(1, 0, 60), entry(2, 1, 120, 'test', true), entry(3, 2, 0)]);
    expect(tree.replace(/\d{4}-\d\d-\d\d \d\d:\d\d/g, 'DATE')).toBe('test---[DATE]---(you are here)\n');
  });

  test('branches are drawn like pstree', () => {
    const tree = formatVdiTree([entry(1, 0, 60), entry(2, 1, 120), entry(3, 1, 0)]);
    const first = '[' + formatDate(60_000) + ']';
    const second = '[' + formatDate(120_000) + ']';
    expect(tree).not.toContain(formatDate(60));
    const head = `test---${first}`;
    expect(tree).toBe(`${head}-+-${second}\n${' '.repeat(head.length + 1)}\`-(you are here)\n`);
  });
});

describe('fnv1a64', () => {
  test('the limb version equals the BigInt definition, for every length and seed tried', async () => {
    const { fnv1a64, fnv1a64Reference } = await import('../src/engine/hash.js');
    let state = 12345;
    const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0);
    for (let i = 0; i < 3000; i++) {
      const bytes = Uint8Array.from({ length: i % 97 }, () => next() & 0xff);
      const seed = i % 4 === 0 ? (BigInt(next()) << 32n) | BigInt(next()) : undefined;
      expect(fnv1a64(bytes, seed)).toBe(fnv1a64Reference(bytes, seed));
    }
    // The original's VID of "Alice", unchanged.
    expect(fnv1a64(new TextEncoder().encode('Alice'))).toBe(fnv1a64Reference(new TextEncoder().encode('Alice')));
  });
});
