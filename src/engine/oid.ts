// Object ids: 64 bits, as the original. Bit 63 = inode (here: the VDI's owner table), bits 55..32
// = VDI id, bits 31..0 = object index (for inode objects: the table chunk).

declare const vidBrand: unique symbol;
declare const oidBrand: unique symbol;
/** A VDI id: 24 bits, never 0. */
export type Vid = number & { readonly [vidBrand]: true };
export type Oid = bigint & { readonly [oidBrand]: true };

const inodeBit = 1n << 63n;
const vmstateBit = 1n << 62n;
const attrBit = 1n << 61n;
const vidMask = 0xffffffn;
const indexMask = 0xffffffffn;

export function asVid(value: number): Vid {
  if (!Number.isInteger(value) || value < 1 || value > 0xffffff) {
    throw new RangeError(`not a VDI id: ${value}`);
  }
  return value as Vid;
}

export function dataOid(vid: Vid, index: number): Oid {
  return ((BigInt(vid) << 32n) | BigInt(index >>> 0)) as Oid;
}

/** The inode object holding chunk `chunk` of the VDI's owner table. */
export function inodeOid(vid: Vid, chunk = 0): Oid {
  return (inodeBit | (BigInt(vid) << 32n) | BigInt(chunk >>> 0)) as Oid;
}

export function oidVid(oid: Oid): Vid {
  return Number((oid >> 32n) & vidMask) as Vid;
}

export function oidIndex(oid: Oid): number {
  return Number(oid & indexMask);
}

export function isInodeOid(oid: Oid): boolean {
  return (oid & inodeBit) !== 0n;
}

/** Parses and checks an oid from outside (wire or file name). Returns undefined if malformed. */
export function parseOid(value: unknown): Oid | undefined {
  let oid: bigint;
  if (typeof value === 'bigint') oid = value;
  else if (typeof value === 'string' && /^[0-9a-f]{16}$/.test(value)) oid = BigInt(`0x${value}`);
  else return undefined;
  if (oid < 0n || oid >= 1n << 64n) return undefined;
  if (((oid >> 32n) & vidMask) === 0n) return undefined;
  // Bits 60..56 number an erasure-coded object's strip and bit 62 marks a strip staged by a
  // write not yet committed (ec-layout.ts); an inode is never cut so.
  const strip = ((oid >> 56n) & 0x1fn) !== 0n;
  if ((oid & attrBit) !== 0n || ((oid & vmstateBit) !== 0n && !strip)) return undefined;
  if (strip && (oid & inodeBit) !== 0n) return undefined;
  return oid as Oid;
}

export function oidHex(oid: Oid): string {
  return oid.toString(16).padStart(16, '0');
}
