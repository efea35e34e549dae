// What the simulator needs of one sheep, and what it hands one: a narrow view, so the workload
// and the checker do not depend on how the daemon is wired inside (src/sim/sheep-node.ts adapts
// the real Sheep to it).
import type { ClusterDriver, NodeInfo } from '../cluster/driver.js';
import type { Oid } from '../engine/oid.js';
import type { VdiEntry } from '../engine/vdi.js';
import type { Volume } from '../engine/volume.js';
import type { Clock } from '../io/clock.js';
import type { Disk } from '../io/disk.js';
import type { Random } from '../io/random.js';
import type { Transport } from '../io/transport.js';

export interface SimLog {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

/** Everything one incarnation of a sheep touches outside its memory, all simulated. */
export interface SimWorld {
  clock: Clock;
  transport: Transport;
  disk: Disk;
  driver: ClusterDriver & { close?(): void };
  random: Random;
  log: SimLog;
  /** The host's boot: changes at every power loss. */
  bootId: string;
}

export interface SimSheepConfig {
  storeDir: string;
  bindAddr: string;
  self: NodeInfo;
}

export interface SimEpoch {
  epoch: number;
  nodes: string[];
}

/** A node's view of the cluster, read synchronously from its memory. */
export interface SimNodeState {
  status: string;
  epochs: SimEpoch[];
  members: string[];
  /** Recovery of the current epoch is still running on this node. */
  recovering: boolean;
  registry: VdiEntry[];
}

export interface SimSheep {
  start(): Promise<void>;
  /** A clean exit: leaves the cluster, closes what it holds. */
  leave(): Promise<void>;
  format(copies: number, blockSizeShift: number): Promise<void>;
  createVdi(name: string, sizeBytes: number): Promise<void>;
  snapshot(name: string, tag: string): Promise<void>;
  clone(source: string, tag: string, target: string): Promise<void>;
  rollback(name: string, tag: string): Promise<void>;
  /** Deletes the working VDI, or the snapshot `tag` of it. */
  deleteVdi(name: string, tag: string | undefined): Promise<void>;
  /** `NAME` or `NAME:TAG`, served by this node's gateway. */
  open(spec: string): Promise<Volume>;
  /** One scrub pass over this node's copies, to its end: damaged copies go to repair. */
  scrub(): Promise<boolean>;
  state(): SimNodeState;
  /** The node's current epoch (cheap: read on every delivered request by the epoch oracle). */
  epoch(): number;
  /** The objects in this node's store. */
  objects(): Promise<Oid[]>;
  /**
   * Where this node's copy of an object is on its disk, its file's length (header and data), and
   * how much of its data the daemon reads (an owner table's usable part).
   */
  objectFile(oid: Oid): { path: string; sizeBytes: number; contentBytes: number };
  /** Node ids that hold `oid` in the current epoch, by this node's placement. */
  placement(oid: Oid): string[];
}

export type SheepFactory = (world: SimWorld, config: SimSheepConfig) => SimSheep;
