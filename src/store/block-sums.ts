// The layout of an object file and the checksums every copy carries (docs/integrity.md):
//
//   [0, 64)            identity: magic, oid, object size, block size, its own crc
//   [64, 64 + 64 KiB)  one u32 per 4 KiB block of data: crc32(block) XOR crc32(4 KiB of zeros)
//   [69632, ...)       the data
//
// Sums live in the same file as the data, so a sync or a rename covers both in one step, and a
// file put in place of another object's is caught by its identity. The XOR makes a zero block's
// sum 0: a hole in the data has a hole for its sum, so thin objects stay thin.
import { crc32 } from 'node:zlib';
import { objectSizeBytesMax } from '../engine/limits.js';
import { oidHex, type Oid } from '../engine/oid.js';

export const sumBlockBytes = 4096;
export const identityBytes = 64;
export const sumsOffset = identityBytes;
const sumsBytesMax = (objectSizeBytesMax / sumBlockBytes) * 4;
/** Where data begins: past the largest table, on a block boundary. */
export const dataOffset = Math.ceil((sumsOffset + sumsBytesMax) / sumBlockBytes) * sumBlockBytes;

/** Sums travel with a whole write for objects up to 16 MiB (in the rpc header, under its limit). */
export const sumsSentBytesMax = 16 * 1024;

const magic = 0x53444f32; // "SDO2"
const zeroSum = crc32(Buffer.alloc(sumBlockBytes));
/** Zeros to compare data against, 16 blocks at a time. */
const zeroRunBlocks = 16;
const zeroRun = Buffer.alloc(zeroRunBlocks * sumBlockBytes);

/** The stored sum of one block (a shorter last block is summed as if padded with zeros). */
export function blockSum(block: Buffer): number {
  if (block.length === sumBlockBytes) return (crc32(block) ^ zeroSum) >>> 0;
  const padded = Buffer.alloc(sumBlockBytes);
  block.copy(padded);
  return (crc32(padded) ^ zeroSum) >>> 0;
}

/**
 * Whether bytes [start, end) of `data` are all zeros: one compare per 64 KiB. Zero blocks are
 * what thin objects are mostly made of (an owner table is 4 MiB of nearly all zeros), and their
 * sum is known to be 0: comparing them is several times cheaper than summing them.
 */
export function isZeroRange(data: Buffer, start: number, end: number): boolean {
  for (let at = start; at < end; at += zeroRun.length) {
    const to = Math.min(end, at + zeroRun.length);
    if (data.compare(zeroRun, 0, to - at, at, to) !== 0) return false;
  }
  return true;
}

/** The sums of `data`, which starts on a block boundary, as they are stored (u32 big-endian). */
export function sumsOf(data: Buffer): Buffer {
  const count = Math.ceil(data.length / sumBlockBytes);
  const sums = Buffer.alloc(count * 4); // a zero block's sum is 0: left as allocated
  for (let index = 0; index < count; index++) {
    const at = index * sumBlockBytes;
    const end = Math.min(at + sumBlockBytes, data.length);
    if (!isZeroRange(data, at, end)) sums.writeUInt32BE(blockSum(data.subarray(at, end)), index * 4);
  }
  return sums;
}

export function encodeIdentity(oid: Oid, sizeBytes: number): Buffer {
  const identity = Buffer.alloc(identityBytes);
  identity.writeUInt32BE(magic, 0);
  identity.writeBigUInt64BE(oid, 4);
  identity.writeUInt32BE(sizeBytes, 12);
  identity.writeUInt32BE(sumBlockBytes, 16);
  identity.writeUInt32BE(crc32(identity.subarray(0, 28)), 28);
  return identity;
}

/** What is wrong with a file's identity for object `oid`, or undefined when it is right. */
export function identityProblem(identity: Buffer, oid: Oid): string | undefined {
  if (identity.length < identityBytes) return 'the file is shorter than its header';
  if (identity.readUInt32BE(0) !== magic || crc32(identity.subarray(0, 28)) !== identity.readUInt32BE(28)) {
    return 'the header is damaged';
  }
  const held = identity.readBigUInt64BE(4);
  if (held !== oid) return `the file holds object ${oidHex(held as Oid)}`;
  if (identity.readUInt32BE(16) !== sumBlockBytes) return 'the header names another block size';
  return undefined;
}

/** The object size a valid identity records. */
export function identitySizeBytes(identity: Buffer): number {
  return identity.readUInt32BE(12);
}

/** The blocks [first, end) that hold the bytes [offsetBytes, offsetBytes + lengthBytes). */
export function blocksSpanned(offsetBytes: number, lengthBytes: number): { first: number; end: number } {
  return {
    first: Math.floor(offsetBytes / sumBlockBytes),
    end: Math.ceil((offsetBytes + lengthBytes) / sumBlockBytes),
  };
}

/**
 * The first block of `data` (block `first` onwards) whose sum is not the one stored in `sums`
 * (the stored sums of blocks first.., u32 each), or -1 when all match. A run of blocks stored as
 * zeros (sum 0) that holds only zeros passes with one compare; anything else is summed.
 */
export function firstBadBlock(data: Buffer, sums: Buffer, first: number): number {
  const count = Math.ceil(data.length / sumBlockBytes);
  for (let index = 0; index < count; ) {
    const at = index * sumBlockBytes;
    let runEnd = index;
    while (runEnd < count && runEnd - index < zeroRunBlocks && sums.readUInt32BE(runEnd * 4) === 0) runEnd++;
    if (runEnd > index && isZeroRange(data, at, Math.min(runEnd * sumBlockBytes, data.length))) {
      index = runEnd;
      continue;
    }
    const block = data.subarray(at, Math.min(at + sumBlockBytes, data.length));
    if (blockSum(block) !== sums.readUInt32BE(index * 4)) return first + index;
    index++;
  }
  return -1;
}
