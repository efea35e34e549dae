// `dog vdi alter-copy` and `dog cluster alter-copy`: a new redundancy level is a registry change
// published with a new epoch of the same members (group.ts applyCopies), so the objects are
// re-replicated or trimmed by the ordinary recovery, not by a path of their own.
import { SdError } from '../engine/errors.js';
import { checkCopies } from '../engine/vdi.js';
import type { Clock } from '../io/clock.js';
import { nowSec } from '../io/clock.js';
import type { Group } from './group.js';
import type { VdiService } from './vdi-service.js';

export class CopiesService {
  constructor(
    private readonly group: Pick<Group, 'registry' | 'config'>,
    private readonly vdi: Pick<VdiService, 'criticalMessage'>,
    private readonly clock: Clock,
  ) {}

  /** As the original: only a VDI with no parent and no children (no objects shared with another). */
  async alterVdi(name: string, copies: number): Promise<{ old: number }> {
    checkCopies(copies);
    let old = 0;
    await this.vdi.criticalMessage(async () => {
      const registry = this.group.registry;
      const entry = registry.lookup(name, undefined);
      if (entry.copyPolicy) throw new SdError('UNSUPPORTED', `${name}'s copy policy is erasure code, changing it is not supported yet.`);
      old = entry.copies;
      if (entry.copies === copies) {
        throw new SdError('INVALID_ARGUMENT', `${name}'s redundancy level is already set to ${copies}, nothing changed.`);
      }
      const children = registry.all().some((e) => e.parentVid === entry.vid && e.vid !== entry.vid);
      if (entry.parentVid !== 0 || children) {
        throw new SdError('UNSUPPORTED', 'Only standalone vdi supports changing redundancy level.');
      }
      return { type: 'copies', entries: [{ ...entry, copies }], timeSec: nowSec(this.clock) };
    });
    return { old };
  }

  /**
   * The cluster's default for new VDIs and, unlike the original (which changed the default
   * only), every VDI's: snapshots and deleted ones too, since an object takes the copies of the
   * VDI that owns it and a clone may still read objects of a deleted snapshot.
   */
  async alterCluster(copies: number): Promise<{ old: number }> {
    checkCopies(copies);
    let old = 0;
    await this.vdi.criticalMessage(async () => {
      old = this.group.config!.copies;
      if (this.group.config!.copyPolicy) throw new SdError('UNSUPPORTED', "The cluster's copy policy is erasure code, changing it is not supported yet.");
      // An erasure-coded VDI keeps its D:P: its copies are its strips.
      const entries = this.group.registry.all().filter((e) => e.copies !== copies && !e.copyPolicy).map((e) => ({ ...e, copies }));
      if (old === copies && entries.length === 0) {
        throw new SdError('INVALID_ARGUMENT', `The cluster's redundancy level is already set to ${copies}, nothing changed.`);
      }
      return { type: 'copies', entries, clusterCopies: copies, timeSec: nowSec(this.clock) };
    });
    return { old };
  }
}
