// Check and repair of one object's copies, for `dog vdi check` and `dog cluster check` (the
// original's SD_OP_GET_HASH per replica, a majority vote, SD_OP_REPAIR_REPLICA). Each replica
// of the current placement is asked for the sha1 of its copy; a replica computes it only over a
// copy that passes its block checksums, so a damaged copy is known damaged, not just outvoted.
// The source of a repair is the majority of the copies that pass; one passing copy is enough
// when the others are damaged or missing (the checksums vouch for it). Verified copies that
// disagree with no majority are left alone: nothing says which is right.
import type { NodeInfo } from '../cluster/driver.js';
import { asSdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import type { Log } from '../io/log.js';
import type { CopyState, ObjectCheckData } from '../rpc/protocol.js';
import { isStripOid } from '../engine/ec-layout.js';
import { checkStripe } from './ec-check.js';
import type { Gateway } from './gateway.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';
import type { Placement } from './placement.js';

/** What one replica said of its copy. */
export type Copy = { node: NodeInfo; sum: string } | { node: NodeInfo; state: 'missing' | 'damaged' | 'busy' };

/**
 * The copies' verdict: the sum every copy should have, or why there is none. A majority of the
 * copies that pass their checksums decides (Boyer-Moore, as the original's vote).
 */
export function vote(copies: readonly Copy[]): { sum: string; onlyVerified: boolean } | { outcome: 'none' | 'all-damaged' | 'no-majority' | 'busy' } {
  const sums = copies.flatMap((copy) => ('sum' in copy ? [copy.sum] : []));
  const has = (state: string) => copies.some((c) => 'state' in c && c.state === state);
  if (sums.length === 0) return { outcome: has('busy') ? 'busy' : has('damaged') ? 'all-damaged' : 'none' };
  const counts = new Map<string, number>();
  for (const sum of sums) counts.set(sum, (counts.get(sum) ?? 0) + 1);
  const [best, count] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
  if (count * 2 <= sums.length) return { outcome: 'no-majority' };
  // The checksums made the decision: counting the damaged copies as copies (the original had
  // no other way to know them), this sum would have no majority.
  const found = sums.length + copies.filter((c) => 'state' in c && c.state === 'damaged').length;
  return { sum: best, onlyVerified: count * 2 <= found };
}

export class ObjectCheck {
  constructor(
    private readonly group: Group,
    private readonly gateway: Gateway,
    private readonly peers: Peers,
    private readonly placement: Placement,
    private readonly log: Log,
  ) {}

  /**
   * `outvoted`: also repair verified copies the majority disagrees with. Only an admin's check
   * does (as the original's, meant for a quiet VDI): while a write is on its way to the replicas
   * their sums differ for a moment, and a background repair then could undo it.
   */
  async check(oid: Oid, existOnly: boolean, outvoted = true): Promise<ObjectCheckData> {
    if (!isStripOid(oid) && this.placement.ecPolicy(oid)) {
      const existsOn = (id: string, strip: Oid) => {
        const node = this.group.members.find((m) => m.id === id);
        return node ? this.exists(node, strip) : Promise.resolve(false);
      };
      return checkStripe({ ec: this.gateway.ec, gateway: this.gateway, placement: this.placement, log: this.log, existsOn }, oid, existOnly, outvoted);
    }
    const nodes = this.placement.nodes(oid);
    if (existOnly) {
      const held = await Promise.all(nodes.map((node) => this.exists(node, oid)));
      return {
        copies: nodes.map((node, i) => ({ node: node.id, state: held[i] ? 'ok' : 'missing', fixed: false })),
        outcome: 'fine',
        onlyVerified: false,
      };
    }
    const copies = await Promise.all(nodes.map((node) => this.copyOf(node, oid)));
    const verdict = vote(copies);
    const state = (copy: Copy): CopyState => ('sum' in copy ? ('sum' in verdict && copy.sum !== verdict.sum ? 'differs' : 'ok') : copy.state);
    if (!('sum' in verdict)) {
      return { copies: copies.map((copy) => ({ node: copy.node.id, state: state(copy), fixed: false })), outcome: verdict.outcome, onlyVerified: false };
    }
    const source = copies.find((copy) => 'sum' in copy && copy.sum === verdict.sum)!.node;
    const rows = [];
    let repaired = false;
    for (const copy of copies) {
      const was = state(copy);
      let fixed = false;
      if (was === 'differs' && !outvoted) {
        this.log.warn({ oid: oidHex(oid), node: copy.node.id, from: source.id }, 'a copy differs from the majority: dog vdi check repairs it');
      } else if (was !== 'ok' && was !== 'busy') {
        await this.repair(copy.node, oid, source);
        this.log.info({ oid: oidHex(oid), node: copy.node.id, from: source.id, was }, 'check repaired a copy');
        fixed = repaired = true;
      }
      rows.push({ node: copy.node.id, state: was, fixed });
    }
    return { copies: rows, outcome: repaired ? 'repaired' : 'fine', onlyVerified: repaired && verdict.onlyVerified };
  }

  /** Our copy's trouble, checked in place, or undefined when it passes (scrub.ts). */
  async localProblem(oid: Oid): Promise<string | undefined> {
    const copy = await this.copyOf(this.group.self, oid);
    return 'sum' in copy ? undefined : copy.state;
  }

  private async copyOf(node: NodeInfo, oid: Oid): Promise<Copy> {
    try {
      const sum = this.isSelf(node)
        ? await this.gateway.localChecksum(oid, this.placement.contentBytes(oid), false, true)
        : await this.peers.ask(node, 'peer.checksum', { oid, force: false, recovery: true, verify: true });
      return { node, sum };
    } catch (error) {
      const code = asSdError(error).code;
      if (code === 'NO_OBJECT') return { node, state: 'missing' };
      // Damaged, or behind (a write failed there, or it waits to be repaired): no copy to trust.
      if (code === 'CORRUPT' || code === 'BEHIND') return { node, state: 'damaged' };
      // Being recovered there: recovery settles it; a repair now would race it.
      if (code === 'BUSY') return { node, state: 'busy' };
      throw error;
    }
  }

  private async exists(node: NodeInfo, oid: Oid): Promise<boolean> {
    return this.isSelf(node) ? this.gateway.holds(oid) : this.peers.ask(node, 'peer.exists', { oid });
  }

  private async repair(node: NodeInfo, oid: Oid, source: NodeInfo): Promise<void> {
    if (this.isSelf(node)) await this.repairLocal(oid, source.id);
    else await this.peers.ask(node, 'peer.repair', { oid, source: source.id });
  }

  /** Set by the owner: rewrites our copy from `source`'s (catch-up.ts). */
  repairLocal: (oid: Oid, source: string) => Promise<void> = async () => undefined;

  private isSelf(node: NodeInfo): boolean {
    return node.id === this.group.self.id;
  }
}
