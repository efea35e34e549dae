// One sheep daemon, wired from the world it is given (clock, transport, disk, cluster driver,
// randomness, log) and its config: the store, its place in the group, the gateway and the
// services, and the rpc server whose handler table (dispatch.ts) reaches them, behind the key
// handshake (rpc/auth.ts).
import type { WriteOptions } from '../engine/object-io.js';
import * as path from 'node:path';
import type { NodeInfo } from '../cluster/driver.js';
import { SdError } from '../engine/errors.js';
import { clusterKeyBytes, malformedLogIntervalMs } from '../engine/limits.js';
import { asVid, type Oid } from '../engine/oid.js';
import { VolumeIo } from '../volume/volume-io.js';
import type { Volume, VolumeProvider } from '../engine/volume.js';
import { splitSpec } from '../engine/vdi.js';
import { nowSec, type Clock } from '../io/clock.js';
import type { Disk } from '../io/disk.js';
import type { Log } from '../io/log.js';
import type { Random } from '../io/random.js';
import type { Listener, Transport } from '../io/transport.js';
import type { NbdTls } from '../nbd/tls.js';
import { acceptSession, unkeyedHandler } from '../rpc/auth.js';
import { protocolHandler, rateLimitedWarn, RpcServer } from '../rpc/server.js';
import { MetaStore } from '../store/meta.js';
import { MdStore } from '../store/md-store.js';
import { AdminService } from './admin.js';
import { AttrService } from './attr-service.js';
import { CopiesService } from './copies-service.js';
import { FormatService } from './format-service.js';
import { LockService } from './lock-service.js';
import { VnodesService } from './vnodes-service.js';
import { MdService } from './md-service.js';
import { lockedVolume, splitExportSuffixes } from '../volume/locked-volume.js';
import { LockKeeper } from '../volume/lock-keeper.js';
import { CurrentDriver, type ClosableDriver } from './current-driver.js';
import { countedHandler } from './counted-handler.js';
import { makeHandlers } from './dispatch.js';
import { logLevelControl, logLevelDefault, type LogLevelControl } from './log-level.js';
import { RequestStats } from './stats.js';
import { Gateway } from './gateway.js';
import { Group } from './group.js';
import { Integrity } from './integrity.js';
import { instrument } from './metrics.js';
import { Peers } from './peers.js';
import { Placement } from './placement.js';
import { Recovery } from './recovery.js';
import { VdiService } from './vdi-service.js';

/** Everything a sheep touches outside its own memory. */
export interface SheepWorld {
  clock: Clock;
  transport: Transport;
  disk: Disk;
  driver: ClosableDriver;
  /**
   * A fresh driver (a new incarnation) for a sheep that finds itself reported left while alive:
   * it rejoins through it as a returning node. Without one such a sheep stays out until restarted.
   */
  rejoinDriver?: () => ClosableDriver;
  random: Random;
  log: Log;
  /**
   * This machine's boot id (io/boot-id.ts; the simulator's counts power cycles): a store sees by
   * it whether its cached writes may have been lost since it last ran. None: taken as lost.
   */
  bootId?: string;
  /** Gives freed memory back to the system after a busy spell (io/memory.ts); none simulated. */
  releaseMemory?: () => void;
  /** Changes the log's level at run time (`dog node log level set`); none: a level kept only here. */
  logLevel?: LogLevelControl;
}

/** A sheep that finds itself out tries to rejoin this often, this far apart, before it stops. */
const rejoinAttemptsMax = 5;
const rejoinRetryMs = 1000;

export interface SheepConfig {
  storeDir: string;
  /**
   * Object disks (`sheep STORE,DISK1,DISK2…`): objects spread over them, metadata stays in
   * storeDir, and a disk that fails is taken out (docs/multi-disk.md). None: STORE/obj alone.
   */
  diskDirs?: readonly string[];
  bindAddr: string;
  self: NodeInfo;
  /**
   * tls: prepared by the launcher (prepareNbdTls); absent means off. `idleTimeoutMs`: close NBD
   * sessions with no traffic for this long (0 or absent: never).
   */
  nbd: { host: string; port: number; tls?: NbdTls; idleTimeoutMs?: number } | null;
  /** Connections served at once (default rpcServerConnectionsMax); main.ts derives it from RLIMIT_NOFILE. */
  connectionsMax?: number;
  /** false: the store keeps no block sums (bench only: ObjectStoreOptions.blockSums). */
  blockSums?: boolean;
  /** Every NBD write durable before its acknowledgement (docs/durability.md); default writeback. */
  writethrough?: boolean;
  /** Background scrubbing (scrub.ts); off unless asked for (the simulator does not). */
  scrub?: boolean;
  /** The key the admin gave (-k FILE): joins with it; refused when the store holds another. */
  key?: { key: Buffer; source: string };
  /**
   * false for a driver whose messages leave the host (zookeeper): the key is never put in them,
   * so every sheep must hold it (-k FILE or its store's) before it starts. Default true.
   */
  keyTravels?: boolean;
}

export class Sheep {
  readonly store: MdStore;
  readonly meta: MetaStore;
  readonly group: Group;
  readonly gateway: Gateway;
  readonly placement: Placement;
  readonly vdi: VdiService;
  readonly locks: LockService;
  readonly recovery: Recovery;
  readonly admin: AdminService;
  readonly peers: Peers;
  /** Request counters for `dog node stat` (and a metrics exporter). */
  readonly stats = new RequestStats();
  readonly integrity: Integrity;
  private listener: Listener | undefined;
  private nbdServer: { close(): Promise<void> } | undefined;
  private stopping = false;
  private readonly driver: CurrentDriver;

  /** `onStopped` runs once the sheep has left the cluster and closed everything (code 0: clean). */
  constructor(
    readonly world: SheepWorld,
    readonly config: SheepConfig,
    private readonly onStopped: (code: number) => void = () => undefined,
  ) {
    const { clock, disk, log } = world;
    const driver = (this.driver = new CurrentDriver(world.driver));
    const diskDirs = config.diskDirs ?? [];
    this.store = new MdStore({
      dirs: diskDirs.length > 0 ? diskDirs : [path.join(config.storeDir, 'obj')],
      metaDir: config.storeDir,
      disk,
      clock,
      log,
      blockSums: config.blockSums ?? true,
      failover: diskDirs.length > 0,
      ...(world.bootId === undefined ? {} : { bootId: world.bootId }),
    });
    this.meta = new MetaStore(config.storeDir, disk);
    this.group = new Group(config.self, this.meta, clock, log, () => world.random.bytes(clusterKeyBytes), config.keyTravels ?? true);
    this.peers = new Peers(world, this.group);
    this.placement = new Placement(this.group);
    this.gateway = new Gateway(this.group, this.store, this.peers, clock, this.placement);
    this.vdi = new VdiService(this.group, driver, this.gateway, this.peers, () => nowSec(clock), log, clock);
    this.locks = new LockService(this.group, this.vdi, clock, () => driver.sync());
    this.recovery = new Recovery(this.group, this.store, this.gateway, this.placement, this.peers, clock, log);
    this.admin = new AdminService({
      group: this.group,
      driver,
      gateway: this.gateway,
      placement: this.placement,
      peers: this.peers,
      recovery: this.recovery,
      clock,
      random: world.random,
      disk,
      storeDir: config.storeDir,
      storeUsage: () => this.store.usage(),
      stats: this.stats,
      logLevel: world.logLevel ?? logLevelControl({ level: 'info' }, logLevelDefault),
      // After the reply that asked for it has gone out.
      stopSelf: () => void clock.after(0, () => void this.stop(0)),
    });
    this.gateway.localIsCurrent = (oid) => this.recovery.isCurrent(oid);
    this.gateway.onWholeWrite = (oid) => this.recovery.markWritten(oid);
    this.gateway.localWritable = () => this.recovery.suspectsKnown();
    this.gateway.onBusyRead = (oid) => this.recovery.prioritize(oid);
    this.gateway.localIsBehind = (oid) => this.recovery.catchUp.isBehind(oid);
    this.recovery.catchUp.onNoLongerBehind = (oid) => void this.store.settleLost(oid).catch(() => undefined);
    this.gateway.onFailedWrite = (oid, cause) => this.recovery.markBehind(oid, cause);
    this.gateway.onDamaged = (oid, problem) => this.recovery.markDamaged(oid, problem);
    this.gateway.localDamage = (oid) => this.recovery.catchUp.damage(oid);
    this.integrity = new Integrity({
      group: this.group,
      store: this.store,
      placement: this.placement,
      gateway: this.gateway,
      peers: this.peers,
      recovery: this.recovery,
      clock,
      log,
      usedBytes: async () => (await this.store.usage()).usedBytes,
    });
    this.wireDisks();
    this.group.announce = (message) => {
      void driver.notify(message as never).catch((error: unknown) => log.warn({ err: String(error) }, 'notify failed'));
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
        // One member (the first of the epoch) reclaims what a returning member brought back of
        // deleted VDIs; what it cannot finish it tries again later.
        if (this.group.epochs.at(-1)?.nodes[0]?.id !== this.group.self.id) return;
        void this.vdi.reclaimReturned().then(
          ({ complete }) => complete || this.vdi.reclaimLater(),
          (error: unknown) => {
            log.warn({ err: String(error), epoch }, 'reclaim after recovery failed; trying again later');
            this.vdi.reclaimLater();
          },
        );
      },

      shutdown: () => void this.stop(0),
      // Not from inside the old driver's delivery: the rejoin starts a new driver.
      expelled: () => void clock.after(0, () => void this.rejoin()),
    };
  }

  /** A multi-disk store's failures: its lost objects are fetched again; with no disk left, leave. */
  private wireDisks(): void {
    const { log, clock } = this.world;
    this.store.objectSizeBytes = (oid) => this.placement.objectSizeBytes(oid);
    this.store.onLost = (oids, cause) => {
      for (const oid of oids) this.recovery.markBehind(oid, cause, true);
    };
    this.store.onDiskFailed = ({ path: failed, lost, disksLeft }) => {
      if (disksLeft === 0) {
        log.error({ disk: failed }, 'no disks available, going down');
        void clock.after(0, () => void this.stop(1));
        return;
      }
      this.store.onLost(lost, `disk ${failed} failed`);
    };
  }

  async start(): Promise<void> {
    const { log } = this.world;
    const driver = this.driver;
    await this.meta.open();
    const { lost, ...journal } = await this.store.open();
    if (journal.replayed + journal.dropped + journal.resummed > 0) log.info(journal, 'replayed object journal');
    // Cached writes lost with the power: these copies may be older than their peers'.
    if (lost.length > 0) log.warn({ objects: lost.length }, 'this host lost power with writes not yet flushed: those copies catch up from their peers');
    for (const oid of lost) this.recovery.markBehind(oid, 'cached writes lost with the power');
    await this.group.load();
    this.store.moveMisplaced(); // object sizes are known from here on
    if (this.config.key) this.group.offerKey(this.config.key.key, this.config.key.source);
    if (!this.group.keyTravels && !this.group.key) {
      throw new SdError('AUTH', 'this cluster driver does not carry the cluster key between hosts: start the sheep with -k FILE (docs/zookeeper-driver.md)');
    }
    this.recovery.rememberStoreEpoch(this.group.epoch);
    await this.listen();
    const verdict = await driver.join(this.config.self, this.group.storeState() as never, this.group);
    if (!verdict.accept) {
      throw new SdError('REFUSED', `the cluster refused this node: ${verdict.reason}`);
    }
    if (this.config.nbd) await this.startNbd(this.config.nbd);
    if (this.config.scrub) this.integrity.scrub.start();
    log.info({ node: this.config.self.id, epoch: this.group.epoch, status: this.group.status }, 'sheep started');
  }

  private async listen(): Promise<void> {
    const { transport, clock, log } = this.world;
    const handle = countedHandler(this.stats, protocolHandler(
      instrument(makeHandlers({
        admin: this.admin,
        vdi: this.vdi,
        attrs: new AttrService(this.group, this.vdi),
        copies: new CopiesService(this.group, this.vdi, clock),
        locks: this.locks,
        format: new FormatService(this.group, this.vdi, this.peers, this.store, clock, log),
        vnodes: new VnodesService(this.group, this.driver, clock),
        md: new MdService(this.store, this.group, this.peers),
        gateway: this.gateway,
        placement: this.placement,
        group: this.group,
        recovery: this.recovery,
        store: this.store,
        integrity: this.integrity,
        clock,
      }), this.integrity.metrics, clock),
      clock,
      log,
    ));
    const onBug = (bug: unknown) => log.error({ err: bug instanceof Error ? bug.stack : String(bug) }, 'bug while serving a request');
    const server = new RpcServer(handle, {
      clock,
      log,
      onBug,
      ...(this.config.connectionsMax !== undefined ? { limits: { connectionsMax: this.config.connectionsMax } } : {}),
      ...(this.world.releaseMemory ? { onDrained: this.world.releaseMemory } : {}),
    });
    const where = `${this.config.bindAddr}:${this.config.self.port}`;
    const group = this.group;
    const hasKey = () => group.key !== undefined;
    const unkeyed = unkeyedHandler(handle, hasKey, () => group.config !== null);
    const warn = rateLimitedWarn(clock, malformedLogIntervalMs, log);
    const auth = { port: this.config.self.port, key: () => group.key, keyFile: group.keyFile, random: this.world.random, clock };
    try {
      // Admitted under the cap first, so connections still proving the key count too.
      this.listener = await transport.listen(this.config.bindAddr, this.config.self.port, (stream, remote) => {
        if (!server.admitSlot(stream, remote)) return;
        acceptSession(stream, { ...auth, onRefused: (reason) => warn({ reason, remote }, 'refused a connection') }, (session) =>
          server.serve(stream, remote, session === 'authenticated' ? handle : unkeyed),
        );
      });
    } catch (error) {
      const { code, message } = error as NodeJS.ErrnoException;
      throw new SdError('INVALID_ARGUMENT', code === 'EADDRINUSE' ? `port ${where} is already in use` : `cannot listen on ${where}: ${message}`);
    }
  }

  private async startNbd(where: NonNullable<SheepConfig['nbd']>): Promise<void> {
    const { startNbdServer } = await import('../nbd/index.js');
    this.nbdServer = await startNbdServer({
      host: where.host,
      port: where.port,
      provider: this.volumeProvider(),
      logger: this.world.log,
      gatherWrites: true,
      ...(where.tls ? { tls: where.tls } : {}),
      limits: { idleTimeoutMs: where.idleTimeoutMs ?? 0 },
    });
  }

  /** Volumes served in-process by this sheep's gateway (NBD). */
  volumeProvider(): VolumeProvider {
    const { gateway, stats, locks } = this;
    // NBD's I/O is a client's too: counted as the rpc ops are. A write that names a lock runs
    // only while the cluster holds it, as through rpc (lock-keeper.ts).
    const io = {
      read: (oid: Oid, offset: number, length: number) =>
        stats.count('client', 'read', 0, () => gateway.read(oid, offset, length), (data) => data.length),
      write: (oid: Oid, offset: number, data: Buffer, create: boolean, options?: WriteOptions) =>
        stats.count('client', 'write', data.length, async () => {
          if (options?.lock !== undefined) await locks.requireHeld(options.lock);
          await gateway.write(oid, offset, data, create, options?.cached);
        }, () => 0),
      flush: (vid: number) => gateway.flush(asVid(vid)),
      remove: (oid: Oid, lock?: string) =>
        stats.count('client', 'remove', 0, async () => {
          if (lock !== undefined) await locks.requireHeld(lock);
          await gateway.remove(oid);
        }, () => 0),
      lookup: this.vdi.lookup.bind(this.vdi),
    };
    return {
      open: async (exportSpec: string, opener?: { client: string }): Promise<Volume> => {
        const { spec, shared, writethrough } = splitExportSuffixes(exportSpec);
        const { name, ref } = splitSpec(spec);
        const entry = await this.vdi.lookup(name, ref);
        // A snapshot is read-only: only a working VDI's writers take the lock. Without an opener
        // (in-process users such as the simulator's clients) nothing is locked.
        const keeper =
          entry.snapshotSec !== 0 || opener === undefined
            ? undefined
            : await LockKeeper.take({
                take: (holder) => locks.acquire(name, `nbd ${opener.client}`, shared, holder),
                release: (holder) => locks.release(holder),
              });
        const writeback = !writethrough && !this.config.writethrough;
        const volume = new VolumeIo(keeper ? keeper.io(io) : io, entry, undefined, { writeback });
        // An NBD FLUSH is the client's flush request of the original's counters.
        const flush = volume.flush.bind(volume);
        volume.flush = () => stats.count('client', 'flush', 0, flush, () => 0);
        return keeper ? lockedVolume(volume, () => keeper.release()) : volume;
      },
      listNames: async () => this.group.registry.live().filter((e) => e.snapshotSec === 0).map((e) => e.name),
    };
  }

  /**
   * Reported left while alive (stopped for longer than the failure timeout, then woken): this
   * incarnation is out for good, so join again through a new one, as a returning node whose
   * store may have missed writes (recovery checks every object it holds).
   */
  private async rejoin(): Promise<void> {
    const { log, rejoinDriver } = this.world;
    if (this.stopping) return;
    if (rejoinDriver === undefined) {
      log.error({ node: this.config.self.id }, 'this node was reported left; it stays out until restarted');
      return;
    }
    log.warn({ node: this.config.self.id, epoch: this.group.epoch }, 'this node was reported left while alive; rejoining');
    this.recovery.rememberStoreEpoch(this.group.epoch, true);
    for (let attempt = 1; !this.stopping; attempt++) {
      this.driver.replace(rejoinDriver());
      try {
        const verdict = await this.driver.join(this.config.self, this.group.storeState() as never, this.group);
        if (verdict.accept) {
          log.info({ node: this.config.self.id, epoch: this.group.epoch }, 'rejoined the cluster');
          return;
        }
        log.error({ reason: verdict.reason }, 'the cluster refused this node back; stopping');
      } catch (error) {
        log.warn({ err: String(error), attempt }, 'rejoining failed');
        if (attempt < rejoinAttemptsMax) {
          await this.world.clock.sleep(rejoinRetryMs);
          continue;
        }
      }
      await this.stop(1);
      return;
    }
  }

  async stop(code: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const { log } = this.world;
    const driver = this.driver;
    log.info({ code }, 'sheep stopping');
    // NBD clients first, while still a member: their writers' locks are freed cluster-wide.
    await this.nbdServer?.close().catch(() => undefined);
    try {
      await this.group.flushed();
      await driver.leave();
    } catch (error) {
      log.warn({ err: String(error) }, 'leaving the cluster failed');
    }
    driver.close?.();
    this.recovery.catchUp.stop();
    this.integrity.stop();
    this.vdi.stop();
    void this.listener?.close();
    this.peers.closeAll();
    this.onStopped(code);
  }
}
