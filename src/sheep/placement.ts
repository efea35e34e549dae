// Where an object lives and how large it is: pure lookups over the group's epochs, registry and
// config, shared by the gateway, recovery and the admin service (no I/O, no state of its own).
import type { NodeInfo } from '../cluster/driver.js';
import { tableEntriesPerChunk } from '../engine/limits.js';
import { decodePolicy, isStripOid, stripIndex, stripObjectBytes, stripParent, type EcPolicy } from '../engine/ec-layout.js';
import { SdError } from '../engine/errors.js';
import { isInodeOid, oidHex, oidIndex, oidVid, type Oid } from '../engine/oid.js';
import { tableEntriesInChunk } from '../engine/vdi.js';
import type { Group } from './group.js';

/** An owner-table chunk: 2^20 little-endian u32 entries. */
export const tableChunkBytes = tableEntriesPerChunk * 4;

export class Placement {
  constructor(private readonly group: Group) {}

  objectSizeBytes(oid: Oid): number {
    if (isInodeOid(oid)) return tableChunkBytes;
    if (isStripOid(oid)) return stripObjectBytes(this.objectSizeBytes(stripParent(oid)), this.ecPolicy(stripParent(oid))!);
    const entry = this.group.registry.get(oidVid(oid));
    return 2 ** (entry?.blockSizeShift ?? this.group.config?.blockSizeShift ?? 22);
  }

  /**
   * The bytes of the object that can hold anything: all of a data object, but of an owner-table
   * chunk only the entries the VDI's size reaches (a 10 GiB VDI's table is 10 KiB of a 4 MiB
   * object). Recovery compares and copies this much; the rest reads as zeros everywhere, since
   * client I/O past a VDI's size is refused and every member learns a resize before it is
   * acknowledged.
   */
  contentBytes(oid: Oid): number {
    if (!isInodeOid(oid)) return this.objectSizeBytes(oid);
    const entry = this.group.registry.get(oidVid(oid));
    const entries = entry ? tableEntriesInChunk(entry, oidIndex(oid)) : 0;
    return entries > 0 ? entries * 4 : tableChunkBytes;
  }

  /** Refuses a range past the end of the object (SdError OUT_OF_RANGE): it never reads as zeros. */
  checkRange(oid: Oid, offsetBytes: number, lengthBytes: number): void {
    const sizeBytes = this.objectSizeBytes(oid);
    if (offsetBytes + lengthBytes > sizeBytes) {
      throw new SdError('OUT_OF_RANGE', `bytes ${offsetBytes}+${lengthBytes} are past the end of object ${oidHex(oid)} (${sizeBytes} bytes)`);
    }
  }

  copies(oid: Oid): number {
    const entry = this.group.registry.get(oidVid(oid));
    const policy = decodePolicy(entry?.copyPolicy);
    // Each strip is one object on one node; an EC VDI's owner table is replicated to survive
    // as many losses as its stripes do.
    if (policy && isStripOid(oid)) return 1;
    if (policy && isInodeOid(oid)) return policy.parity + 1;
    return entry?.copies ?? this.group.config?.copies ?? 1;
  }

  /** The D:P of a data object or strip of an erasure-coded VDI; undefined when replicated. */
  ecPolicy(oid: Oid): EcPolicy | undefined {
    if (isInodeOid(oid)) return undefined;
    return decodePolicy(this.group.registry.get(oidVid(oid))?.copyPolicy);
  }

  /** The nodes that hold `oid` in `epoch` (default: the current one), primary first. */
  nodes(oid: Oid, epoch = this.group.epoch): NodeInfo[] {
    if (isStripOid(oid)) return this.stripNodes(oid, epoch);
    return this.group.ring(epoch).placement(oid, this.copies(oid));
  }

  /**
   * Strip i lives on node i of its object's D+P placement (distinct zones). With fewer zones
   * than strips (a degraded, non-strict cluster) strips share nodes, round the placement.
   */
  private stripNodes(oid: Oid, epoch: number): NodeInfo[] {
    const parent = stripParent(oid);
    const policy = this.ecPolicy(parent);
    if (!policy) return [];
    const stripe = this.group.ring(epoch).placement(parent, policy.data + policy.parity);
    return stripe.length === 0 ? [] : [stripe[stripIndex(oid) % stripe.length]!];
  }
}
