// Erasure coding without a cluster: the D:P policy byte, strip ids and headers, how a range falls
// on strips, which generation a stripe decodes from, and the codec (any D of D+P strips give the
// data back, byte for byte).
import { describe, expect, it } from 'vitest';
import {
  decodableGeneration,
  decodePolicy,
  decodeStripHeader,
  encodePolicy,
  encodeStripHeader,
  isStripOid,
  isValidPolicy,
  redundancyText,
  stripDataBytes,
  stripIndex,
  stripObjectBytes,
  stripOid,
  stripParent,
  stripRanges,
} from '../src/engine/ec-layout.js';
import { asVid, dataOid, inodeOid, oidHex, parseOid } from '../src/engine/oid.js';
import { codecParityStripsMax, encodeParity, reconstruct } from '../src/io/reed-solomon.js';
import { ecConfig } from '../src/sheep/ec-config.js';
import { redundancyArg } from '../src/cli/common.js';
import { pattern } from './support/cluster.js';

const MiB = 2 ** 20;

describe('the D:P policy', () => {
  it('accepts 2, 4, 8 or 16 data strips with 1 to D-1 parity strips, and nothing else', () => {
    expect(isValidPolicy(4, 2)).toBe(true);
    expect(isValidPolicy(16, 15)).toBe(true);
    expect(isValidPolicy(2, 1)).toBe(true);
    for (const [d, p] of [[3, 1], [4, 0], [4, 4], [2, 2], [32, 1], [16, 16]] as const) expect(isValidPolicy(d, p), `${d}:${p}`).toBe(false);
  });

  it("is the original's copy_policy byte, and shows as D:P", () => {
    expect(encodePolicy({ data: 4, parity: 2 })).toBe(0x22);
    expect(encodePolicy({ data: 16, parity: 15 })).toBe(0x8f);
    expect(decodePolicy(0x22)).toEqual({ data: 4, parity: 2 });
    expect(decodePolicy(0)).toBeUndefined();
    expect(redundancyText(6, 0x22)).toBe('4:2');
    expect(redundancyText(3, undefined)).toBe('3');
  });

  it('dog -c: D:P is D+P copies with the policy; anything else is refused with the whole usage', () => {
    expect(redundancyArg('4:2')).toEqual({ copies: 6, copyPolicy: 0x22 });
    expect(redundancyArg('3')).toEqual({ copies: 3 });
    const usage =
      'To create replicated vdi, set -c x\n  x(1 to 31)   - number of replicated copies\n' +
      'To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips';
    for (const bad of ['4:4', '3:1', '4:', ':2', '0', '32', '4:2:1', 'x']) expect(() => redundancyArg(bad), bad).toThrow(`Invalid parameter ${bad}\n${usage}`);
  });
});

describe('strips', () => {
  const vid = asVid(0x7c2b25);
  const oid = dataOid(vid, 7);

  it('have their own oids, which parse, and name their object and number', () => {
    const strip = stripOid(oid, 5);
    expect(oidHex(strip)).toBe('067c2b2500000007');
    expect(parseOid(oidHex(strip))).toBe(strip);
    expect(isStripOid(strip)).toBe(true);
    expect(isStripOid(oid)).toBe(false);
    expect(stripIndex(strip)).toBe(5);
    expect(stripParent(strip)).toBe(oid);
    expect(() => stripOid(inodeOid(vid), 0)).toThrow(RangeError);
    expect(parseOid('867c2b2500000000')).toBeUndefined(); // an inode with a strip number
  });

  it('hold a share of the object after a 4 KiB header carrying the generation', () => {
    const policy = { data: 4, parity: 2 };
    expect(stripDataBytes(4 * MiB, policy)).toBe(MiB);
    expect(stripObjectBytes(4 * MiB, policy)).toBe(MiB + 4096);
    const header = encodeStripHeader({ index: 3, data: 4, parity: 2, generation: 123456789n });
    expect(header.length).toBe(4096);
    expect(decodeStripHeader(header)).toEqual({ index: 3, data: 4, parity: 2, generation: 123456789n });
    expect(decodeStripHeader(Buffer.alloc(4096))).toBeUndefined();
  });

  it('a range falls on the data strips it touches, in order', () => {
    expect(stripRanges(0, 4 * MiB, MiB).map((r) => r.index)).toEqual([0, 1, 2, 3]);
    expect(stripRanges(MiB - 10, 20, MiB)).toEqual([
      { index: 0, offsetBytes: MiB - 10, lengthBytes: 10 },
      { index: 1, offsetBytes: 0, lengthBytes: 10 },
    ]);
    expect(stripRanges(2 * MiB + 5, 7, MiB)).toEqual([{ index: 2, offsetBytes: 5, lengthBytes: 7 }]);
  });

  it('a stripe decodes only from a generation D strips carry, the newest such', () => {
    const found = new Map<number, bigint>([[0, 2n], [1, 2n], [2, 2n], [3, 1n], [4, 1n], [5, 1n]]);
    expect(decodableGeneration(found, 4)).toBeUndefined(); // a write cut off half way
    found.set(3, 2n);
    expect(decodableGeneration(found, 4)).toEqual({ generation: 2n, strips: [0, 1, 2, 3] });
    const older = new Map<number, bigint>([[0, 5n], [1, 4n], [2, 4n], [3, 4n], [4, 4n]]);
    expect(decodableGeneration(older, 4)).toEqual({ generation: 4n, strips: [1, 2, 3, 4] });
  });
});

describe('the codec (@ronomon/reed-solomon)', () => {
  it('makes at most 6 parity strips: the sheep refuses more', () => {
    expect(codecParityStripsMax).toBe(6);
    expect(() => ecConfig({ copies: 23, copyPolicy: encodePolicy({ data: 16, parity: 7 }), strict: false })).toThrow('16:7 has more parity strips than the codec makes (6)');
    expect(ecConfig({ copies: 6, copyPolicy: 0x22, strict: true })).toEqual({ copyPolicy: 0x22, strict: true });
  });

  it('any D of the D+P strips give every strip back, for each data count', async () => {
    for (const policy of [{ data: 2, parity: 1 }, { data: 4, parity: 2 }, { data: 8, parity: 3 }, { data: 16, parity: 6 }]) {
      const share = 64 * 1024;
      const object = pattern(share * policy.data, policy.data);
      const dataStrips = Array.from({ length: policy.data }, (_, i) => object.subarray(i * share, (i + 1) * share));
      const parity = await encodeParity(policy, dataStrips);
      const all = [...dataStrips, ...parity];
      // Lose the first P strips, then the last P: data and parity both rebuilt.
      for (const lost of [Array.from({ length: policy.parity }, (_, i) => i), Array.from({ length: policy.parity }, (_, i) => policy.data + i)]) {
        const partial = all.map((strip, i) => (lost.includes(i) ? undefined : strip));
        const rebuilt = await reconstruct(policy, partial, lost);
        for (let i = 0; i < all.length; i++) expect(rebuilt[i]!.equals(all[i]!), `${policy.data}:${policy.parity} strip ${i}`).toBe(true);
      }
      await expect(reconstruct(policy, all.map((s, i) => (i <= policy.parity ? undefined : s)), [0])).rejects.toThrow('strips of');
    }
  });
});
