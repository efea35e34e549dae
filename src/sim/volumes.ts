// The simulated clients' open volumes. A VolumeIo caches its VDI's owner table, as a VM's disk
// does for as long as it runs; reopening for every read and write made each one a 4 MiB table
// read (most of a run's time). A cached table is only good while nothing else changes the table,
// so the workload tells this class when something may have:
// - a write through a volume that may allocate an object (its first write to that object since
//   the table last changed) updates that volume's table and makes every other open volume of the
//   VDI stale; a failed write makes all of them stale (its table update may or may not be saved);
// - a snapshot, clone, rollback or delete (done or failed) changes the VDI's id or table.
// A stale volume is reopened at its next use. `forgetAll` drops every volume, so the
// convergence check opens each VDI afresh on every node (the table read path through every node).
import type { Volume } from '../engine/volume.js';
import type { SimHost } from './hosts.js';
import type { SimSheep } from './node.js';

interface OpenVolume {
  volume: Volume;
  /** The VDI's table generation this volume's cached table matches. */
  generation: number;
}

interface VdiTables {
  generation: number;
  /** Objects written since the last table change: a write to one of them allocates nothing. */
  allocated: Set<number>;
}

export class Volumes {
  /** By incarnation (a restarted sheep has none open), then by spec. */
  private open = new WeakMap<SimSheep, Map<string, OpenVolume>>();
  private readonly tables = new Map<string, VdiTables>();

  constructor(private readonly objectBytes: number) {}

  async get(host: SimHost, name: string, tag: string | undefined): Promise<Volume> {
    const sheep = host.sheep();
    if (!sheep) throw new Error(`${host.id} is down`);
    const spec = tag === undefined ? name : `${name}:${tag}`;
    const byHost = this.open.get(sheep) ?? new Map<string, OpenVolume>();
    this.open.set(sheep, byHost);
    const generation = this.tablesOf(name).generation;
    const cached = byHost.get(spec);
    if (cached && cached.generation === generation) return cached.volume;
    byHost.delete(spec);
    const volume = await sheep.open(spec);
    // Opened against the generation current when the open started: a change meanwhile makes it stale.
    byHost.set(spec, { volume, generation });
    return volume;
  }

  /**
   * Runs a write of `data` at `offsetBytes` through `host`'s volume of the working VDI
   * `name`, keeping the other volumes' tables honest about what it may have allocated.
   */
  async write(host: SimHost, name: string, offsetBytes: number, data: Buffer): Promise<void> {
    const volume = await this.get(host, name, undefined);
    const tables = this.tablesOf(name);
    const first = Math.floor(offsetBytes / this.objectBytes);
    const last = Math.floor((offsetBytes + data.length - 1) / this.objectBytes);
    const objects = Array.from({ length: last - first + 1 }, (_, i) => first + i);
    const allocates = objects.some((index) => !tables.allocated.has(index));
    try {
      await volume.write(offsetBytes, data);
    } catch (error) {
      tables.generation += 1;
      throw error;
    }
    if (!allocates) return;
    tables.generation += 1;
    for (const index of objects) tables.allocated.add(index);
    // The writer's table holds its own update: it stays good.
    const sheep = host.sheep();
    const own = sheep && this.open.get(sheep)?.get(name);
    if (own?.volume === volume) own.generation = tables.generation;
  }

  /** The VDI's id or whole table may have changed: every open volume of `name` is stale. */
  tableChanged(name: string): void {
    const tables = this.tablesOf(name);
    tables.generation += 1;
    tables.allocated = new Set();
  }

  /** Drops every open volume: each is opened afresh at its next use. */
  forgetAll(): void {
    this.open = new WeakMap();
  }

  private tablesOf(name: string): VdiTables {
    let tables = this.tables.get(name);
    if (!tables) {
      tables = { generation: 0, allocated: new Set() };
      this.tables.set(name, tables);
    }
    return tables;
  }
}
