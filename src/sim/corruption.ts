// Disk corruption at rest, the simulator's fault: one stored copy on one live host is damaged by
// reaching into that host's memory disk, never through the sheep: a byte flipped where the store
// keeps something (identity, block sums, written data), the file truncated, or the file replaced
// by another object's. At most copies − 1 copies of one object are damaged at once, together
// with the hosts that are down or cut off, so a good copy always exists. A copy counts as
// damaged until the next convergence, which has every node scrub (the daemon's own repair) and
// then checks, by the store's layout read straight off the memory disk, that every copy passes.
import { oidHex, parseOid, type Oid } from '../engine/oid.js';
import { memoryBlockBytes, type FileView } from '../io/memory-disk.js';
import type { Random } from '../io/random.js';
import { blockSum, dataOffset, identityBytes, identityProblem, identitySizeBytes, sumBlockBytes, sumsOffset } from '../store/block-sums.js';
import { storeDir, type SimHost } from './hosts.js';

export const objectDir = `${storeDir}/obj`;

export interface DamagedCopy {
  host: SimHost;
  oid: Oid;
  path: string;
  /** The inode damaged: once the name points at another (a whole rewrite), it is not this copy. */
  fileId: number;
}

const zeroBlock = Buffer.alloc(memoryBlockBytes);

/** Bytes [start, start + length) of a file as a read sees them (holes and bytes past the end are zeros). */
function bytesOf(view: FileView, start: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let at = start; at < Math.min(start + length, view.sizeBytes); ) {
    const index = Math.floor(at / memoryBlockBytes);
    const within = at - index * memoryBlockBytes;
    const take = Math.min(memoryBlockBytes - within, start + length - at, view.sizeBytes - at);
    (view.blocks.get(index) ?? zeroBlock).copy(out, at - start, within, within + take);
    at += take;
  }
  return out;
}

/**
 * What is wrong with a stored copy of `oid` by the store's layout (src/store/block-sums.ts),
 * checked here independently of the daemon: its identity, and every data block of its first
 * `contentBytes` (what the daemon reads and verifies: an owner table's usable part,
 * Placement.contentBytes) against its sum. Undefined when it passes. Holes cost nothing.
 */
export function copyProblem(view: FileView, oid: Oid, contentBytes: number): string | undefined {
  const identity = bytesOf(view, 0, identityBytes);
  const problem = view.sizeBytes < identityBytes ? 'the file is shorter than its header' : identityProblem(identity, oid);
  if (problem) return problem;
  const blocks = Math.ceil(Math.min(contentBytes, identitySizeBytes(identity)) / sumBlockBytes);
  const sums = bytesOf(view, sumsOffset, blocks * 4);
  const firstDataBlock = dataOffset / memoryBlockBytes;
  for (let block = 0; block < blocks; block++) {
    const sum = sums.readUInt32BE(block * 4);
    const start = dataOffset + block * sumBlockBytes;
    const whole = view.sizeBytes >= start + sumBlockBytes ? view.blocks.get(firstDataBlock + block) : undefined;
    if (sum === 0 && whole === undefined && !view.blocks.has(firstDataBlock + block)) continue; // a hole, summed so
    const data = whole ?? bytesOf(view, start, sumBlockBytes);
    if (blockSum(data) !== sum) return `block ${block} fails its checksum`;
  }
  return undefined;
}

export class Corruption {
  /** Copies damaged since the last convergence. */
  readonly damaged: DamagedCopy[] = [];
  /** Damage struck since the last convergence (which then runs the repair). */
  struck = false;

  constructor(private readonly random: Random) {}

  /** After a convergence: every copy was checked and found sound. */
  reset(): void {
    this.damaged.length = 0;
    this.struck = false;
  }

  /** Still the damaged inode under that name (a rewrite of the whole object replaces it). */
  private outstanding(copy: DamagedCopy): boolean {
    return copy.host.disk.fileId(copy.path) === copy.fileId;
  }

  /** Damaged copies of `oid` still in place. */
  count(oid: Oid): number {
    return this.damaged.filter((copy) => copy.oid === oid && this.outstanding(copy)).length;
  }

  /** The most damaged copies any one object has: they count against the fault budget. */
  maxPerObject(): number {
    const counts = new Map<Oid, number>();
    let max = 0;
    for (const copy of this.damaged) {
      if (!this.outstanding(copy)) continue;
      const count = (counts.get(copy.oid) ?? 0) + 1;
      counts.set(copy.oid, count);
      max = Math.max(max, count);
    }
    return max;
  }

  isDamaged(oid: Oid, hostId: string): boolean {
    return this.damaged.some((copy) => copy.oid === oid && copy.host.id === hostId && this.outstanding(copy));
  }

  /**
   * Damages one copy on `host` of an object with fewer than `perObjectMax` damaged copies;
   * returns the trace line.
   */
  async strike(host: SimHost, perObjectMax: number, contentBytes: (oid: Oid) => number): Promise<string> {
    const oids = (await host.disk.list(objectDir)).map((name) => parseOid(/^[0-9a-f]{16}$/.test(name) ? BigInt(`0x${name}`) : undefined));
    const held = oids.filter((oid): oid is Oid => oid !== undefined);
    const candidates = held.filter((oid) => !this.isDamaged(oid, host.id) && this.count(oid) < perObjectMax);
    const oid = candidates.length === 0 ? undefined : candidates[this.random.int(candidates.length)]!;
    if (oid === undefined) return `corrupt ${host.name}: nothing to damage`;
    const path = `${objectDir}/${oidHex(oid)}`;
    const view = host.disk.view(path)!;
    const others = held.filter((other) => other !== oid);
    const kind = this.random.int(others.length > 0 ? 3 : 2);
    let what: string;
    if (kind === 0) {
      const at = this.byteThatMatters(view, contentBytes(oid));
      host.disk.flipByteAtRest(path, at, 1 + this.random.int(255));
      what = `flip byte ${at}`;
    } else if (kind === 1) {
      // Mostly inside the data; sometimes into the header.
      const dataBytes = Math.max(1, view.sizeBytes - dataOffset);
      const length = this.random.int(4) === 0 ? this.random.int(dataOffset) : dataOffset + this.random.int(dataBytes);
      host.disk.truncateAtRest(path, Math.min(length, view.sizeBytes));
      what = `truncate to ${length}`;
    } else {
      const other = others[this.random.int(others.length)]!;
      host.disk.overwriteAtRest(path, `${objectDir}/${oidHex(other)}`);
      what = `replace with ${oidHex(other)}`;
    }
    this.damaged.push({ host, oid, path, fileId: host.disk.fileId(path)! });
    this.struck = true;
    return `corrupt ${host.name} ${oidHex(oid)}: ${what}`;
  }

  /**
   * A byte a read depends on (inside the object's first `contentBytes`, which is all the daemon
   * reads): in a written data block mostly, else the identity or a block's sum.
   */
  private byteThatMatters(view: FileView, contentBytes: number): number {
    const firstDataBlock = dataOffset / memoryBlockBytes;
    const end = Math.min(view.sizeBytes, dataOffset + contentBytes);
    const written = [...view.blocks.keys()].filter((index) => index >= firstDataBlock && index * memoryBlockBytes < end).sort((a, b) => a - b);
    if (written.length > 0 && this.random.int(4) !== 0) {
      const index = written[this.random.int(written.length)]!;
      return index * memoryBlockBytes + this.random.int(Math.min(memoryBlockBytes, end - index * memoryBlockBytes));
    }
    const identity = bytesOf(view, 0, identityBytes);
    const blocks = Math.ceil(Math.min(contentBytes, identitySizeBytes(identity)) / sumBlockBytes);
    // The identity's covered bytes (magic .. its crc), or one block's sum.
    if (this.random.int(2) === 0 || blocks === 0) return this.random.int(32);
    return sumsOffset + this.random.int(blocks * 4);
  }
}
