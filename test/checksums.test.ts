// The checksum recovery compares copies by (src/store/checksums.ts): zero blocks are skipped,
// so it must still tell apart every pair of different contents a store can hold.
import { describe, expect, test } from 'vitest';
import { checksumOf } from '../src/store/checksums.js';

function withBytes(length: number, at: number[]): Buffer {
  const data = Buffer.alloc(length);
  for (const offset of at) data[offset] = 1;
  return data;
}

describe('checksumOf', () => {
  test('equal contents, equal sums; a byte moved, a block moved across a hole or a longer run of zeros, different sums', () => {
    const mib = 1 << 20;
    const sums = [
      withBytes(mib, []),
      withBytes(mib + 1, []),
      withBytes(mib, [5000]),
      withBytes(mib, [5001]),
      withBytes(mib, [9096]),
      withBytes(8192, [0, 4096]),
      withBytes(8192, [0]),
      withBytes(12288, [0, 8192]),
      withBytes(12288, [0, 4096]),
      withBytes(mib, [mib - 1]),
    ].map(checksumOf);
    expect(new Set(sums).size).toBe(sums.length);
    expect(checksumOf(withBytes(mib, [5000]))).toBe(sums[2]);
    expect(checksumOf(Buffer.alloc(3 * 4096, 7))).toBe(checksumOf(Buffer.concat([Buffer.alloc(4096, 7), Buffer.alloc(8192, 7)])));
  });
});
