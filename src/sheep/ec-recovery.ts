// Recovery of erasure-coded objects. A strip has one copy, so when its node is gone no member
// lists it and no source holds it: the node that owns it now decodes it from any D strips of
// the stripe's newest complete generation and stores it with that generation's header. Strips
// that only moved (the placement shifted) are copied like any object, differentially by sha1.
import {
  encodeStripHeader,
  isStripOid,
  stripDataBytes,
  stripIndex,
  stripOid,
  stripParent,
} from '../engine/ec-layout.js';
import { asSdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Log } from '../io/log.js';
import { reconstruct } from '../io/reed-solomon.js';
import type { LocalStore } from '../store/md-store.js';
import type { CopyWatch } from './copy-watch.js';
import type { EcGateway } from './ec-gateway.js';
import type { Placement } from './placement.js';

/**
 * The strips this node owns that no member holds, found from the strips that members do hold
 * (listed: oid → holders). Each stripe is looked at once.
 */
export function lostStrips(listed: ReadonlyMap<Oid, unknown>, placement: Placement, owned: (oid: Oid) => boolean): Oid[] {
  const lost: Oid[] = [];
  const seen = new Set<Oid>();
  for (const oid of listed.keys()) {
    if (!isStripOid(oid)) continue;
    const parent = stripParent(oid);
    if (seen.has(parent)) continue;
    seen.add(parent);
    const policy = placement.ecPolicy(parent);
    if (!policy) continue;
    for (let i = 0; i < policy.data + policy.parity; i++) {
      const strip = stripOid(parent, i);
      if (!listed.has(strip) && owned(strip)) lost.push(strip);
    }
  }
  return lost;
}

export interface RebuildDeps {
  ec: EcGateway;
  placement: Placement;
  store: LocalStore;
  copyWatch: CopyWatch;
}

/**
 * Decodes strip `oid` from the others and stores it here. Returns the bytes stored, or 0 when a
 * write reached the strip meanwhile (it is newer than what we decoded) or `stillWanted` says no.
 */
export async function rebuildStrip(deps: RebuildDeps, oid: Oid, stillWanted: () => boolean): Promise<number> {
  const parent = stripParent(oid);
  const policy = deps.placement.ecPolicy(parent)!;
  const index = stripIndex(oid);
  const share = stripDataBytes(deps.placement.objectSizeBytes(parent), policy);
  const watch = deps.copyWatch.watch(oid);
  try {
    const stripe = await deps.ec.decodableStripe(parent, policy, share);
    const strips = await reconstruct(policy, stripe.strips, [index]);
    const header = encodeStripHeader({ index, data: policy.data, parity: policy.parity, generation: stripe.generation });
    const bytes = Buffer.concat([header, strips[index]!]);
    // No await from this check to the store call (copy-watch.ts).
    if (watch.written || !stillWanted()) return 0;
    await deps.store.writeWhole(oid, bytes, deps.placement.objectSizeBytes(oid));
    return bytes.length;
  } finally {
    watch.release();
  }
}

/**
 * The stripes of `suspects` (objects a gateway that left was writing) whose strip 0 this node
 * holds now, one node per stripe: each rolled forward when its committed strips disagree, one
 * after another in the background. Failures are logged; the next write or `vdi check` settles them.
 */
export async function settleStripes(ec: EcGateway, placement: Placement, suspects: ReadonlySet<Oid>, selfId: string, log: Log): Promise<void> {
  const parents = new Set<Oid>();
  for (const oid of suspects) {
    if (!isStripOid(oid)) continue;
    const parent = stripParent(oid);
    if (placement.ecPolicy(parent) && placement.nodes(stripOid(parent, 0))[0]?.id === selfId) parents.add(parent);
  }
  for (const parent of parents) {
    try {
      await ec.settle(parent);
    } catch (error) {
      log.warn({ oid: oidHex(parent), err: asSdError(error).message }, 'stripe not settled');
    }
  }
}
