// The simulated machines: each host has a memory disk that outlives its processes, and at most
// one running incarnation of a sheep with its own fenced clock, transport, disk view and driver.
// A crash kills the incarnation at once (its timers never fire again, its connections reset, its
// driver goes silent); with power loss the disk also drops what was not synced.
import type { NodeInfo } from '../cluster/driver.js';
import { FaultDisk } from '../io/fault-disk.js';
import { MemoryDisk } from '../io/memory-disk.js';
import { seededRandom, type Random } from '../io/random.js';
import type { SimCluster, SimClusterDriver } from './driver.js';
import type { SimNetwork } from './network.js';
import type { SheepFactory, SimLog, SimSheep } from './node.js';
import type { FencedClock, Scheduler } from './scheduler.js';

export const sheepPort = 7000;
export const storeDir = '/store';

interface Incarnation {
  sheep: SimSheep;
  clock: FencedClock;
  driver: SimClusterDriver;
  disk: FaultDisk;
  /** Resolves when this incarnation dies (crash or clean exit). */
  death: Promise<void>;
  die(): void;
}

export type HostStatus = 'down' | 'starting' | 'up' | 'leaving';

export class SimHost {
  readonly disk = new MemoryDisk();
  readonly info: NodeInfo;
  status: HostStatus = 'down';
  current: Incarnation | undefined;
  /** Incarnations started so far: part of each one's random seed. */
  incarnations = 0;
  /** Why the last start failed, for the trace. */
  startError = '';
  /** Power losses so far: the host's boot id (a sheep tells a power loss from a kill by it). */
  powerCycles = 0;

  constructor(
    readonly name: string,
    zone: number,
  ) {
    this.info = { id: `${name}:${sheepPort}`, addr: name, port: sheepPort, zone, vnodes: 128, nbdPort: 0 };
  }

  get id(): string {
    return this.info.id;
  }

  get up(): boolean {
    return this.status === 'up';
  }

  sheep(): SimSheep | undefined {
    return this.status === 'up' ? this.current?.sheep : undefined;
  }
}

export class Hosts {
  readonly all: SimHost[] = [];

  constructor(
    private readonly scheduler: Scheduler,
    private readonly network: SimNetwork,
    private readonly cluster: SimCluster,
    private readonly seed: number,
    private readonly factory: SheepFactory,
    private readonly logFor: (host: string) => SimLog,
  ) {}

  add(): SimHost {
    const index = this.all.length + 1;
    const host = new SimHost(`10.0.0.${index}`, index);
    this.all.push(host);
    return host;
  }

  up(): SimHost[] {
    return this.all.filter((host) => host.up);
  }

  down(): SimHost[] {
    return this.all.filter((host) => host.status === 'down');
  }

  /** Starts a new incarnation; resolves true once it has joined, false if it failed to. */
  async start(host: SimHost): Promise<boolean> {
    if (host.status !== 'down') return false;
    host.status = 'starting';
    host.incarnations += 1;
    const clock = this.scheduler.incarnation();
    const random: Random = seededRandom((this.seed * 7919 + host.incarnations * 104729 + this.all.indexOf(host)) >>> 0);
    const disk = new FaultDisk(host.disk.incarnation(), { clock, random: seededRandom(random.u32()) });
    const driver = this.cluster.driver();
    const transport = this.network.host(host.name);
    const sheep = this.factory(
      { clock, transport, disk, driver, random, log: this.logFor(host.name), bootId: `boot-${host.powerCycles}` },
      { storeDir, bindAddr: host.name, self: host.info },
    );
    let die = (): void => undefined;
    const death = new Promise<void>((resolve) => (die = resolve));
    const incarnation: Incarnation = { sheep, clock, driver, disk, death, die };
    host.current = incarnation;
    try {
      await Promise.race([sheep.start(), death.then(() => Promise.reject(new Error('died while starting')))]);
    } catch (error) {
      host.startError = error instanceof Error ? error.message : String(error);
      if (host.current === incarnation) this.kill(host, false);
      return false;
    }
    if (host.current !== incarnation) return false;
    host.status = 'up';
    return true;
  }

  /** The process dies at once; with `powerLoss` the disk loses what was not synced too. */
  crash(host: SimHost, powerLoss: boolean): void {
    if (host.current === undefined) return;
    this.kill(host, powerLoss);
  }

  /** The host loses the cluster coordinator: it is reported left at once, though still running. */
  expel(host: SimHost): void {
    if (host.current) this.cluster.expel(host.current.driver);
  }

  /** A clean exit: the sheep leaves the cluster, then the process ends. */
  async leave(host: SimHost): Promise<void> {
    const incarnation = host.current;
    if (incarnation === undefined || host.status !== 'up') return;
    host.status = 'leaving'; // no longer a node to read through
    try {
      await Promise.race([incarnation.sheep.leave(), incarnation.death]);
    } finally {
      if (host.current === incarnation) this.kill(host, false);
    }
  }

  private kill(host: SimHost, powerLoss: boolean): void {
    const incarnation = host.current;
    if (incarnation === undefined) return;
    incarnation.clock.kill();
    this.cluster.crash(incarnation.driver);
    this.network.crashHost(host.name);
    if (powerLoss) {
      host.disk.crash();
      host.powerCycles += 1;
    }
    else host.disk.fence();
    host.current = undefined;
    host.status = 'down';
    incarnation.die();
  }
}
