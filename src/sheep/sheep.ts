// One sheep daemon: its store, its place in the group, the gateway and the services, wired.
import * as net from 'node:net';
import * as path from 'node:path';
import type { ClusterDriver, NodeInfo } from '../cluster/driver.js';
import { SdError } from '../engine/errors.js';
import { oidHex, type Oid } from '../engine/oid.js';
import { VolumeIo } from '../volume/volume-io.js';
import type { Volume, VolumeProvider } from '../engine/volume.js';
import { splitSpec } from '../engine/vdi.js';
import { nodeDisk } from '../io/disk.js';
import { serveConnection } from '../rpc/connection.js';
import { MetaStore } from '../store/meta.js';
import { ObjectStore } from '../store/object-store.js';
import { dispatch } from './dispatch.js';
import { Gateway } from './gateway.js';
import { Group, compareNodes } from './group.js';
import { Peers } from './peers.js';
import { VdiService } from './vdi-service.js';
import { Recovery, type RecoveryState } from './recovery.js';
import type { Logger } from 'pino';

export interface SheepConfig {
  storeDir: string;
  bindAddr: string;
  self: NodeInfo;
  nbd: { host: string; port: number } | null;
}

export class Sheep {
  readonly store: ObjectStore;
  readonly meta: MetaStore;
  readonly group: Group;
  readonly gateway: Gateway;
  readonly vdi: VdiService;
  readonly recovery: Recovery;
  readonly peers = new Peers();
  private server: net.Server | undefined;
  private nbdServer: { close(): Promise<void> } | undefined;
  private stopping = false;

  constructor(
    readonly config: SheepConfig,
    readonly driver: ClusterDriver & { close?(): void },
    readonly log: Logger,
    private readonly exit: (code: number) => void,
  ) {
    const nowSec = () => Math.floor(Date.now() / 1000);
    const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
    this.store = new ObjectStore({ dir: path.join(config.storeDir, 'obj'), disk: nodeDisk });
    this.meta = new MetaStore(config.storeDir, nodeDisk);
    this.group = new Group(config.self, this.meta, nowSec, log, sleep);
    this.gateway = new Gateway(this.group, this.store, this.peers, sleep);
    this.vdi = new VdiService(this.group, driver, this.gateway, this.peers, nowSec, log);
    this.recovery = new Recovery(this.group, this.store, this.gateway, this.peers, sleep, log);
    this.gateway.localIsCurrent = (oid) => this.recovery.isCurrent(oid);
    this.gateway.onWholeWrite = (oid) => this.recovery.markWritten(oid);
    this.gateway.onBusyRead = (oid) => this.recovery.prioritize(oid);
    this.group.announce = (message) => {
      void this.driver.notify(message as never).catch((error: unknown) => log.warn({ err: String(error) }, 'notify failed'));
    };
    this.group.events = {
      epochChanged: (epoch) => {
        log.info({ epoch }, 'epoch changed');
        for (const node of this.peers.knownIds()) {
          if (!this.group.members.some((m) => m.id === node)) this.peers.forget(node);
        }
        this.recovery.onEpoch(epoch);
      },
      allRecovered: (epoch) => {
        void this.recovery.removeStale(epoch).catch((error: unknown) => log.warn({ err: String(error) }, 'stale copy removal failed'));
      },

      shutdown: () => void this.stop(0),
    };
  }

  async start(): Promise<void> {
    await this.meta.open();
    const journal = await this.store.open();
    if (journal.replayed + journal.dropped > 0) this.log.info(journal, 'replayed object journal');
    await this.group.load();
    this.recovery.rememberStoreEpoch(this.group.epoch);
    await this.listen();
    const verdict = await this.driver.join(this.config.self, this.group.storeState() as never, this.group);
    if (!verdict.accept) {
      throw new SdError('REFUSED', `the cluster refused this node: ${verdict.reason}`);
    }
    if (this.config.nbd) await this.startNbd(this.config.nbd);
    this.log.info({ node: this.config.self.id, epoch: this.group.epoch, status: this.group.status }, 'sheep started');
  }

  private listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = net.createServer((socket) =>
        serveConnection(socket, (header, payload) => dispatch(this, header, payload), (bug) =>
          this.log.error({ err: bug instanceof Error ? bug.stack : String(bug) }, 'bug while serving a request'),
        ),
      );
      server.once('error', (error: NodeJS.ErrnoException) => {
        const where = `${this.config.bindAddr}:${this.config.self.port}`;
        reject(new SdError('INVALID_ARGUMENT', error.code === 'EADDRINUSE' ? `port ${where} is already in use` : `cannot listen on ${where}: ${error.message}`));
      });
      server.listen(this.config.self.port, this.config.bindAddr, () => {
        this.server = server;
        resolve();
      });
    });
  }

  private async startNbd(where: { host: string; port: number }): Promise<void> {
    const { startNbdServer } = await import('../nbd/index.js');
    this.nbdServer = await startNbdServer({
      host: where.host,
      port: where.port,
      provider: this.volumeProvider(),
      logger: this.log,
      gatherWrites: true,
    });
  }

  /** Volumes served in-process by this sheep's gateway (NBD). */
  volumeProvider(): VolumeProvider {
    const io = {
      read: this.gateway.read.bind(this.gateway),
      write: this.gateway.write.bind(this.gateway),
      remove: this.gateway.remove.bind(this.gateway),
      lookup: this.vdi.lookup.bind(this.vdi),
    };
    return {
      open: async (spec: string): Promise<Volume> => {
        const { name, ref } = splitSpec(spec);
        return new VolumeIo(io, await this.vdi.lookup(name, ref));
      },
      listNames: async () => this.group.registry.live().filter((e) => e.snapshotSec === 0).map((e) => e.name),
    };
  }

  // ---- admin operations ----------------------------------------------------------------

  clusterInfo() {
    return {
      status: this.group.status,
      recoveryEnabled: this.group.recoveryEnabled,
      config: this.group.config,
      epochs: [...this.group.epochs].reverse(),
    };
  }

  async format(copies: number, blockSizeShift: number | undefined): Promise<null> {
    await this.driver.sync();
    if (this.group.config) throw new SdError('ALREADY_FORMATTED', 'Cluster is already formatted');
    const config = { createdMs: Date.now(), copies, blockSizeShift: blockSizeShift ?? 22 };
    await this.driver.notify({ type: 'format', config, timeSec: Math.floor(config.createdMs / 1000) });
    await this.driver.sync();
    await this.group.flushed();
    return null;
  }

  async shutdownCluster(): Promise<null> {
    await this.driver.notify({ type: 'shutdown' });
    return null;
  }

  async recover(action: 'force' | 'enable' | 'disable'): Promise<null> {
    if (action === 'force' && this.group.status !== 'waiting') {
      throw new SdError('INVALID_ARGUMENT', 'Cluster is not waiting for nodes: nothing to force');
    }
    await this.driver.notify({ type: 'recover', action, timeSec: Math.floor(Date.now() / 1000) });
    await this.driver.sync();
    return null;
  }

  nodeList(): NodeInfo[] {
    return [...this.group.members].sort(compareNodes);
  }

  async localStat(): Promise<{ usedBytes: number; availableBytes: number }> {
    const stats = await nodeDisk.stats(this.config.storeDir);
    return { usedBytes: await nodeDisk.usedBytes(path.join(this.config.storeDir, 'obj')), availableBytes: stats.availableBytes };
  }

  async nodeInfo() {
    const nodes = await Promise.all(
      this.nodeList().map(async (node) => {
        const stat = node.id === this.config.self.id
          ? await this.localStat()
          : ((await this.peers.get(node).call('peer.stat')).value as { usedBytes: number; availableBytes: number });
        return { node, ...stat };
      }),
    );
    const virtualBytes = this.group.registry.live().filter((e) => e.snapshotSec === 0).reduce((sum, e) => sum + e.sizeBytes, 0);
    return { nodes, virtualBytes };
  }

  async killNode(nodeId: string): Promise<null> {
    if (nodeId === this.config.self.id) {
      setImmediate(() => void this.stop(0));
      return null;
    }
    const node = this.group.members.find((m) => m.id === nodeId);
    if (!node) throw new SdError('NODE_NOT_FOUND', `no node ${nodeId} in the cluster`);
    await this.peers.get(node).call('node.kill', { node: nodeId });
    return null;
  }

  async setThrottle(maxObjects: number, intervalMs: number): Promise<null> {
    await this.driver.notify({ type: 'throttle', maxObjects, intervalMs });
    await this.driver.sync();
    return null;
  }

  /** Every member's recovery progress, for `dog node recovery`. */
  async recoveryStates(): Promise<Array<{ node: NodeInfo; state: RecoveryState | null }>> {
    return Promise.all(
      this.nodeList().map(async (node) => {
        try {
          const state = node.id === this.config.self.id
            ? this.recovery.state
            : ((await this.peers.get(node).call('peer.recovery')).value as RecoveryState);
          return { node, state };
        } catch {
          return { node, state: null };
        }
      }),
    );
  }

  async location(oid: Oid) {
    const placement = this.gateway.placement(oid);
    const holders = await this.gateway.holders(oid);
    return {
      oid: oidHex(oid),
      copies: this.gateway.copies(oid),
      nodeCount: this.group.members.length,
      placement: placement.map((n) => n.id),
      holders: holders.sort(compareNodes).map((n) => n.id),
    };
  }

  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.log.info({ code }, 'sheep stopping');
    try {
      await this.group.flushed();
      await this.driver.leave();
    } catch (error) {
      this.log.warn({ err: String(error) }, 'leaving the cluster failed');
    }
    this.driver.close?.();
    this.server?.close();
    await this.nbdServer?.close().catch(() => undefined);
    this.peers.closeAll();
    this.exit(code);
  }
}
