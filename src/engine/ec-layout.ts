// Erasure coding, the pure part: the D:P policy byte, strip object ids, the strip header and how
// an object's bytes fall on its strips. No codec here (src/io/reed-solomon.ts), no I/O.
//
// An object of an erasure-coded VDI is never stored as itself: it is D data strips (its bytes cut
// in D contiguous pieces) and P parity strips, each its own object id (the object's id with the
// strip number in bits 60..56), each on one node of the object's D+P placement (docs/erasure-coding.md).
import { SdError } from './errors.js';
import { isInodeOid, type Oid } from './oid.js';
import { piecesOf } from './pieces.js';

/** The original's limits: 2, 4, 8 or 16 data strips, 1 to 15 parity strips (SD_EC_MAX_STRIP). */
export const ecDataStripChoices = [2, 4, 8, 16] as const;
export const ecParityStripsMax = 15;
export const ecStripsMax = 16 + ecParityStripsMax;
/** Each strip object starts with one 4 KiB block of header: its own block checksum, never mixed with data. */
export const stripHeaderBytes = 4096;

const stripShift = 56n;
const stripMask = 0x1fn << stripShift;
const stagedBit = 1n << 62n;
const stripMagic = 0x53444543; // "SDEC"

export interface EcPolicy {
  data: number;
  parity: number;
}

/** Whether D:P is one the original accepts, with parity fewer than data. */
export function isValidPolicy(data: number, parity: number): boolean {
  return (ecDataStripChoices as readonly number[]).includes(data) && Number.isInteger(parity) && parity >= 1 && parity < data;
}

/** The original's copy_policy byte: (D / 2) << 4 | P (4 bits each; 16 does not fit unhalved). */
export function encodePolicy(policy: EcPolicy): number {
  if (!isValidPolicy(policy.data, policy.parity)) throw new SdError('INVALID_ARGUMENT', `Invalid parameter ${policy.data}:${policy.parity}`);
  return ((policy.data / 2) << 4) | policy.parity;
}

/** The policy a copy_policy byte names; undefined for 0 (replicated). */
export function decodePolicy(byte: number | undefined): EcPolicy | undefined {
  if (byte === undefined || byte === 0) return undefined;
  const policy = { data: (byte >> 4) * 2, parity: byte & 0x0f };
  if (!isValidPolicy(policy.data, policy.parity)) throw new SdError('INVALID_ARGUMENT', `not an erasure coding policy: ${byte}`);
  return policy;
}

export function policyText(policy: EcPolicy): string {
  return `${policy.data}:${policy.parity}`;
}

/** `COPIES` or `D:P` as the Copies column shows it. */
export function redundancyText(copies: number, copyPolicy: number | undefined): string {
  const policy = decodePolicy(copyPolicy);
  return policy ? policyText(policy) : String(copies);
}

/** Every strip of an EC object has the same size: a share of the object, plus its header. */
export function stripDataBytes(objectBytes: number, policy: EcPolicy): number {
  const share = objectBytes / policy.data;
  // Object sizes are powers of two of at least 1 MiB: a share is a multiple of 4 KiB (and of 8, for the codec).
  if (!Number.isInteger(share) || share % 4096 !== 0) throw new RangeError(`object of ${objectBytes} bytes does not cut in ${policy.data}`);
  return share;
}

export function stripObjectBytes(objectBytes: number, policy: EcPolicy): number {
  return stripHeaderBytes + stripDataBytes(objectBytes, policy);
}

export function stripOid(oid: Oid, index: number): Oid {
  if (isInodeOid(oid) || isStripOid(oid)) throw new RangeError('only a data object is cut in strips');
  if (!Number.isInteger(index) || index < 0 || index >= ecStripsMax) throw new RangeError(`no strip ${index}`);
  return (oid | (BigInt(index + 1) << stripShift)) as Oid;
}

export function isStripOid(oid: Oid): boolean {
  return (oid & stripMask) !== 0n;
}

/** The strip's number (0..D-1 data, D..D+P-1 parity). */
export function stripIndex(oid: Oid): number {
  const field = Number((oid & stripMask) >> stripShift);
  if (field === 0) throw new RangeError('not a strip');
  return field - 1;
}

/** The object a strip (staged or not) belongs to. */
export function stripParent(oid: Oid): Oid {
  return (oid & ~(stripMask | stagedBit)) as Oid;
}

/** Where a write puts strip `oid` before it commits it (docs/erasure-coding.md): same node, own file. */
export function stagedOid(oid: Oid): Oid {
  if (!isStripOid(oid) || isStagedOid(oid)) throw new RangeError('only a strip is staged');
  return (oid | stagedBit) as Oid;
}

export function isStagedOid(oid: Oid): boolean {
  return (oid & stagedBit) !== 0n && isStripOid(oid);
}

/** The strip a staged strip commits to. */
export function committedOid(oid: Oid): Oid {
  return (oid & ~stagedBit) as Oid;
}

export interface StripHeader {
  index: number;
  data: number;
  parity: number;
  /** Which write made this strip: a stripe decodes only from strips of one generation. */
  generation: bigint;
}

export function encodeStripHeader(header: StripHeader): Buffer {
  const out = Buffer.alloc(stripHeaderBytes);
  out.writeUInt32BE(stripMagic, 0);
  out.writeUInt8(header.index, 4);
  out.writeUInt8(header.data, 5);
  out.writeUInt8(header.parity, 6);
  out.writeBigUInt64BE(header.generation, 8);
  return out;
}

/** A strip's header, or undefined when the bytes are not one (zeros: a strip never written). */
export function decodeStripHeader(bytes: Buffer): StripHeader | undefined {
  if (bytes.length < 16 || bytes.readUInt32BE(0) !== stripMagic) return undefined;
  return { index: bytes.readUInt8(4), data: bytes.readUInt8(5), parity: bytes.readUInt8(6), generation: bytes.readBigUInt64BE(8) };
}

/**
 * Which strips a read of `offset..offset+length` of the object touches, and where in each:
 * data strip `index` holds object bytes [index * share, (index + 1) * share), so the cut is the
 * one a VDI range makes at object boundaries.
 */
export function stripRanges(offsetBytes: number, lengthBytes: number, shareBytes: number): Array<{ index: number; offsetBytes: number; lengthBytes: number }> {
  return piecesOf(offsetBytes, lengthBytes, shareBytes).map((piece) => ({ index: piece.index, offsetBytes: piece.innerBytes, lengthBytes: piece.lengthBytes }));
}

/**
 * Of the strips found (index, generation: an index may come twice, committed and staged), the
 * newest generation that at least D distinct strips carry, and those strips; undefined when no
 * generation has D. A generation on fewer than D strips is a write that never finished: it is
 * never decoded (docs/erasure-coding.md).
 */
export function decodableGeneration(found: Iterable<readonly [number, bigint]>, data: number): { generation: bigint; strips: number[] } | undefined {
  const byGeneration = new Map<bigint, Set<number>>();
  for (const [index, generation] of found) {
    const indexes = byGeneration.get(generation) ?? new Set<number>();
    indexes.add(index);
    byGeneration.set(generation, indexes);
  }
  let best: { generation: bigint; strips: number[] } | undefined;
  for (const [generation, strips] of byGeneration) {
    if (strips.size < data) continue;
    if (!best || generation > best.generation) best = { generation, strips: [...strips].sort((a, b) => a - b) };
  }
  return best;
}
