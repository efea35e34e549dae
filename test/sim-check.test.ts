// The convergence check compares copies block by block on the memory disks (sameBytes) instead
// of reading each whole: it must see every difference a whole read would, and no other.
import { describe, expect, test } from 'vitest';
import { MemoryDisk, memoryBlockBytes, sameBytes } from '../src/io/memory-disk.js';
import { decodeUnit, unitBytes, unitPattern } from '../src/sim/model.js';

const objectBytes = 16 * memoryBlockBytes;

async function file(disk: MemoryDisk, name: string, writes: Array<[number, Buffer]>, truncateTo?: number) {
  const handle = await disk.open(`/${name}`, 'create');
  for (const [offset, data] of writes) await handle.write(data, offset);
  if (truncateTo !== undefined) await handle.truncate(truncateTo);
  await handle.close();
  return disk.view(`/${name}`)!;
}

/** What the old check did: read both whole and compare. */
async function readWhole(disk: MemoryDisk, name: string, lengthBytes: number): Promise<Buffer> {
  const handle = await disk.open(`/${name}`, 'read');
  const buffer = Buffer.alloc(lengthBytes);
  await handle.read(buffer, 0);
  await handle.close();
  return buffer;
}

describe('sameBytes', () => {
  const disk = new MemoryDisk();
  const other = new MemoryDisk();
  const cases: Array<[string, Array<[number, Buffer]>, number | undefined, Array<[number, Buffer]>, number | undefined, boolean]> = [
    ['equal data at the same offsets', [[5000, Buffer.from('abc')]], objectBytes, [[5000, Buffer.from('abc')]], objectBytes, true],
    ['one byte differs', [[5000, Buffer.from('abc')]], objectBytes, [[5000, Buffer.from('abd')]], objectBytes, false],
    ['a written zero block equals a hole', [[0, Buffer.alloc(memoryBlockBytes)]], objectBytes, [], objectBytes, true],
    ['data against a hole', [[9 * memoryBlockBytes, Buffer.from([1])]], objectBytes, [], objectBytes, false],
    ['a hole against data (either side)', [], objectBytes, [[objectBytes - 1, Buffer.from([1])]], objectBytes, false],
    ['a short file reads as zeros past its end', [[0, Buffer.from('x')]], undefined, [[0, Buffer.from('x')]], objectBytes, true],
    ['bytes past the read length do not count', [[objectBytes, Buffer.from('tail')]], undefined, [], objectBytes, true],
    ['a truncated tail reads as zeros', [[0, Buffer.alloc(memoryBlockBytes, 7)]], 100, [[0, Buffer.alloc(100, 7)]], objectBytes, true],
    ['a truncated tail differs from data', [[0, Buffer.alloc(memoryBlockBytes, 7)]], 100, [[0, Buffer.alloc(101, 7)]], objectBytes, false],
  ];
  test.each(cases)('%s', async (name, writesA, sizeA, writesB, sizeB, same) => {
    const a = await file(disk, `a-${name}`, writesA, sizeA);
    const b = await file(other, `b-${name}`, writesB, sizeB);
    expect(sameBytes(a, b, objectBytes)).toBe(same);
    expect(sameBytes(b, a, objectBytes)).toBe(same);
    // The same verdict as reading both whole, as the check did before.
    const whole = (await readWhole(disk, `a-${name}`, objectBytes)).equals(await readWhole(other, `b-${name}`, objectBytes));
    expect(whole).toBe(same);
  });

  test('the view follows later writes (it is the live file, not a copy taken once)', async () => {
    const a = await file(disk, 'live', [[0, Buffer.from('one')]], objectBytes);
    const b = await file(other, 'live', [[0, Buffer.from('one')]], objectBytes);
    expect(sameBytes(a, b, objectBytes)).toBe(true);
    const handle = await other.open('/live', 'write');
    await handle.write(Buffer.from('two'), 0);
    await handle.close();
    expect(sameBytes(a, other.view('/live')!, objectBytes)).toBe(false);
  });

  test('no file, no view', () => {
    expect(disk.view('/nothing')).toBeUndefined();
  });
});

describe('decodeUnit (every read is checked with it)', () => {
  /** The definition: the id whose pattern the unit is, 0 for zeros, -1 for anything else. */
  const reference = (data: Buffer): number => {
    if (data.every((byte) => byte === 0)) return 0;
    const id = data.readUInt32LE(0);
    return data.equals(unitPattern(id)) ? id : -1;
  };
  const flipped = (data: Buffer, at: number): Buffer => {
    const copy = Buffer.from(data);
    copy[at] = copy[at]! ^ 1;
    return copy;
  };
  const ids = [1, 2, 77, 2 ** 31, 2 ** 32 - 1];
  const units: Array<[string, Buffer]> = [
    ['zeros', Buffer.alloc(unitBytes)],
    ...ids.map((id): [string, Buffer] => [`pattern ${id}`, unitPattern(id)]),
    ...ids.flatMap((id) => [0, 3, 4, 2049, unitBytes - 1].map((at): [string, Buffer] => [`pattern ${id}, byte ${at} flipped`, flipped(unitPattern(id), at)])),
    ['id 0 with data after it', flipped(Buffer.alloc(unitBytes), 100)],
    ['another id’s pattern under this id', Buffer.concat([unitPattern(5).subarray(0, 4), unitPattern(6).subarray(4)])],
  ];
  test.each(units)('%s', (_name, data) => {
    expect(decodeUnit(data)).toBe(reference(data));
  });
  test('a unit decodes to the write that made it', () => {
    for (const id of ids) expect(decodeUnit(unitPattern(id))).toBe(id);
  });
});
