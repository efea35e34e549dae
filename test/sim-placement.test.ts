// Rings remember placements (the simulator's recovery asks for each object in every past epoch):
// the remembered answers must be those a fresh computation gives, and callers' arrays their own.
import { describe, expect, test } from 'vitest';
import { Ring, ringPlacementMemoMax, type RingNode } from '../src/engine/ring.js';

const nodes: RingNode[] = [1, 2, 3, 4, 5].map((i) => ({ id: `10.0.0.${i}:7000`, zone: i, vnodes: 64 }));
const oids = Array.from({ length: ringPlacementMemoMax + 100 }, (_, i) => (BigInt(i % 7) << 32n) | BigInt(i));

describe('ring placement memo', () => {
  test('answers equal a fresh ring’s, past the memo’s bound too, for each copies count', () => {
    const ring = new Ring(nodes);
    for (const pass of [1, 2]) {
      for (const copies of [1, 3]) {
        for (const oid of oids.filter((_, i) => i % 37 === pass)) {
          const fresh = new Ring(nodes).placement(oid, copies).map((n) => n.id);
          expect(ring.placement(oid, copies).map((n) => n.id)).toEqual(fresh);
        }
      }
      for (const oid of oids) ring.placement(oid, 3); // overflows the memo: it starts over
    }
  });

  test('a caller that sorts or empties its answer does not change the next one', () => {
    const ring = new Ring(nodes);
    const first = ring.placement(42n, 3);
    const ids = first.map((n) => n.id);
    first.sort((a, b) => (a.id < b.id ? 1 : -1)).pop();
    expect(ring.placement(42n, 3).map((n) => n.id)).toEqual(ids);
  });
});
