// Object-level I/O as a VDI client sees it: a sheep's gateway in-process, or rpc to a sheep.
import type { Oid } from './oid.js';
import type { VdiEntry, SnapshotRef } from './vdi.js';

export interface WriteOptions {
  /** Acknowledged from every replica's OS cache, made durable by `flush` (docs/durability.md). */
  cached?: boolean;
  /** The writer's lock holder; refused LOCK_LOST when the cluster no longer holds it. */
  lock?: string;
}

export interface ObjectIo {
  /** Bytes of the object; NO_OBJECT when no replica has it. */
  read(oid: Oid, offsetBytes: number, lengthBytes: number): Promise<Buffer>;
  /**
   * Writes to every replica. `create`: the object may not exist yet (a first write of a range
   * makes a sparse object); otherwise a replica that lacks it is repaired first.
   */
  write(oid: Oid, offsetBytes: number, data: Buffer, create: boolean, options?: WriteOptions): Promise<void>;
  /**
   * `cached` writes (docs/durability.md) are acknowledged once in every replica's OS cache; this
   * makes those to VDI `vid` acknowledged so far durable on every replica's disk. An ObjectIo
   * without it writes durably whatever `cached` says.
   */
  flush?(vid: number): Promise<void>;
  /** Removes the object from every node. */
  remove(oid: Oid, lock?: string): Promise<void>;
  lookup(name: string, ref: SnapshotRef): Promise<VdiEntry>;
}
