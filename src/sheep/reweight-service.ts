// `dog cluster reweight` (the original's SD_OP_REWEIGHT): on a cluster with automatic vnodes (formatted
// without -V) every storing node gets vnodes in proportion to its store's capacity, as the original's
// recalculate_vnodes: the default vnodes times the node's capacity over the average. Capacity is
// what `dog node info` shows as a node's size: the bytes its objects use plus what its filesystem
// has free. Published in the cluster's order with a new epoch, so the ring changes everywhere at
// once and the ordinary recovery moves what the new ring places elsewhere. With fixed vnodes (-V) it
// changes nothing, as the original's did.
import type { ClusterDriver, NodeInfo } from '../cluster/driver.js';
import { vnodesDefault, vnodesMax } from '../engine/limits.js';
import type { Clock } from '../io/clock.js';
import { nowSec } from '../io/clock.js';
import type { DiskUsageData } from '../rpc/protocol.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';

/** Vnodes by node id for these capacities; a node keeps at least one (0 would make it a gateway). */
export function weighedVnodes(capacities: ReadonlyArray<{ id: string; bytes: number }>): Record<string, number> {
  const sized = capacities.filter((c) => c.bytes > 0);
  if (sized.length === 0) return {};
  const average = sized.reduce((sum, c) => sum + c.bytes, 0) / sized.length;
  return Object.fromEntries(sized.map((c) => [c.id, Math.min(vnodesMax, Math.max(1, Math.round((vnodesDefault * c.bytes) / average)))]));
}

export class ReweightService {
  constructor(
    private readonly group: Pick<Group, 'config' | 'self' | 'members' | 'requireRunning'>,
    private readonly driver: Pick<ClusterDriver, 'notify' | 'sync'>,
    private readonly peers: Pick<Peers, 'ask'>,
    private readonly localStat: () => Promise<DiskUsageData>,
    private readonly clock: Clock,
  ) {}

  async reweight(): Promise<null> {
    this.group.requireRunning();
    if (this.group.config?.fixedVnodes) return null;
    const storing = this.group.members.filter((m) => m.vnodes > 0);
    const capacities = await Promise.all(
      storing.map(async (node) => {
        const stat = node.id === this.group.self.id ? await this.localStat() : await this.peers.ask(node, 'peer.stat', {});
        return { id: node.id, bytes: stat.usedBytes + stat.availableBytes };
      }),
    );
    const vnodes = weighedVnodes(capacities);
    if (!changes(storing, vnodes)) return null;
    await this.driver.notify({ type: 'reweight', vnodes, timeSec: nowSec(this.clock) });
    await this.driver.sync();
    return null;
  }
}

function changes(members: readonly NodeInfo[], vnodes: Record<string, number>): boolean {
  return members.some((m) => vnodes[m.id] !== undefined && vnodes[m.id] !== m.vnodes);
}
