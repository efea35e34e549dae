// The simulator's corruption faults (src/sim/corruption.ts): damage at rest on a memory disk,
// the checker that reads a copy's block sums straight off the disk, and seeds of the
// `corruption` profile, whose convergence has every node scrub and then finds every copy sound.
import { describe, expect, test } from 'vitest';
import type { Oid } from '../src/engine/oid.js';
import { MemoryDisk, memoryBlockBytes } from '../src/io/memory-disk.js';
import { copyProblem } from '../src/sim/corruption.js';
import { simulate } from '../src/sim/run.js';
import { realSheep } from '../src/sim/sheep-node.js';
import { faultProfiles } from '../src/sim/workload.js';
import { dataOffset, encodeIdentity, sumsOf, sumsOffset } from '../src/store/block-sums.js';

const oid = 0x0070912800000003n as Oid;
const other = 0x0070912800000004n as Oid;
const objectBytes = 16 * memoryBlockBytes;

/** An object file as the store lays it out: identity, sums, data (block 2 written). */
async function objectFile(disk: MemoryDisk, name: string, of: Oid): Promise<void> {
  const data = Buffer.alloc(objectBytes);
  data.fill(7, 2 * memoryBlockBytes, 3 * memoryBlockBytes);
  const handle = await disk.open(name, 'create');
  await handle.write(Buffer.concat([encodeIdentity(of, objectBytes), sumsOf(data)]), 0);
  await handle.write(data.subarray(2 * memoryBlockBytes, 3 * memoryBlockBytes), dataOffset + 2 * memoryBlockBytes);
  await handle.truncate(dataOffset + objectBytes);
  await handle.datasync();
  await handle.close();
  await disk.syncDir('/');
}

async function readAt(disk: MemoryDisk, name: string, at: number, length: number): Promise<Buffer> {
  const handle = await disk.open(name, 'read');
  const buffer = Buffer.alloc(length);
  await handle.read(buffer, at);
  await handle.close();
  return buffer;
}

describe('damage at rest on a memory disk', () => {
  test('a flipped byte is seen by an open handle and survives a power loss', async () => {
    const disk = new MemoryDisk();
    await objectFile(disk, '/a', oid);
    const handle = await disk.open('/a', 'read');
    const at = dataOffset + 2 * memoryBlockBytes + 5;
    disk.flipByteAtRest('/a', at, 0x10);
    const seen = Buffer.alloc(1);
    await handle.read(seen, at);
    expect(seen[0]).toBe(7 ^ 0x10);
    disk.crash();
    expect((await readAt(disk, '/a', at, 1))[0]).toBe(7 ^ 0x10);
  });

  test('a truncation and a replacement keep the inode; a hole flipped is allocated', async () => {
    const disk = new MemoryDisk();
    await objectFile(disk, '/a', oid);
    await objectFile(disk, '/b', other);
    const id = disk.fileId('/a');
    disk.truncateAtRest('/a', 100);
    expect(disk.view('/a')!.sizeBytes).toBe(100);
    disk.overwriteAtRest('/a', '/b');
    expect(disk.fileId('/a')).toBe(id);
    expect(await readAt(disk, '/a', 0, 64)).toEqual(await readAt(disk, '/b', 0, 64));
    disk.flipByteAtRest('/b', dataOffset + 9 * memoryBlockBytes, 1);
    expect(disk.view('/b')!.blocks.has(dataOffset / memoryBlockBytes + 9)).toBe(true);
    expect(() => disk.flipByteAtRest('/none', 0, 1)).toThrow(/ENOENT/);
  });
});

describe('copyProblem reads the block sums off the disk', () => {
  const cases: Array<[string, (disk: MemoryDisk) => void, RegExp | undefined]> = [
    ['a sound copy', () => undefined, undefined],
    ['a flipped data byte', (disk) => disk.flipByteAtRest('/a', dataOffset + 2 * memoryBlockBytes + 1, 1), /block 2 fails/],
    ['a byte written into a hole', (disk) => disk.flipByteAtRest('/a', dataOffset + 5 * memoryBlockBytes, 1), /block 5 fails/],
    ['a flipped sum', (disk) => disk.flipByteAtRest('/a', sumsOffset + 4 * 3, 1), /block 3 fails/],
    ['a flipped identity byte', (disk) => disk.flipByteAtRest('/a', 13, 1), /header is damaged/],
    ['a truncation into the data', (disk) => disk.truncateAtRest('/a', dataOffset + 2 * memoryBlockBytes + 10), /block 2 fails/],
    ['a truncation into the header', (disk) => disk.truncateAtRest('/a', 20), /shorter than its header/],
    ['a truncation of zeros only', (disk) => disk.truncateAtRest('/a', dataOffset + 3 * memoryBlockBytes), undefined],
    ['another object’s file', (disk) => disk.overwriteAtRest('/a', '/b'), /holds object 0070912800000004/],
  ];
  test.each(cases)('%s', async (_name, damage, problem) => {
    const disk = new MemoryDisk();
    await objectFile(disk, '/a', oid);
    await objectFile(disk, '/b', other);
    damage(disk);
    const found = copyProblem(disk.view('/a')!, oid, objectBytes);
    if (problem === undefined) expect(found).toBeUndefined();
    else expect(found).toMatch(problem);
  });

  test('only the part the daemon reads counts (an owner table past its usable entries)', async () => {
    const disk = new MemoryDisk();
    await objectFile(disk, '/a', oid);
    disk.flipByteAtRest('/a', sumsOffset + 4 * 9, 1);
    expect(copyProblem(disk.view('/a')!, oid, 8 * memoryBlockBytes)).toBeUndefined();
    expect(copyProblem(disk.view('/a')!, oid, objectBytes)).toMatch(/block 9 fails/);
  });
});

describe('the corruption profile', () => {
  // Each seed damages copies and converges twice: every damaged copy is repaired by the
  // daemon's scrub and catch-up, and no read returned a corrupt byte meanwhile.
  test.each([1, 2, 3, 4, 5])('seed %i × 200 steps holds every invariant', async (seed) => {
    const lines: string[] = [];
    const result = await simulate({
      seed,
      steps: 200,
      nodes: 4,
      profile: faultProfiles.corruption!,
      convergeEvery: 100,
      factory: realSheep,
      onTrace: (line) => lines.push(line),
    });
    expect(result.ok, JSON.stringify(result.failure, null, 1)).toBe(true);
    expect(lines.filter((line) => /^#\d+ corrupt \S+ [0-9a-f]{16}: /.test(line)).length).toBeGreaterThan(5);
    const repairs = lines.filter((line) => line.startsWith('converge: scrub'));
    expect(repairs.length).toBe(2);
    for (const line of repairs) expect(line).toMatch(/, 0 left$/);
  }, 120_000);
});
