// Placement: consistent hashing on a ring of virtual nodes. An object's replicas are the nodes of
// the first vnodes at or after its hash, skipping zones already used. A pure function of
// (oid, nodes, copies): every sheep computes the same answer with no coordination.
import { hashOid, hashString } from './hash.js';

export interface RingNode {
  id: string;
  zone: number;
  vnodes: number;
}

/** Placements one ring remembers (a few hundred KiB per ring): a test cluster holds far fewer objects. */
export const ringPlacementMemoMax = 4096;

interface Point {
  position: number;
  node: number; // index into nodes
}

/** 53 bits of a 64-bit hash: exact in a double, and plenty for ordering. */
function position(hash: bigint): number {
  return Number(hash >> 11n);
}

export class Ring<N extends RingNode = RingNode> {
  readonly nodes: readonly N[];
  readonly zoneCount: number;
  private readonly points: Point[];
  /** Placements computed so far, by copies and oid. */
  private readonly memo = new Map<number, Map<bigint, readonly N[]>>();

  constructor(nodes: readonly N[]) {
    // Sorting by id makes the ring independent of the order members were listed in.
    this.nodes = [...nodes].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    this.points = [];
    const zones = new Set<number>();
    this.nodes.forEach((node, index) => {
      if (node.vnodes > 0) zones.add(node.zone);
      for (let v = 0; v < node.vnodes; v++) {
        this.points.push({ position: position(hashString(`${node.id}#${v}`)), node: index });
      }
    });
    this.points.sort((a, b) => a.position - b.position || a.node - b.node);
    this.zoneCount = zones.size;
  }

  /** Effective copies: never more than the number of zones that store data. */
  effectiveCopies(copies: number): number {
    return Math.min(copies, this.zoneCount);
  }

  /** The nodes that hold `oid`, primary first (a fresh array: callers may sort it). */
  placement(oid: bigint, copies: number): N[] {
    // A ring never changes, and recovery asks for one object's placement in every past epoch:
    // remembered per ring (bounded: a full memo starts over).
    let answers = this.memo.get(copies);
    if (answers === undefined) this.memo.set(copies, (answers = new Map()));
    let nodes = answers.get(oid);
    if (nodes === undefined) {
      if (answers.size >= ringPlacementMemoMax) answers.clear();
      nodes = this.compute(oid, copies);
      answers.set(oid, nodes);
    }
    return nodes.slice();
  }

  private compute(oid: bigint, copies: number): N[] {
    const wanted = this.effectiveCopies(copies);
    const result: N[] = [];
    if (wanted === 0) return result;
    const usedZones = new Set<number>();
    const start = this.firstPointAtOrAfter(position(hashOid(oid)));
    for (let step = 0; step < this.points.length && result.length < wanted; step++) {
      const point = this.points[(start + step) % this.points.length]!;
      const node = this.nodes[point.node]!;
      if (usedZones.has(node.zone)) continue;
      usedZones.add(node.zone);
      result.push(node);
    }
    return result;
  }

  private firstPointAtOrAfter(target: number): number {
    let low = 0;
    let high = this.points.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.points[middle]!.position < target) low = middle + 1;
      else high = middle;
    }
    return low === this.points.length ? 0 : low;
  }
}
