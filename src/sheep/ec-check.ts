// `vdi check` of an erasure-coded object: each strip on the node that should hold it is read
// (block checksums verified by its store). The stripe's newest complete generation decides;
// a strip that is missing, fails its checksums, is of an older generation, or disagrees with
// the parity the data strips make, is rebuilt from the others and written to its node.
import { encodeStripHeader, stripDataBytes, stripOid, type EcPolicy } from '../engine/ec-layout.js';
import { asSdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Log } from '../io/log.js';
import { encodeParity, reconstruct } from '../io/reed-solomon.js';
import type { CopyState, ObjectCheckData } from '../rpc/protocol.js';
import { chooseStripe, type EcGateway, type StripRead } from './ec-gateway.js';
import type { Gateway } from './gateway.js';
import type { Placement } from './placement.js';

function stateOf(read: StripRead, generation: bigint): CopyState {
  if ('error' in read) return read.error.code === 'NO_OBJECT' ? 'missing' : read.error.code === 'BUSY' ? 'busy' : 'damaged';
  return read.generation === generation ? 'ok' : 'differs';
}

export async function checkStripe(
  deps: { ec: EcGateway; gateway: Pick<Gateway, 'write' | 'holds'>; placement: Placement; log: Log; existsOn: (node: string, oid: Oid) => Promise<boolean> },
  oid: Oid,
  existOnly: boolean,
  outvoted: boolean,
): Promise<ObjectCheckData> {
  const policy = deps.placement.ecPolicy(oid)!;
  const count = policy.data + policy.parity;
  const nodeOf = (i: number) => deps.placement.nodes(stripOid(oid, i))[0]?.id ?? '';
  // Reads fall back to where a strip was in earlier epochs: whether its node has it is asked apart.
  const held = await Promise.all(Array.from({ length: count }, (_, i) => deps.existsOn(nodeOf(i), stripOid(oid, i))));
  if (existOnly) {
    return { copies: held.map((h, i) => ({ node: nodeOf(i), state: h ? 'ok' : 'missing', fixed: false })), outcome: 'fine', onlyVerified: false };
  }
  const share = stripDataBytes(deps.placement.objectSizeBytes(oid), policy);
  const [reads, staged] = await Promise.all([deps.ec.readStrips(oid, policy, share, false), deps.ec.readStrips(oid, policy, share, true)]);
  let stripe;
  try {
    stripe = chooseStripe(oid, policy, reads, staged);
  } catch (error) {
    const code = asSdError(error).code;
    const rows = reads.map((r, i) => ({ node: nodeOf(i), state: stateOf(r, -1n), fixed: false }));
    return { copies: rows, outcome: code === 'NO_OBJECT' ? 'none' : reads.some((r) => 'error' in r && r.error.code === 'BUSY') ? 'busy' : 'all-damaged', onlyVerified: false };
  }
  const full = await reconstruct(policy, stripe.strips, Array.from({ length: count }, (_, i) => i));
  const states = reads.map((r, i) => (held[i] ? stateOf(r, stripe.generation) : 'missing'));
  await markParityDisagreement(policy, full, reads, states);
  let repaired = false;
  const rows = [];
  for (let i = 0; i < count; i++) {
    const state = states[i]!;
    let fixed = false;
    // A strip of another generation may be a write on its way: only an admin's check rewrites it.
    if (state !== 'ok' && state !== 'busy' && (state !== 'differs' || outvoted)) {
      const header = encodeStripHeader({ index: i, data: policy.data, parity: policy.parity, generation: stripe.generation });
      await deps.gateway.write(stripOid(oid, i), 0, Buffer.concat([header, full[i]!]), true);
      deps.log.info({ oid: oidHex(oid), strip: i, node: nodeOf(i), was: state }, 'check rebuilt a strip');
      fixed = repaired = true;
    }
    rows.push({ node: nodeOf(i), state, fixed });
  }
  return { copies: rows, outcome: repaired ? 'repaired' : 'fine', onlyVerified: false };
}

/**
 * Parity strips read at the chosen generation that the data strips do not make: 'differs'.
 * (Which strip is wrong when they disagree is not knowable from one parity; the data strips,
 * each checksummed by its store, are taken as right.)
 */
async function markParityDisagreement(policy: EcPolicy, full: Buffer[], reads: readonly StripRead[], states: CopyState[]): Promise<void> {
  const parity = await encodeParity(policy, full.slice(0, policy.data));
  for (let p = 0; p < policy.parity; p++) {
    const index = policy.data + p;
    const read = reads[index]!;
    if (states[index] === 'ok' && 'bytes' in read && !read.bytes.equals(parity[p]!)) states[index] = 'differs';
    full[index] = parity[p]!;
  }
}
