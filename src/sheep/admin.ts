// The admin service: cluster format/shutdown/recover, node listing and statistics, recovery
// throttle and progress, object location. Everything `dog cluster|node` asks, apart from VDIs.
import * as path from 'node:path';
import type { ClusterDriver, Json, NodeInfo } from '../cluster/driver.js';
import { SdError } from '../engine/errors.js';
import { blockSizeShiftDefault, clusterKeyBytes } from '../engine/limits.js';
import { oidHex, type Oid } from '../engine/oid.js';
import { nowSec, type Clock } from '../io/clock.js';
import type { Disk } from '../io/disk.js';
import type { Random } from '../io/random.js';
import type { ClusterInfoData, DiskUsageData, LocationData, NodeStatData, RecoveryState } from '../rpc/protocol.js';
import type { Gateway } from './gateway.js';
import type { Placement } from './placement.js';
import { compareNodes, type Group } from './group.js';
import type { Peers } from './peers.js';
import type { LogLevelControl } from './log-level.js';
import type { RequestStats, RequestStatsData } from './stats.js';
import { ReweightService } from './reweight-service.js';
import { newClusterConfig, type FormatFlags } from '../store/meta.js';

export interface AdminDeps {
  group: Group;
  driver: ClusterDriver;
  gateway: Pick<Gateway, 'holders'>;
  placement: Pick<Placement, 'nodes' | 'copies'>;
  peers: Pick<Peers, 'ask'>;
  recovery: { readonly state: RecoveryState };
  clock: Clock;
  /** Makes the cluster key at format. */
  random: Pick<Random, 'bytes'>;
  disk: Disk;
  storeDir: string;
  /** What the object disks hold and have free (several with a multi-disk store, md-store.ts). */
  storeUsage?: () => Promise<DiskUsageData>;
  stats: Pick<RequestStats, 'snapshot'>;
  logLevel: LogLevelControl;
  /** Stops this sheep (after the reply that asked for it is sent). */
  stopSelf(): void;
}

export class AdminService {
  private readonly reweighter: ReweightService;

  constructor(private readonly deps: AdminDeps) {
    this.reweighter = new ReweightService(deps.group, deps.driver, deps.peers, () => this.localStat(), deps.clock);
  }

  private get group(): Group {
    return this.deps.group;
  }

  clusterInfo(): ClusterInfoData {
    return {
      status: this.group.status,
      recoveryEnabled: this.group.recoveryEnabled,
      config: this.group.config,
      epochs: [...this.group.epochs].reverse(),
    };
  }

  async format(copies: number, blockSizeShift: number | undefined, flags: FormatFlags = {}): Promise<null> {
    const { driver, clock } = this.deps;
    await driver.sync();
    if (this.group.config) throw new SdError('ALREADY_FORMATTED', 'Cluster is already formatted');
    const config = newClusterConfig(clock.nowMs(), copies, blockSizeShift ?? blockSizeShiftDefault, flags);
    // The key of a cluster whose sheep were given one (-k), else a new one. It reaches the other
    // members in the format message, through the driver: never over the sheep port.
    const key = (this.group.key ?? this.deps.random.bytes(clusterKeyBytes)).toString('base64');
    const carried = this.group.keyTravels ? { key } : {};
    await driver.notify({ type: 'format', config: config as unknown as Json, timeSec: Math.floor(config.createdMs / 1000), ...carried });
    await driver.sync();
    await this.group.flushed();
    return null;
  }

  async shutdownCluster(): Promise<null> {
    await this.deps.driver.notify({ type: 'shutdown' });
    return null;
  }

  async recover(action: 'force' | 'enable' | 'disable'): Promise<null> {
    if (action === 'force' && this.group.status !== 'waiting') {
      throw new SdError('INVALID_ARGUMENT', 'Cluster is running/halted and cannot be force recovered');
    }
    await this.deps.driver.notify({ type: 'recover', action, timeSec: nowSec(this.deps.clock) });
    await this.deps.driver.sync();
    return null;
  }

  nodeList(): NodeInfo[] {
    return [...this.group.members].sort(compareNodes);
  }

  async localStat(): Promise<DiskUsageData> {
    const { disk, storeDir, storeUsage } = this.deps;
    if (storeUsage) return storeUsage();
    const stats = await disk.stats(storeDir);
    return { usedBytes: await disk.usedBytes(path.join(storeDir, 'obj')), availableBytes: stats.availableBytes };
  }

  async nodeInfo(): Promise<{ nodes: NodeStatData[]; virtualBytes: number }> {
    const answers = await Promise.all(
      this.nodeList().map(async (node) => {
        try {
          const stat = this.isSelf(node) ? await this.localStat() : await this.deps.peers.ask(node, 'peer.stat', {});
          return { node, ...stat };
        } catch (error) {
          // A member that stopped answering and was removed meanwhile is no longer listed.
          if (this.group.members.some((member) => member.id === node.id)) throw error;
          return undefined;
        }
      }),
    );
    const nodes = answers.filter((answer) => answer !== undefined);
    const virtualBytes = this.group.registry.live().filter((e) => e.snapshotSec === 0).reduce((sum, e) => sum + e.sizeBytes, 0);
    return { nodes, virtualBytes };
  }

  async killNode(nodeId: string): Promise<null> {
    if (nodeId === this.group.self.id) {
      this.deps.stopSelf();
      return null;
    }
    const node = this.group.members.find((m) => m.id === nodeId);
    if (!node) throw new SdError('NODE_NOT_FOUND', `no node ${nodeId} in the cluster`);
    await this.deps.peers.ask(node, 'peer.kill', {});
    return null;
  }

  async setThrottle(maxObjects: number, intervalMs: number): Promise<null> {
    await this.deps.driver.notify({ type: 'throttle', maxObjects, intervalMs });
    await this.deps.driver.sync();
    return null;
  }

  /** Every member's recovery progress, for `dog node recovery`. */
  async recoveryStates(): Promise<Array<{ node: NodeInfo; state: RecoveryState | null }>> {
    const rows = await Promise.all(
      this.nodeList().map(async (node) => {
        try {
          const state = this.isSelf(node) ? this.deps.recovery.state : await this.deps.peers.ask(node, 'peer.recovery', {});
          return { node, state };
        } catch {
          // Removed meanwhile (it stopped answering): not a row; still a member: a row without state.
          return this.group.members.some((member) => member.id === node.id) ? { node, state: null } : undefined;
        }
      }),
    );
    return rows.filter((row) => row !== undefined);
  }

  async location(oid: Oid): Promise<LocationData> {
    const { gateway, placement: where } = this.deps;
    const placement = where.nodes(oid);
    const holders = await gateway.holders(oid);
    return {
      oid: oidHex(oid),
      copies: where.copies(oid),
      nodeCount: this.group.members.length,
      placement: placement.map((n) => n.id),
      holders: holders.sort(compareNodes).map((n) => n.id),
    };
  }

  requestStats(): RequestStatsData {
    return this.deps.stats.snapshot();
  }

  /** Sets this node's log level when `level` is given; answers the level now in force. */
  logLevel(level: number | undefined): number {
    if (level !== undefined) this.deps.logLevel.set(level);
    return this.deps.logLevel.level;
  }

  /** Vnodes by store capacity on a cluster with automatic vnodes (reweight-service.ts). */
  reweight(): Promise<null> {
    return this.reweighter.reweight();
  }

  private isSelf(node: NodeInfo): boolean {
    return node.id === this.group.self.id;
  }
}
