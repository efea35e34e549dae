// `dog vdi setattr/getattr`: attributes live in the VDI registry (engine/vdi-attrs.ts), changed in
// the cluster's critical section, so a `-x` create is atomic across every node, and acknowledged
// only once every member stored the registry (as any VDI change).
import { SdError } from '../engine/errors.js';
import { planAttr } from '../engine/vdi-attrs.js';
import type { Group } from './group.js';
import type { VdiService } from './vdi-service.js';

export class AttrService {
  constructor(
    private readonly group: Pick<Group, 'registry'>,
    private readonly vdi: Pick<VdiService, 'criticalMessage' | 'lookup'>,
  ) {}

  /** The VDI must exist (the original's "VDI not found"); a change may come from another node. */
  private async requireVdi(name: string): Promise<void> {
    try {
      await this.vdi.lookup(name, undefined);
    } catch (error) {
      if (error instanceof SdError && error.code === 'NO_VDI') throw new SdError('NO_VDI', 'VDI not found');
      throw error;
    }
  }

  async set(name: string, key: string, value: Buffer | null, exclusive: boolean): Promise<null> {
    await this.requireVdi(name);
    await this.vdi.criticalMessage(async () => {
      if (!this.group.registry.working(name)) throw new SdError('NO_VDI', 'VDI not found');
      return { type: 'attr', change: planAttr(this.group.registry.attrs(name), { name, key, value, exclusive }) };
    });
    return null;
  }

  async get(name: string, key: string): Promise<Buffer> {
    await this.requireVdi(name);
    const value = this.group.registry.attrs(name)?.get(key);
    if (value === undefined) throw new SdError('NO_OBJECT', `Attribute '${key}' not found`);
    return Buffer.from(value, 'base64');
  }
}
