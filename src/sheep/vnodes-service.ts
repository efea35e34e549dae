// `dog node vnodes set N`: the vnodes of the node asked, on a cluster formatted with -V (fixed
// vnodes). Published in the cluster's order with a new epoch, so the ring changes everywhere at
// once and the ordinary recovery moves what the new ring places elsewhere.
import type { ClusterDriver } from '../cluster/driver.js';
import { SdError } from '../engine/errors.js';
import type { Clock } from '../io/clock.js';
import { nowSec } from '../io/clock.js';
import type { Group } from './group.js';

export class VnodesService {
  constructor(
    private readonly group: Pick<Group, 'config' | 'self' | 'members' | 'requireRunning'>,
    private readonly driver: Pick<ClusterDriver, 'notify' | 'sync'>,
    private readonly clock: Clock,
  ) {}

  async set(vnodes: number): Promise<null> {
    this.group.requireRunning();
    if (!this.group.config?.fixedVnodes) {
      throw new SdError('UNSUPPORTED', "the cluster was not formatted with -V (fixed vnodes): its vnodes are automatic (dog cluster reweight)");
    }
    const self = this.group.members.find((m) => m.id === this.group.self.id);
    if (!self || self.vnodes === 0) throw new SdError('UNSUPPORTED', `${this.group.self.id} is a gateway: it has no vnodes`);
    if (self.vnodes === vnodes) return null;
    await this.driver.notify({ type: 'vnodes', node: self.id, vnodes, timeSec: nowSec(this.clock) });
    await this.driver.sync();
    return null;
  }
}
