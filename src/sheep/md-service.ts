// `dog node md info|plug|unplug`: the disks of a multi-disk sheep (store/md-store.ts). A plug or
// unplug changes this node's disks only: objects move between them, the cluster sees nothing.
import type { NodeInfo } from '../cluster/driver.js';
import type { MdNodeData } from '../rpc/protocol.js';
import type { MdStore } from '../store/md-store.js';
import { compareNodes, type Group } from './group.js';
import type { Peers } from './peers.js';

export class MdService {
  constructor(
    private readonly store: Pick<MdStore, 'info' | 'plug' | 'unplug'>,
    private readonly group: Pick<Group, 'members' | 'self'>,
    private readonly peers: Pick<Peers, 'ask'>,
  ) {}

  async info(all: boolean): Promise<MdNodeData[]> {
    const self = this.group.members.find((m) => m.id === this.group.self.id) ?? this.group.self;
    if (!all) return [{ node: self, disks: await this.store.info() }];
    const nodes: NodeInfo[] = [...this.group.members].sort(compareNodes);
    return Promise.all(
      nodes.map(async (node) => ({
        node,
        disks: node.id === self.id ? await this.store.info() : await this.peers.ask(node, 'peer.md-info', {}),
      })),
    );
  }

  async plug(disks: string): Promise<null> {
    await this.store.plug(disks.split(','));
    return null;
  }

  async unplug(disks: string): Promise<null> {
    await this.store.unplug(disks.split(','));
    return null;
  }
}
