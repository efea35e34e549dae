// Randomness, passed in: the system's for production, a seeded generator for the simulator, so
// the same seed replays the same run.
import { randomBytes, randomInt } from 'node:crypto';

export interface Random {
  /** Uniform integer in [0, 2^32). */
  u32(): number;
  /** Uniform integer in [0, maxExclusive); maxExclusive is a positive safe integer. */
  int(maxExclusive: number): number;
  /** Uniform float in [0, 1). */
  float(): number;
  bytes(length: number): Buffer;
}

export const systemRandom: Random = {
  u32: () => randomBytes(4).readUInt32LE(0),
  int: (maxExclusive) => randomInt(maxExclusive),
  float: () => randomBytes(4).readUInt32LE(0) / 2 ** 32,
  bytes: (length) => randomBytes(length),
};

/** sfc32, seeded through splitmix32: fast, small state, good enough for schedules and workloads. */
export function seededRandom(seed: number): Random {
  let s = seed >>> 0;
  const splitmix = () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix();
  let b = splitmix();
  let c = splitmix();
  let d = splitmix();
  const u32 = (): number => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  const float = () => u32() / 2 ** 32;
  return {
    u32,
    float,
    int: (maxExclusive) => Math.floor(float() * maxExclusive),
    bytes(length) {
      const out = Buffer.alloc(length);
      for (let i = 0; i < length; i += 4) {
        const word = u32();
        for (let j = 0; j < 4 && i + j < length; j++) out[i + j] = (word >>> (8 * j)) & 0xff;
      }
      return out;
    },
  };
}
