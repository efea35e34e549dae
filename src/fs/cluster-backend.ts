// sheepfs over a real cluster: typed rpc to one sheep through SheepClient. Info texts come from
// the very formatters `dog` uses (src/cli/format.ts) fed with the same rpc answers, so
// `cat /sheep/vdi/list` and `dog vdi list` can never drift apart. Errors stay SdError; errno.ts
// maps them for the kernel.
import { SheepClient, sheepClientWorld } from '../rpc/sheep-client.js';
import { formatClusterInfo, formatNodeInfo, formatNodeList, formatVdiList } from '../cli/format.js';
import { parseSnapshotRef, splitSpec } from '../engine/vdi.js';
import { VolumeIo } from '../volume/volume-io.js';
import { lockedVolume } from '../volume/locked-volume.js';
import { LockKeeper } from '../volume/lock-keeper.js';
import type { Volume } from '../engine/volume.js';
import type { SheepfsBackend } from './backend.js';

/** Info files show what dog shows without -r. */
const raw = false;

class ClusterBackend implements SheepfsBackend {
  constructor(
    private readonly client: SheepClient,
    private readonly writer: { client: string; shared: boolean },
  ) {}

  async clusterInfoText(): Promise<string> {
    return formatClusterInfo(await this.client.clusterInfo(), raw);
  }

  async nodeListText(): Promise<string> {
    return formatNodeList(await this.client.nodeList(), raw);
  }

  async nodeInfoText(): Promise<string> {
    const info = await this.client.nodeInfo();
    return formatNodeInfo(info.nodes, info.virtualBytes, raw);
  }

  async vdiListText(): Promise<string> {
    return formatVdiList(await this.client.vdiList(), raw);
  }

  async snapshot(name: string, tag: string | undefined): Promise<void> {
    // `dog vdi snapshot NAME` without -s sends an empty tag.
    await this.client.vdiSnapshot(name, tag ?? '');
  }

  async rollback(name: string, tag: string): Promise<void> {
    // dog looks the snapshot up first only to word its error; the rollback rpc checks the same.
    await this.client.vdiRollback(name, parseSnapshotRef(tag));
  }

  async deleteVdi(name: string, tag: string | undefined): Promise<void> {
    await this.client.vdiDelete(name, parseSnapshotRef(tag));
  }

  async clone(source: string, tag: string, target: string): Promise<void> {
    await this.client.vdiClone(source, parseSnapshotRef(tag), target, undefined);
  }

  /**
   * A working VDI is mounted under a writer's lock, freed when the volume closes, and re-taken
   * when the cluster lost it (lock-keeper.ts).
   */
  async openVolume(spec: string): Promise<Volume> {
    const { name, ref } = splitSpec(spec);
    const entry = await this.client.lookup(name, ref);
    if (entry.snapshotSec !== 0) return new VolumeIo(this.client, entry);
    const { client, shared } = this.writer;
    const keeper = await LockKeeper.take({
      take: (holder) => this.client.lockVdi(name, client, shared, holder),
      release: (holder) => this.client.releaseVdi(holder),
    });
    return lockedVolume(new VolumeIo(keeper.io(this.client), entry), () => keeper.release());
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  async close(): Promise<void> {
    this.client.close();
  }
}

export function createBackend(
  address: string,
  port: number,
  keyFile: string | undefined,
  writer = { client: 'sheepfs', shared: false },
): SheepfsBackend {
  return new ClusterBackend(new SheepClient(address, port, sheepClientWorld(keyFile)), writer);
}
