// Checksums of stored objects, for recovery's differential copy: the same object is compared
// again at every epoch change, by every node that recovers it, so each copy's sum is remembered
// until the object is next written or removed (the store forgets it then). Bounded; the oldest
// sums go first.
import { createHash } from 'node:crypto';
import type { Oid } from '../engine/oid.js';

/** Remembered sums per store. */
export const checksumsKeptMax = 65_536;

export function checksumOf(data: Buffer): string {
  return createHash('sha1').update(data).digest('hex');
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
