// A list of object ids on the wire: 8 bytes each, big-endian, as a payload (a store can hold far
// more than an rpc header may).
import type { Oid } from '../engine/oid.js';

export function encodeOids(oids: readonly Oid[]): Buffer {
  const buffer = Buffer.alloc(oids.length * 8);
  oids.forEach((oid, i) => buffer.writeBigUInt64BE(oid, i * 8));
  return buffer;
}

export function decodeOids(payload: Buffer | undefined): Oid[] {
  if (!payload || payload.length % 8 !== 0) return [];
  const oids: Oid[] = [];
  for (let at = 0; at < payload.length; at += 8) oids.push(payload.readBigUInt64BE(at) as Oid);
  return oids;
}
