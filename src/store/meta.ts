// The small durable files of a store: cluster config, epoch history, VDI registry, cluster key
// (written mode 0600 like every file of the store: nodeDisk creates files so).
import * as path from 'node:path';
import { readFileOrUndefined, writeFileAtomic, type Disk } from '../io/disk.js';
import type { NodeInfo, Json } from '../cluster/driver.js';
import { formatKey, parseKey } from '../engine/cluster-key.js';
import { SdError } from '../engine/errors.js';

export interface ClusterConfig {
  /** Format time: the cluster's identity. */
  createdMs: number;
  copies: number;
  /** Erasure coding for new VDIs: the original's copy_policy byte (ec-layout.ts); absent replicated. */
  copyPolicy?: number;
  /** `cluster format -t`: EC writes halt, not degrade, with fewer than D+P nodes. */
  strict?: boolean;
  blockSizeShift: number;
  /** `cluster format -V`: an admin may set a node's vnodes (`dog node vnodes set`). */
  fixedVnodes?: boolean;
  /** Vnodes set so, by node id: they replace what the node joins with. */
  vnodes?: Record<string, number>;
  /** `cluster format -R`: the VIDs of a deleted family are used again once nothing of them is left. */
  recycleVids?: boolean;
}

/** What `cluster format` chooses besides copies and object size. */
export interface FormatFlags {
  fixedVnodes?: boolean;
  recycleVids?: boolean;
  /** -c D:P, checked at the edge (src/sheep/ec-config.ts). */
  copyPolicy?: number;
  strict?: boolean;
}

/** The config of a new format: the flags only when set, so older configs read the same. */
export function newClusterConfig(createdMs: number, copies: number, blockSizeShift: number, flags: FormatFlags): ClusterConfig {
  return {
    createdMs,
    copies,
    blockSizeShift,
    ...(flags.fixedVnodes ? { fixedVnodes: true } : {}),
    ...(flags.recycleVids ? { recycleVids: true } : {}),
    ...(flags.copyPolicy !== undefined ? { copyPolicy: flags.copyPolicy } : {}),
    ...(flags.strict ? { strict: true } : {}),
  };
}

export interface EpochRecord {
  epoch: number;
  timeSec: number;
  nodes: NodeInfo[];
}

export class MetaStore {
  constructor(
    private readonly root: string,
    private readonly disk: Disk,
  ) {}

  async open(): Promise<void> {
    await this.disk.mkdirs(path.join(this.root, 'epoch'));
    await this.disk.mkdirs(path.join(this.root, 'obj'));
  }

  async readConfig(): Promise<ClusterConfig | undefined> {
    const data = await readFileOrUndefined(this.disk, path.join(this.root, 'config'));
    return data ? (JSON.parse(data.toString('utf8')) as ClusterConfig) : undefined;
  }

  writeConfig(config: ClusterConfig): Promise<void> {
    return writeFileAtomic(this.disk, path.join(this.root, 'config'), Buffer.from(JSON.stringify(config)));
  }

  /** Where this store keeps the cluster key: local admins' clients find it here. */
  get keyFile(): string {
    return path.join(this.root, 'cluster.key');
  }

  async readKey(): Promise<Buffer | undefined> {
    const data = await readFileOrUndefined(this.disk, this.keyFile);
    if (data === undefined) return undefined;
    const key = parseKey(data);
    if (!key) throw new SdError('INVALID_ARGUMENT', `${this.keyFile} is not a cluster key file`);
    return key;
  }

  writeKey(key: Buffer): Promise<void> {
    return writeFileAtomic(this.disk, this.keyFile, Buffer.from(formatKey(key)));
  }

  async readEpochs(): Promise<EpochRecord[]> {
    const dir = path.join(this.root, 'epoch');
    const records: EpochRecord[] = [];
    for (const name of (await this.disk.list(dir)).filter((n) => /^\d{8}$/.test(n)).sort()) {
      const data = await readFileOrUndefined(this.disk, path.join(dir, name));
      if (data) records.push(JSON.parse(data.toString('utf8')) as EpochRecord);
    }
    return records;
  }

  writeEpoch(record: EpochRecord): Promise<void> {
    const name = String(record.epoch).padStart(8, '0');
    return writeFileAtomic(this.disk, path.join(this.root, 'epoch', name), Buffer.from(JSON.stringify(record)));
  }

  async removeEpochsAfter(epoch: number): Promise<void> {
    for (const record of await this.readEpochs()) {
      if (record.epoch > epoch) await this.disk.remove(path.join(this.root, 'epoch', String(record.epoch).padStart(8, '0')));
    }
  }

  async readRegistry(): Promise<Json | undefined> {
    const data = await readFileOrUndefined(this.disk, path.join(this.root, 'vdis.json'));
    return data ? (JSON.parse(data.toString('utf8')) as Json) : undefined;
  }

  writeRegistry(json: Json): Promise<void> {
    return writeFileAtomic(this.disk, path.join(this.root, 'vdis.json'), Buffer.from(JSON.stringify(json)));
  }
}
