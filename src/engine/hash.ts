// FNV-1a 64 (the original's VDI-id hash) and a mixer for placement.

const fnvOffsetBasis = 0xcbf29ce484222325n;
const fnvPrime = 0x100000001b3n;
const mask64 = (1n << 64n) - 1n;

/**
 * FNV-1a 64 in four 16-bit limbs: the same bits as the BigInt definition (`fnv1a64Reference`),
 * without a BigInt operation per byte (placement hashes every vnode name of every ring).
 * The prime is 2^40 + 0x1b3, so a multiply is a multiply by 0x1b3 plus a shift by 40.
 */
export function fnv1a64(bytes: Uint8Array, seed: bigint = fnvOffsetBasis): bigint {
  let h0 = Number(seed & 0xffffn);
  let h1 = Number((seed >> 16n) & 0xffffn);
  let h2 = Number((seed >> 32n) & 0xffffn);
  let h3 = Number((seed >> 48n) & 0xffffn);
  for (let i = 0; i < bytes.length; i++) {
    h0 ^= bytes[i]!;
    const t0 = h0 * 0x1b3;
    const t1 = h1 * 0x1b3 + (t0 >>> 16);
    const t2 = h2 * 0x1b3 + h0 * 0x100 + (t1 >>> 16);
    const t3 = h3 * 0x1b3 + h1 * 0x100 + (t2 >>> 16);
    h0 = t0 & 0xffff;
    h1 = t1 & 0xffff;
    h2 = t2 & 0xffff;
    h3 = t3 & 0xffff;
  }
  return (BigInt(h3) << 48n) | (BigInt(h2) << 32n) | (BigInt(h1) << 16n) | BigInt(h0);
}

/** FNV-1a 64 by its definition, in BigInt: what `fnv1a64` must equal (test/engine.test.ts). */
export function fnv1a64Reference(bytes: Uint8Array, seed: bigint = fnvOffsetBasis): bigint {
  let hash = seed;
  for (const byte of bytes) {
    hash ^= BigInt(byte);
    hash = (hash * fnvPrime) & mask64;
  }
  return hash;
}

/** murmur3's fmix64: FNV alone spreads inputs that differ in their last bytes poorly. */
export function mix64(value: bigint): bigint {
  let h = value & mask64;
  h ^= h >> 33n;
  h = (h * 0xff51afd7ed558ccdn) & mask64;
  h ^= h >> 33n;
  h = (h * 0xc4ceb9fe1a85ec53n) & mask64;
  h ^= h >> 33n;
  return h;
}

const encoder = new TextEncoder();

export function hashString(text: string): bigint {
  return mix64(fnv1a64(encoder.encode(text)));
}

export function hashOid(oid: bigint): bigint {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, oid, true);
  return mix64(fnv1a64(bytes));
}

/** VID of a name: FNV-1a 64 masked to 24 bits; 0 becomes 1. */
export function nameToVid(name: string): number {
  const vid = Number(fnv1a64(encoder.encode(name)) & 0xffffffn);
  return vid === 0 ? 1 : vid;
}
