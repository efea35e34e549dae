// Where an object lives and how large it is: pure lookups over the group's epochs, registry and
// config, shared by the gateway, recovery and the admin service (no I/O, no state of its own).
import type { NodeInfo } from '../cluster/driver.js';
import { tableEntriesPerChunk } from '../engine/limits.js';
import { SdError } from '../engine/errors.js';
import { isInodeOid, oidHex, oidVid, type Oid } from '../engine/oid.js';
import type { Group } from './group.js';

/** An owner-table chunk: 2^20 little-endian u32 entries. */
export const tableChunkBytes = tableEntriesPerChunk * 4;

export class Placement {
  constructor(private readonly group: Group) {}

  objectSizeBytes(oid: Oid): number {
    if (isInodeOid(oid)) return tableChunkBytes;
    const entry = this.group.registry.get(oidVid(oid));
    return 2 ** (entry?.blockSizeShift ?? this.group.config?.blockSizeShift ?? 22);
  }

  /** Refuses a range past the end of the object (SdError OUT_OF_RANGE): it never reads as zeros. */
  checkRange(oid: Oid, offsetBytes: number, lengthBytes: number): void {
    const sizeBytes = this.objectSizeBytes(oid);
    if (offsetBytes + lengthBytes > sizeBytes) {
      throw new SdError('OUT_OF_RANGE', `bytes ${offsetBytes}+${lengthBytes} are past the end of object ${oidHex(oid)} (${sizeBytes} bytes)`);
    }
  }

  copies(oid: Oid): number {
    return this.group.registry.get(oidVid(oid))?.copies ?? this.group.config?.copies ?? 1;
  }

  /** The nodes that hold `oid` in `epoch` (default: the current one), primary first. */
  nodes(oid: Oid, epoch = this.group.epoch): NodeInfo[] {
    return this.group.ring(epoch).placement(oid, this.copies(oid));
  }
}
