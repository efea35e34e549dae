// Membership and recovery scenarios on the simulator's harness (src/sim): real Sheep in this
// process over the simulated network, memory disks and cluster driver, on simulated time. Nodes
// are addressed by index, as in test/support/cluster.ts; every wait is for a condition on
// simulated time with a bound, so a scenario is exact and fast and the same seed replays it.
import { oidHex, parseOid } from '../../src/engine/oid.js';
import type { Volume } from '../../src/engine/volume.js';
import type { RecoveryState } from '../../src/rpc/protocol.js';
import { Sheep } from '../../src/sheep/sheep.js';
import { settled } from '../../src/sim/check.js';
import { SimCluster } from '../../src/sim/driver.js';
import { Hosts, type SimHost } from '../../src/sim/hosts.js';
import { quietNetwork, SimNetwork } from '../../src/sim/network.js';
import type { SheepFactory, SimLog, SimSheep } from '../../src/sim/node.js';
import { simSheepOf } from '../../src/sim/sheep-node.js';
import { Scheduler } from '../../src/sim/scheduler.js';
import { seededRandom } from '../../src/io/random.js';
import { md5, pattern } from './cluster.js';

/** No scenario step may take longer than this (simulated): past it the step is a hang. */
export const simStepLimitMs = 30 * 60_000;
/** After recovery ends everywhere, time for the removal of copies a node no longer owns. */
export const simStaleRemovalMs = 2000;

const silentLog: SimLog = { debug() {}, info() {}, warn() {}, error() {} };

export { md5, pattern };

export interface SimClusterOptions {
  /** Hosts the scenario may use, by index 0..hosts-1 (host i is 10.0.0.(i+1), zone i+1). */
  hosts: number;
  seed?: number;
}

export class SimTestCluster {
  readonly scheduler = new Scheduler();
  readonly network: SimNetwork;
  readonly cluster: SimCluster;
  readonly hosts: Hosts;
  /** The Sheep behind each host's current incarnation, by host id. */
  private readonly daemons = new Map<string, Sheep>();

  constructor(options: SimClusterOptions) {
    const seed = (options.seed ?? 1) >>> 0;
    this.network = new SimNetwork(this.scheduler, seededRandom(seed ^ 0x6e657477), quietNetwork);
    this.cluster = new SimCluster(this.scheduler, seededRandom(seed ^ 0x636c7573));
    this.hosts = new Hosts(this.scheduler, this.network, this.cluster, seed, this.factory, () => silentLog);
    for (let i = 0; i < options.hosts; i++) this.hosts.add();
  }

  /** The real Sheep, adapted by src/sim/sheep-node.ts, and remembered for inspection. */
  private readonly factory: SheepFactory = (world, config): SimSheep => {
    const sheep = new Sheep(world, { ...config, nbd: null }, () => this.stoppedItself(config.self.id, sheep));
    this.daemons.set(config.self.id, sheep);
    return simSheepOf(sheep);
  };

  /** A sheep that stopped on its own (cluster shutdown, `node kill`): its process ends. */
  private stoppedItself(id: string, sheep: Sheep): void {
    const host = this.hosts.all.find((h) => h.id === id);
    if (host && this.daemons.get(id) === sheep && host.status !== 'leaving') this.hosts.crash(host, false);
  }

  // ---- hosts ----

  host(i: number): SimHost {
    const host = this.hosts.all[i];
    if (!host) throw new Error(`no host ${i}`);
    return host;
  }

  nodeId(i: number): string {
    return this.host(i).id;
  }

  /** Indexes of the hosts whose sheep is up, ascending. */
  live(): number[] {
    return this.hosts.all.flatMap((host, i) => (host.up ? [i] : []));
  }

  /** The running Sheep of host i. */
  sheep(i: number): Sheep {
    const host = this.host(i);
    const sheep = this.daemons.get(host.id);
    if (!host.up || !sheep) throw new Error(`host ${i} is not up`);
    return sheep;
  }

  /** Starts the sheep of every index at once; fails unless each one joins. */
  async start(...indexes: number[]): Promise<void> {
    const joined = await this.settle(Promise.all(indexes.map((i) => this.hosts.start(this.host(i)))), `start of ${indexes.join(',')}`);
    const failed = indexes.filter((_, k) => !joined[k]);
    if (failed.length > 0) {
      throw new Error(`hosts ${failed.join(',')} did not join: ${failed.map((i) => this.host(i).startError).join('; ')}`);
    }
  }

  /** kill -9: the process dies at once, its page cache survives; the others notice within 2 s. */
  kill(i: number): void {
    if (!this.host(i).up) throw new Error(`host ${i} is not up`);
    this.hosts.crash(this.host(i), false);
  }

  /** A clean exit (SIGTERM): the sheep leaves the cluster, then the process ends. */
  async leave(i: number): Promise<void> {
    await this.settle(this.hosts.leave(this.host(i)), `leave of ${i}`);
  }

  // ---- simulated time ----

  /** Runs the simulation until `promise` settles; its result, or its error. */
  async settle<T>(promise: Promise<T>, what: string, limitMs = simStepLimitMs): Promise<T> {
    const outcome = await this.scheduler.settle(promise, limitMs);
    this.failOnSchedulerErrors();
    if (outcome.done) return outcome.value;
    if ('error' in outcome) throw outcome.error;
    throw new Error(`${what} did not finish in ${limitMs} simulated ms`);
  }

  /** Runs the simulation until `condition` holds; fails after `limitMs` of simulated time. */
  async until(what: string, condition: () => boolean, limitMs = simStepLimitMs): Promise<void> {
    await this.scheduler.run({ until: condition, untilMs: this.scheduler.nowMs() + limitMs });
    this.failOnSchedulerErrors();
    if (!condition()) throw new Error(`${what}: not reached in ${limitMs} simulated ms`);
  }

  /** Lets `ms` of simulated time pass (background work: detection, recovery, removal). */
  async runFor(ms: number): Promise<void> {
    await this.scheduler.runFor(ms);
    this.failOnSchedulerErrors();
  }

  nowMs(): number {
    return this.scheduler.nowMs();
  }

  private failOnSchedulerErrors(): void {
    const error = this.scheduler.errors[0];
    if (error !== undefined) throw error;
  }

  /**
   * Every live node runs, has the same epoch history with exactly the live hosts as members, and
   * every member announced the end of its recovery; then the stale copies' removal had its time.
   */
  async waitSettled(what = 'the cluster settles'): Promise<void> {
    const up = this.hosts.up();
    await this.until(`${what} (${up.length} nodes)`, () => settled(up));
    await this.runFor(simStaleRemovalMs);
    if (!settled(up)) throw new Error(`${what}: unsettled again during stale copy removal`);
  }

  /** Every live node sees exactly the live hosts as members (a join or a death was noticed). */
  async waitForMembers(): Promise<void> {
    const want = JSON.stringify(this.live().map((i) => this.nodeId(i)).sort());
    await this.until(`members ${want} everywhere`, () =>
      this.live().every((i) => JSON.stringify(this.sheep(i).group.members.map((m) => m.id).sort()) === want),
    );
  }

  // ---- cluster and VDIs, through node `via` (the services the rpc handlers call) ----

  /** Formats through node `via`, then waits until every live node has applied it. */
  async format(via: number, copies: number, blockSizeShift?: number): Promise<void> {
    await this.settle(this.sheep(via).admin.format(copies, blockSizeShift), 'format');
    await this.until('formatted everywhere', () => this.live().every((i) => this.sheep(i).group.status === 'running'));
  }

  async recover(via: number, action: 'enable' | 'disable' | 'force'): Promise<void> {
    await this.settle(this.sheep(via).admin.recover(action), `recover ${action}`);
  }

  async setThrottle(via: number, maxObjects: number, intervalMs: number): Promise<void> {
    await this.settle(this.sheep(via).admin.setThrottle(maxObjects, intervalMs), 'set throttle');
  }

  async create(via: number, name: string, sizeBytes: number, copies?: number): Promise<void> {
    await this.settle(this.sheep(via).vdi.create({ name, sizeBytes, copies, hyper: false }), `create ${name}`);
  }

  /** A volume of `spec` on node `via`, opened afresh (a cached owner table goes stale elsewhere). */
  private open(via: number, spec: string): Promise<Volume> {
    return this.sheep(via).volumeProvider().open(spec);
  }

  async write(via: number, spec: string, offsetBytes: number, data: Buffer): Promise<void> {
    await this.settle((async () => (await this.open(via, spec)).write(offsetBytes, data))(), `write ${spec} via ${via}`);
  }

  async read(via: number, spec: string, offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    return this.settle((async () => (await this.open(via, spec)).read(offsetBytes, lengthBytes))(), `read ${spec} via ${via}`);
  }

  /** md5 of the first `lengthBytes` of `spec` read through node `via`. */
  async readMd5(via: number, spec: string, lengthBytes: number): Promise<string> {
    return md5(await this.read(via, spec, 0, lengthBytes));
  }

  // ---- what the nodes hold and know ----

  /** Object ids (16 hex digits) in host i's store, sorted; the host must be up. */
  async objects(i: number): Promise<string[]> {
    const oids = await this.settle(this.sheep(i).store.list(), `objects of ${i}`);
    return oids.map(oidHex).sort();
  }

  /** oid → indexes of the live hosts (of `among`) holding a copy. */
  async holders(among: readonly number[] = this.live()): Promise<Map<string, number[]>> {
    const all = new Map<string, number[]>();
    for (const i of among) for (const oid of await this.objects(i)) all.set(oid, [...(all.get(oid) ?? []), i]);
    return new Map([...all].sort(([a], [b]) => (a < b ? -1 : 1)));
  }

  /** The copies per object among `among` that are not `copies` (empty: every object has full copies). */
  async badCopies(copies: number, among: readonly number[] = this.live()): Promise<Array<{ oid: string; holders: number[] }>> {
    return [...(await this.holders(among))].filter(([, h]) => h.length !== copies).map(([oid, holders]) => ({ oid, holders }));
  }

  /** md5 of host i's stored copy of `oid` (16 hex digits), the whole object. */
  async objectMd5(i: number, oid: string): Promise<string> {
    const parsed = parseOid(oid);
    if (parsed === undefined) throw new Error(`not an oid: ${oid}`);
    const sheep = this.sheep(i);
    return md5(await this.settle(sheep.store.read(parsed, 0, sheep.placement.objectSizeBytes(parsed)), `read ${oid} on ${i}`));
  }

  /** Host i's epoch history as host indexes per epoch (epochs 1, 2, … in order). */
  history(i: number): number[][] {
    const byId = new Map(this.hosts.all.map((host, k) => [host.id, k]));
    return this.sheep(i).group.epochs.map((record, k) => {
      if (record.epoch !== k + 1) throw new Error(`host ${i}: epoch ${record.epoch} at position ${k + 1}`);
      return record.nodes.map((node) => byId.get(node.id) ?? -1);
    });
  }

  recoveryState(i: number): RecoveryState {
    return { ...this.sheep(i).recovery.state };
  }

  status(i: number): string {
    const group = this.sheep(i).group;
    return group.status === 'running' ? `running, auto-recovery ${group.recoveryEnabled ? 'enabled' : 'disabled'}` : group.status;
  }
}
