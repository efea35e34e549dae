// Volumes shared by every connection of one server. NBD_FLAG_CAN_MULTI_CONN promises that a flush
// or FUA on one connection is visible on all of them; that holds because connections to the same
// export use one opened Volume. Opened on first use, closed when the last lease is released.
// With gatherWrites, writes go through a GatheringVolume (gather.ts), shared by the connections too.
import { asSdError } from '../engine/errors.js';
import type { Volume, VolumeProvider } from '../engine/volume.js';
import { GatheringVolume } from './gather.js';

export interface VolumeLease {
  readonly volume: Volume;
  /** Idempotent; the volume closes when the last lease of its spec is released. */
  release(): Promise<void>;
}

interface Entry {
  opening: Promise<Volume>;
  leaseCount: number;
}

export class ExportRegistry {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly provider: VolumeProvider,
    private readonly gatherWrites = false,
  ) {}

  /** `client`: who asks (its address), for the provider's writer lock. */
  async acquire(spec: string, client?: string): Promise<VolumeLease> {
    let entry = this.entries.get(spec);
    if (!entry) {
      const opening = this.provider.open(spec, client === undefined ? undefined : { client });
      entry = { opening: this.gatherWrites ? opening.then((volume) => new GatheringVolume(volume)) : opening, leaseCount: 0 };
      this.entries.set(spec, entry);
    }
    entry.leaseCount += 1;
    let volume: Volume;
    try {
      volume = await entry.opening;
    } catch (error) {
      this.forget(spec, entry);
      throw asSdError(error);
    }
    let released = false;
    return {
      volume,
      release: async () => {
        if (released) return;
        released = true;
        if (this.forget(spec, entry)) await volume.close();
      },
    };
  }

  /** Drops one lease; true when it was the last one of a live entry. */
  private forget(spec: string, entry: Entry): boolean {
    entry.leaseCount -= 1;
    if (entry.leaseCount > 0 || this.entries.get(spec) !== entry) return false;
    this.entries.delete(spec);
    return true;
  }

  get openCount(): number {
    return this.entries.size;
  }
}
