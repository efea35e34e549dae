// Which of one sheep's disks holds an object: consistent hashing on a ring of virtual disks, each
// disk owning vdisks in proportion to its size (the original's sheep/store/md.c). A disk's
// vdisks depend only on its path and size, so plugging one moves only the objects that now land
// on its vdisks, and unplugging one moves only its own. Pure: paths and sizes come in.
import { hashOid, hashString, mix64 } from './hash.js';
import { mdVdiskBytes, mdVdisksPerDiskMax } from './limits.js';

export interface MdRingDisk {
  /** The disk's directory, as plugged (the ring's identity of the disk). */
  path: string;
  sizeBytes: number;
}

/** The original's vdisk_number: one per `mdVdiskBytes`, rounded up (a disk has at least one). */
export function vdiskCount(sizeBytes: number): number {
  return Math.min(mdVdisksPerDiskMax, Math.max(1, Math.ceil(sizeBytes / mdVdiskBytes)));
}

/**
 * The object's position on the disk ring. Not the cluster ring's hash: the objects a node holds
 * are those whose hash falls in its arcs, and the same hash again would map those arcs onto the
 * disks unevenly.
 */
function objectPosition(oid: bigint): number {
  return Number(mix64(hashOid(oid) ^ 0x6d642d72696e67n) >> 11n);
}

function vdiskPosition(path: string, index: number): number {
  return Number(hashString(`${path}#md${index}`) >> 11n);
}

export class MdRing {
  readonly disks: readonly MdRingDisk[];
  /** Vdisk positions, ascending, and the disk (index into `disks`) each belongs to. */
  private readonly positions: Float64Array;
  private readonly owners: Uint16Array;

  constructor(disks: readonly MdRingDisk[]) {
    // Sorted by path: the ring does not depend on the order disks were given in.
    this.disks = [...disks].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const points: Array<{ position: number; disk: number }> = [];
    this.disks.forEach((disk, index) => {
      for (let v = 0; v < vdiskCount(disk.sizeBytes); v++) points.push({ position: vdiskPosition(disk.path, v), disk: index });
    });
    points.sort((a, b) => a.position - b.position || a.disk - b.disk);
    this.positions = Float64Array.from(points, (p) => p.position);
    this.owners = Uint16Array.from(points, (p) => p.disk);
  }

  /** The disks in the order `oid` prefers them: its own first, then the next distinct ones on the ring. */
  order(oid: bigint): string[] {
    const result: string[] = [];
    const count = this.positions.length;
    if (count === 0) return result;
    const seen = new Set<number>();
    const start = this.firstAtOrAfter(objectPosition(oid));
    for (let step = 0; step < count && seen.size < this.disks.length; step++) {
      const disk = this.owners[(start + step) % count]!;
      if (seen.has(disk)) continue;
      seen.add(disk);
      result.push(this.disks[disk]!.path);
    }
    return result;
  }

  /** The disk `oid` belongs on; undefined when there is none. */
  diskOf(oid: bigint): string | undefined {
    const count = this.positions.length;
    if (count === 0) return undefined;
    return this.disks[this.owners[this.firstAtOrAfter(objectPosition(oid)) % count]!]!.path;
  }

  private firstAtOrAfter(position: number): number {
    let low = 0;
    let high = this.positions.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.positions[middle]! < position) low = middle + 1;
      else high = middle;
    }
    return low; // == length wraps to 0
  }
}
