// `cluster format -R` (recycle VIDs): the VIDs of deleted VDIs are freed for new VDIs, as the
// original's run_vid_gc, but only when no copy of them can come back under a new VDI's name.
// Pure: the caller lists the objects the members hold and hands in the epochs.
//
// A VID is freed with its whole family (a VDI, its snapshots, their clones: everything linked by
// parent), once (1) every member of the family is deleted, as in the original, so `vdi tree` of a
// live VDI never names a freed parent; (2) no member holds an object of any of its VIDs; and
// (3) every node that stored data in any epoch since the family's oldest VDI was made is a member
// now: a node that was away could bring old objects back, which a recycled VID would read as the
// new VDI's data. Until such a node is back and its copies were reclaimed, the VIDs stay taken.
import type { NodeInfo } from '../cluster/driver.js';
import { oidVid, type Oid } from '../engine/oid.js';
import type { VdiEntry, VdiRegistry } from '../engine/vdi.js';
import type { EpochRecord } from '../store/meta.js';

/** The registry's entries grouped by the root their parent links lead to. */
export function families(entries: readonly VdiEntry[]): VdiEntry[][] {
  const byVid = new Map(entries.map((e) => [e.vid, e]));
  const rootOf = (entry: VdiEntry): number => {
    let at = entry;
    for (let steps = 0; steps < byVid.size; steps++) {
      const parent = byVid.get(at.parentVid);
      if (at.parentVid === 0 || !parent) return at.vid;
      at = parent;
    }
    return at.vid;
  };
  const grouped = new Map<number, VdiEntry[]>();
  for (const entry of entries) grouped.set(rootOf(entry), [...(grouped.get(rootOf(entry)) ?? []), entry]);
  return [...grouped.values()];
}

/**
 * How far before a VDI's creation time an epoch still counts as one it may have lived in: the two
 * times come from different nodes' clocks, in whole seconds. Too early only keeps VIDs taken longer.
 */
export const recycleClockSkewSec = 300;

/** Storing nodes of the epoch in force at `sinceSec` (give or take the clocks' skew) and of every later one. */
function storersSince(epochs: readonly EpochRecord[], sinceSec: number): Set<string> {
  let first = 0;
  epochs.forEach((e, i) => {
    if (e.timeSec < sinceSec - recycleClockSkewSec) first = i;
  });
  return new Set(epochs.slice(first).flatMap((e) => e.nodes.filter((n) => n.vnodes > 0).map((n) => n.id)));
}

/** The VIDs that may be used again now, in VID order. */
export function recyclableVids(
  registry: VdiRegistry,
  existing: ReadonlySet<Oid>,
  epochs: readonly EpochRecord[],
  members: readonly NodeInfo[],
): number[] {
  const held = new Set<number>([...existing].map((oid) => oidVid(oid)));
  const present = new Set(members.map((m) => m.id));
  const freed: number[] = [];
  for (const family of families(registry.all())) {
    if (!family.every((e) => e.deleted) || family.some((e) => held.has(e.vid))) continue;
    const since = Math.min(...family.map((e) => e.createdSec));
    if ([...storersSince(epochs, since)].every((id) => present.has(id))) freed.push(...family.map((e) => e.vid));
  }
  return freed.sort((a, b) => a - b);
}
