// FNV-1a 64 (the original's VDI-id hash) and a mixer for placement.

const fnvOffsetBasis = 0xcbf29ce484222325n;
const fnvPrime = 0x100000001b3n;
const mask64 = (1n << 64n) - 1n;

export function fnv1a64(bytes: Uint8Array, seed: bigint = fnvOffsetBasis): bigint {
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
