// Checksums of stored objects, for recovery's differential copy: the same object is compared
// again at every epoch change, by every node that recovers it, so each copy's sum is remembered
// until the object is next written or removed (the store forgets it then). Bounded; the oldest
// sums go first.
import { createHash } from 'node:crypto';
import type { Oid } from '../engine/oid.js';
import { isZeroRange } from './block-sums.js';

/** Remembered sums per store. */
export const checksumsKeptMax = 65_536;

const blockBytes = 4096;

/**
 * sha1 over the length and each run of 4 KiB blocks that are not all zeros, with where it
 * starts: equal contents give equal sums, but the holes of a thin object (an owner table is 4 MiB
 * of mostly zeros) cost a compare, not a hash (a fortieth of the time on 4 MiB), and a dense one
 * is hashed in one piece.
 */
export function checksumOf(data: Buffer): string {
  const hash = createHash('sha1');
  const word = Buffer.allocUnsafe(16);
  word.writeDoubleBE(data.length, 0);
  hash.update(word.subarray(0, 8));
  let runStart = -1;
  const flush = (end: number) => {
    if (runStart < 0) return;
    word.writeDoubleBE(runStart, 0);
    word.writeDoubleBE(end - runStart, 8);
    hash.update(word);
    hash.update(data.subarray(runStart, end));
    runStart = -1;
  };
  for (let at = 0; at < data.length; at += blockBytes) {
    const end = Math.min(at + blockBytes, data.length);
    if (isZeroRange(data, at, end)) flush(at);
    else if (runStart < 0) runStart = at;
  }
  flush(data.length);
  return hash.digest('hex');
}

export class ChecksumCache {
  private readonly sums = new Map<Oid, { sizeBytes: number; sum: string }>();
  /** Sums being computed, by a token each: a write meanwhile drops the token, so no stale sum is kept. */
  private readonly computing = new Map<Oid, object>();

  async get(oid: Oid, sizeBytes: number, read: () => Promise<Buffer>): Promise<string> {
    const known = this.sums.get(oid);
    if (known?.sizeBytes === sizeBytes) return known.sum;
    const token = {};
    this.computing.set(oid, token);
    let sum: string;
    try {
      sum = checksumOf(await read());
    } catch (error) {
      if (this.computing.get(oid) === token) this.computing.delete(oid);
      throw error;
    }
    if (this.computing.get(oid) === token) {
      this.computing.delete(oid);
      if (this.sums.size >= checksumsKeptMax) this.sums.delete(this.sums.keys().next().value!);
      this.sums.set(oid, { sizeBytes, sum });
    }
    return sum;
  }

  /** The object changes (or goes): its sum is no longer known. */
  forget(oid: Oid): void {
    this.sums.delete(oid);
    this.computing.delete(oid);
  }
}
