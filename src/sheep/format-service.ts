// `dog cluster format` of a cluster that is formatted already (the original's SD_OP_MAKE_FS): in
// the cluster's critical section every store is emptied, then the new format is published. No VDI
// can be made meanwhile; writers that hold a VDI open must stop first (vdi-locks.ts).
import { newClusterConfig, type FormatFlags } from '../store/meta.js';
import { SdError, asSdError } from '../engine/errors.js';
import { blockSizeShiftDefault } from '../engine/limits.js';
import type { Clock } from '../io/clock.js';
import { nowSec } from '../io/clock.js';
import type { ObjectStore } from '../store/object-store.js';
import type { Group } from './group.js';
import type { Peers } from './peers.js';
import type { VdiService } from './vdi-service.js';

export class FormatService {
  constructor(
    private readonly group: Pick<Group, 'config' | 'locks' | 'members' | 'self'>,
    private readonly vdi: Pick<VdiService, 'criticalMessage'>,
    private readonly peers: Pick<Peers, 'ask'>,
    private readonly store: Pick<ObjectStore, 'list' | 'remove'>,
    private readonly clock: Clock,
    private readonly log: { info(o: object, m?: string): void },
  ) {}

  async reformat(copies: number, blockSizeShift: number | undefined, flags: FormatFlags): Promise<null> {
    await this.vdi.criticalMessage(async () => {
      if (!this.group.config) throw new SdError('NOT_FORMATTED', 'Cluster has not been formatted');
      const writer = this.group.locks[0];
      if (writer) {
        throw new SdError('VDI_LOCKED', `VDI ${writer.name} is open for writing by ${writer.client} through ${writer.node}: stop its writers first (dog vdi lock list)`);
      }
      await Promise.all(
        this.group.members
          .filter((node) => node.vnodes > 0)
          .map(async (node) => {
            try {
              return node.id === this.group.self.id ? await this.wipeLocal() : await this.peers.ask(node, 'peer.wipe', {});
            } catch (error) {
              // Stores emptied already stay so: the admin asked for their data to go; a new format finishes.
              throw new SdError(asSdError(error).code, `cannot empty the store of ${node.id}: ${asSdError(error).message} (the cluster was not formatted: run the format again)`);
            }
          }),
      );
      // Vnodes set under the old format go with it: each node has its own again.
      const config = newClusterConfig(this.clock.nowMs(), copies, blockSizeShift ?? blockSizeShiftDefault, flags);
      return { type: 'reformat', config, timeSec: nowSec(this.clock) };
    });
    return null;
  }

  /** Removes every object of this node's store. */
  async wipeLocal(): Promise<number> {
    let removed = 0;
    for (const oid of await this.store.list()) if (await this.store.remove(oid)) removed += 1;
    this.log.info({ removed }, 'store emptied for a new format');
    return removed;
  }
}
