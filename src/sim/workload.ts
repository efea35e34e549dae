// The seeded workload: each step draws one action (client I/O, a VDI operation, or a fault) and
// runs it on simulated time. Operations run one at a time; faults also strike in the middle of
// one (a crash or a partition scheduled a few milliseconds into the step), which is where the
// interesting interleavings are. After every step the checks of check.ts run.
import type { Random } from '../io/random.js';
import { checkUnitOn, errorCode, type ReadContext } from './check.js';
import type { Hosts, SimHost } from './hosts.js';
import { unitBytes, unitPattern, type Model, type VdiModel } from './model.js';
import type { SimNetwork } from './network.js';
import { Corruption } from './corruption.js';

export const vdiSizeBytes = 8 * 2 ** 20;
export const objectSizeShift = 20; // 1 MiB objects: several objects per VDI, cheap to copy
export const vdisMax = 4;
export const snapshotsPerVdiMax = 2;
/** Units the workload writes in: a few per object, so reads often hit written data. */
export const hotUnitsPerObject = 4;

export type Action =
  | 'write'
  | 'read'
  | 'create'
  | 'snapshot'
  | 'clone'
  | 'rollback'
  | 'delete'
  | 'crash'
  | 'restart'
  | 'leave'
  | 'join'
  | 'partition'
  | 'heal'
  | 'diskFault'
  | 'corrupt'
  | 'flush'
  | 'blackout';

/** Relative weights of the actions of the full fault mix. */
export const actionWeights: ReadonlyArray<readonly [Action, number]> = [
  ['write', 40],
  ['read', 22],
  ['create', 5],
  ['snapshot', 5],
  ['clone', 3],
  ['rollback', 3],
  ['delete', 2],
  ['crash', 4],
  ['restart', 6],
  ['leave', 1],
  ['join', 1],
  ['partition', 2],
  ['heal', 5],
  ['diskFault', 2],
  ['corrupt', 2],
  ['flush', 4],
  ['blackout', 1],
];

/** What the workload needs of the run beyond reads: faults at a time, starts and exits. */
export interface WorkloadContext extends ReadContext {
  scheduleFault(delayMs: number, fault: () => void): void;
  /** Starts a down host; resolves whether it joined. */
  settleStart(host: SimHost): Promise<boolean>;
  settleLeave(host: SimHost): Promise<void>;
}

/**
 * Which faults a run injects. `full` is everything the simulator can do; the others leave out
 * classes of fault, to tell which one a failure needs (and for CI, see docs/simulator.md).
 */
export interface FaultProfile {
  name: string;
  /** Actions left out of the mix. */
  without: readonly Action[];
  /** A crash may strike in the middle of an operation. */
  midStepCrashes: boolean;
  /**
   * A clean leave or a restart may happen in the middle of an operation: the epoch changes
   * while replica requests are in flight, which is what epoch fencing is for.
   */
  midStepMembership: boolean;
  /** Crashes may lose what the disk had not synced. */
  powerLoss: boolean;
  /** An orphan object fails the run; when false it is counted as leaked space instead. */
  orphansFail: boolean;
  /** Connections are reset and connects refused at random (delays are always on). */
  networkResets: boolean;
  /**
   * A copy on a node outside the object's placement fails the run; when false it is counted.
   * (Missing copies always fail.)
   */
  staleCopiesFail: boolean;
  /** Weights that differ from `actionWeights` (the corruption profile's). */
  weights?: Partial<Record<Action, number>>;
}

function profile(name: string, without: Action[], options: Partial<FaultProfile> = {}): FaultProfile {
  const all = {
    midStepCrashes: true,
    midStepMembership: true,
    powerLoss: true,
    orphansFail: true,
    networkResets: true,
    staleCopiesFail: true,
  };
  // Blackouts (every host at once) only in their own mix for now: docs/simulator.md "Open".
  return { name, without: name === 'blackout' ? without : [...new Set([...without, 'blackout' as const])], ...all, ...options };
}

const quiet = { midStepCrashes: false, midStepMembership: false, powerLoss: false, networkResets: false };

export const faultProfiles: Record<string, FaultProfile> = {
  full: profile('full', []),
  /** The full mix and blackouts: every host loses power, or is killed, at once (durability.md). */
  blackout: profile('blackout', []),
  'no-disk-faults': profile('no-disk-faults', ['diskFault']),
  'no-partitions': profile('no-partitions', ['partition']),
  'no-power-loss': profile('no-power-loss', [], { powerLoss: false }),
  'no-mid-step': profile('no-mid-step', [], { midStepCrashes: false, midStepMembership: false }),
  crashes: profile('crashes', ['diskFault', 'partition', 'corrupt'], { midStepCrashes: false, powerLoss: false }),
  /**
   * What today's daemon survives on every CI seed: membership changes by clean leaves, joins
   * and restarts between operations, VDI operations, client I/O, network delays; orphan objects
   * and stale copies fail the run. What is left out fails today (docs/simulator.md lists the
   * failures and their seeds).
   */
  ci: profile('ci', ['diskFault', 'partition', 'crash', 'corrupt', 'blackout'], quiet),
  /** The ci mix (strict since the stale-copy and reclaim fixes); kept so replay lines still work. */
  'ci-strict': profile('ci-strict', ['diskFault', 'partition', 'crash', 'corrupt', 'blackout'], quiet),
  /** The ci mix with copies damaged at rest often (about one step in eight), for targeted runs. */
  corruption: profile('corruption', ['diskFault', 'partition', 'crash', 'blackout'], { ...quiet, weights: { corrupt: 12 } }),
  none: profile('none', ['diskFault', 'partition', 'crash', 'restart', 'leave', 'join', 'corrupt', 'blackout'], quiet),
};

export interface WorkloadDeps {
  profile: FaultProfile;
  random: Random;
  hosts: Hosts;
  network: SimNetwork;
  model: Model;
  context: WorkloadContext;
  /** Hosts the cluster may grow to with joins of new machines. */
  hostsMax: number;
  copies: number;
  /** Hosts allowed to be down (or cut off) at once: copies − 1, so acknowledged data survives. */
  downMax: number;
}

export class Workload {
  private nextVdi = 1;
  private nextTag = 1;
  /** Hosts whose disk currently injects faults. */
  readonly faultyDisks = new Set<SimHost>();
  /** Hosts cut off by a partition: from the network and from the cluster coordinator. */
  readonly cutOff = new Set<SimHost>();
  /** Copies damaged at rest since the last convergence. */
  readonly corruption: Corruption;

  constructor(private readonly deps: WorkloadDeps) {
    this.corruption = new Corruption(deps.random);
  }

  pick<T>(items: readonly T[]): T | undefined {
    return items.length === 0 ? undefined : items[this.deps.random.int(items.length)];
  }

  drawAction(): Action {
    const { without, weights: own = {} } = this.deps.profile;
    const weights = actionWeights
      .filter(([action]) => !without.includes(action))
      .map(([action, weight]): [Action, number] => [action, own[action] ?? weight]);
    const total = weights.reduce((sum, [, weight]) => sum + weight, 0);
    let at = this.deps.random.int(total);
    for (const [action, weight] of weights) {
      if (at < weight) return action;
      at -= weight;
    }
    return 'write';
  }

  /** Runs one step; returns a line for the trace. */
  async step(action: Action): Promise<string> {
    switch (action) {
      case 'write':
        return this.write();
      case 'read':
        return this.read();
      case 'create':
        return this.create();
      case 'snapshot':
        return this.snapshot();
      case 'clone':
        return this.clone();
      case 'rollback':
        return this.rollback();
      case 'delete':
        return this.remove();
      case 'crash':
        return this.crash();
      case 'restart':
        return this.restart();
      case 'leave':
        return this.leave();
      case 'join':
        return this.join();
      case 'partition':
        return this.partition();
      case 'heal':
        return this.heal();
      case 'diskFault':
        return this.diskFault();
      case 'corrupt':
        return this.corrupt();
      case 'flush':
        return this.flush();
      case 'blackout':
        return this.blackout();
    }
  }

  // ---- client I/O ----

  private liveVdis(): VdiModel[] {
    return this.deps.model.certainVdis().filter((vdi) => !vdi.deleted);
  }

  private drawUnit(vdi: VdiModel): number {
    const objects = vdi.sizeBytes / 2 ** objectSizeShift;
    const unitsPerObject = 2 ** objectSizeShift / unitBytes;
    return this.deps.random.int(objects) * unitsPerObject + this.deps.random.int(hotUnitsPerObject);
  }

  private gateway(): SimHost | undefined {
    return this.pick(this.deps.hosts.up());
  }

  private async write(): Promise<string> {
    const vdi = this.pick(this.liveVdis());
    const host = this.gateway();
    if (!vdi || !host) return 'write: nothing to write to';
    const { model, context } = this.deps;
    const index = this.drawUnit(vdi);
    const writeId = model.newWriteId(vdi.name, index);
    this.maybeStrikeDuring();
    try {
      await context.settle(host, async () => {
        await context.volumes.write(host, vdi.name, index * unitBytes, unitPattern(writeId));
      });
    } catch (error) {
      model.writeFailed(vdi, index, writeId);
      return `write ${vdi.name}#${index}=${writeId} @${host.name}: ${errorCode(error)}`;
    }
    model.writeAcked(vdi, index, writeId);
    // Acknowledged: it must read back at once, through the writer and through another node (every
    // node reads every unit at each convergence check).
    const other = this.pick(this.deps.hosts.up().filter((h) => h !== host));
    for (const reader of other ? [host, other] : [host]) await checkUnitOn(context, reader, vdi, index, undefined);
    return `write ${vdi.name}#${index}=${writeId} @${host.name}: ok`;
  }

  /** A client's flush (NBD FLUSH, fsync): once acknowledged, its writes survive any power loss. */
  private async flush(): Promise<string> {
    const vdi = this.pick(this.liveVdis());
    const host = this.gateway();
    if (!vdi || !host) return 'flush: nothing to flush';
    const { model, context } = this.deps;
    this.maybeStrikeDuring();
    try {
      await context.settle(host, async () => (await context.volumes.get(host, vdi.name, undefined)).flush());
    } catch (error) {
      return `flush ${vdi.name} @${host.name}: ${errorCode(error)}`;
    }
    model.flushed(vdi);
    return `flush ${vdi.name} @${host.name}: ok`;
  }

  private async read(): Promise<string> {
    const vdi = this.pick(this.deps.model.certainVdis());
    const host = this.gateway();
    if (!vdi || !host) return 'read: nothing to read';
    const tags = [...vdi.snapshots.keys()];
    const tag = vdi.deleted || (tags.length > 0 && this.deps.random.int(3) === 0) ? this.pick(tags) : undefined;
    if (vdi.deleted && tag === undefined) return 'read: deleted VDI without snapshots';
    const written = [...(tag === undefined ? vdi.units : vdi.snapshots.get(tag)!.units).keys()];
    const index = this.deps.random.int(4) === 0 || written.length === 0 ? this.drawUnit(vdi) : this.pick(written)!;
    await checkUnitOn(this.deps.context, host, vdi, index, tag);
    return `read ${vdi.name}${tag ? `:${tag}` : ''}#${index} @${host.name}: checked`;
  }

  // ---- VDI operations ----

  private async vdiOperation(line: string, names: string[], work: (host: SimHost) => Promise<void>, onAcked: () => void): Promise<string> {
    const host = this.gateway();
    if (!host) return `${line}: no live node`;
    const { context, model } = this.deps;
    this.maybeStrikeDuring();
    try {
      await context.settle(host, () => work(host));
    } catch (error) {
      for (const name of names) context.volumes.tableChanged(name);
      for (const name of names) model.uncertain(name);
      model.vdiOperationFailed = true;
      return `${line} @${host.name}: ${errorCode(error)}`;
    }
    for (const name of names) context.volumes.tableChanged(name);
    onAcked();
    return `${line} @${host.name}: ok`;
  }

  private create(): Promise<string> | string {
    if (this.liveVdis().length >= vdisMax) return 'create: enough VDIs';
    const name = `v${this.nextVdi++}`;
    return this.vdiOperation(`create ${name}`, [name], (host) => host.sheep()!.createVdi(name, vdiSizeBytes), () =>
      this.deps.model.createVdi(name, vdiSizeBytes),
    );
  }

  private snapshot(): Promise<string> | string {
    const vdi = this.pick(this.liveVdis().filter((v) => v.snapshots.size < snapshotsPerVdiMax));
    if (!vdi) return 'snapshot: nothing to snapshot';
    const tag = `s${this.nextTag++}`;
    return this.vdiOperation(`snapshot ${vdi.name}:${tag}`, [vdi.name], (host) => host.sheep()!.snapshot(vdi.name, tag), () =>
      this.deps.model.snapshot(vdi, tag),
    );
  }

  private clone(): Promise<string> | string {
    const vdi = this.pick(this.deps.model.certainVdis().filter((v) => v.snapshots.size > 0));
    if (!vdi || this.liveVdis().length >= vdisMax) return 'clone: nothing to clone';
    const tag = this.pick([...vdi.snapshots.keys()])!;
    const target = `v${this.nextVdi++}`;
    return this.vdiOperation(`clone ${vdi.name}:${tag} ${target}`, [target], (host) => host.sheep()!.clone(vdi.name, tag, target), () =>
      this.deps.model.clone(vdi, tag, target),
    );
  }

  private rollback(): Promise<string> | string {
    const vdi = this.pick(this.liveVdis().filter((v) => v.snapshots.size > 0));
    if (!vdi) return 'rollback: nothing to roll back';
    const tag = this.pick([...vdi.snapshots.keys()])!;
    return this.vdiOperation(`rollback ${vdi.name}:${tag}`, [vdi.name], (host) => host.sheep()!.rollback(vdi.name, tag), () => {
      this.deps.model.rollback(vdi, tag);
      if (this.impaired() > 0) vdi.hadFailure = true; // reclaims too, as delete does
    });
  }

  private remove(): Promise<string> | string {
    const vdi = this.pick(this.liveVdis());
    if (!vdi) return 'delete: nothing to delete';
    return this.vdiOperation(`delete ${vdi.name}`, [vdi.name], (host) => host.sheep()!.deleteVdi(vdi.name, undefined), () => {
      vdi.deleted = true;
      // A host that is down keeps its copies, and brings them back when it returns: the
      // reclaim is never redone (a known leak, see docs/simulator.md), so they are not orphans.
      if (this.impaired() > 0) vdi.hadFailure = true;
    });
  }

  // ---- faults ----

  /** Hosts that are down or cut off. */
  private impaired(): number {
    return this.deps.hosts.all.filter((host) => !host.up).length + (this.deps.network.partitioned ? 1 : 0);
  }

  /**
   * Faults that may cost an object a good copy: hosts down or cut off, and the most damaged
   * copies of any one object. At most `downMax` at once, so every object keeps a good copy.
   */
  private faults(): number {
    return this.impaired() + this.corruption.maxPerObject();
  }

  /** Sometimes a crash, a clean leave or a restart strikes in the middle of the operation. */
  private maybeStrikeDuring(): void {
    const { random, hosts, context, profile } = this.deps;
    if (random.int(20) !== 0) return;
    const kind = random.int(3);
    const delayMs = random.float() * 20;
    if (kind === 2 && profile.midStepMembership) {
      const host = this.pick(hosts.down());
      if (!host) return;
      context.scheduleFault(delayMs, () => {
        if (host.status !== 'down') return;
        context.trace(`  restart ${host.name} mid-step`);
        void hosts.start(host);
      });
      return;
    }
    const leave = kind === 1;
    if (leave ? !profile.midStepMembership : !profile.midStepCrashes) return;
    if (this.faults() >= this.deps.downMax) return;
    const victim = this.pick(hosts.up());
    if (!victim) return;
    const powerLoss = !leave && profile.powerLoss && random.int(2) === 0;
    context.scheduleFault(delayMs, () => {
      if (!victim.up || this.faults() >= this.deps.downMax) return;
      context.trace(`  ${leave ? 'leave' : 'crash'} ${victim.name} mid-step${powerLoss ? ' (power loss)' : ''}`);
      if (leave) void hosts.leave(victim);
      else hosts.crash(victim, powerLoss);
    });
  }

  private crash(): string {
    if (this.faults() >= this.deps.downMax) return 'crash: enough is down';
    const victim = this.pick(this.deps.hosts.up());
    if (!victim) return 'crash: nobody up';
    const powerLoss = this.deps.profile.powerLoss && this.deps.random.int(2) === 0;
    this.deps.hosts.crash(victim, powerLoss);
    return `crash ${victim.name}${powerLoss ? ' (power loss)' : ''}`;
  }

  /**
   * Every host at once, then all back: a power cut of the whole cluster (unflushed writes may
   * be lost, old or new: the model widens to that) or kill -9 of every sheep (nothing
   * acknowledged may be lost).
   */
  private async blackout(): Promise<string> {
    const { hosts, network, model, context, profile, random } = this.deps;
    const powerLoss = profile.powerLoss && random.int(2) === 0;
    network.heal();
    this.faultyDisks.clear();
    this.cutOff.clear();
    for (const host of hosts.all) hosts.crash(host, powerLoss);
    if (powerLoss) {
      model.powerLossOfAll();
      // A table entry may have gone back to unallocated: the next write may allocate it again.
      for (const name of model.vdis.keys()) context.volumes.tableChanged(name);
    }
    const failed: string[] = [];
    for (const host of hosts.down()) if (!(await context.settleStart(host))) failed.push(`${host.name}: ${host.startError}`);
    return `blackout${powerLoss ? ' (power loss)' : ' (kill -9)'} of every host${failed.length > 0 ? `; failed to start ${failed.join(', ')}` : ''}`;
  }

  private async restart(): Promise<string> {
    const host = this.pick(this.deps.hosts.down());
    if (!host) return 'restart: nobody down';
    const joined = await this.deps.context.settleStart(host);
    return `restart ${host.name}: ${joined ? 'joined' : `failed: ${host.startError}`}`;
  }

  private async leave(): Promise<string> {
    if (this.faults() >= this.deps.downMax) return 'leave: enough is down';
    const host = this.pick(this.deps.hosts.up());
    if (!host) return 'leave: nobody up';
    await this.deps.context.settleLeave(host);
    return `leave ${host.name}`;
  }

  private async join(): Promise<string> {
    const { hosts } = this.deps;
    if (hosts.all.length >= this.deps.hostsMax) return 'join: enough hosts';
    const host = hosts.add();
    const joined = await this.deps.context.settleStart(host);
    return `join new host ${host.name}: ${joined ? 'joined' : `failed: ${host.startError}`}`;
  }

  private partition(): string {
    const { network, hosts } = this.deps;
    if (network.partitioned || this.faults() >= this.deps.downMax) return 'partition: enough is impaired';
    const island = this.pick(hosts.up());
    if (!island) return 'partition: nobody up';
    // Cut off from the others, it also loses its coordinator session (ZooKeeper's view; the
    // local driver's shared directory cannot be partitioned), so the others see it leave.
    network.isolate(island.name);
    hosts.expel(island);
    this.cutOff.add(island);
    return `partition ${island.name} | rest`;
  }

  /**
   * The network heals; a sheep whose disk failed is restarted, as an operator would (its journal
   * would go on by itself after a failed append, but its state is best checked after a restart).
   */
  async heal(): Promise<string> {
    this.deps.network.heal();
    const restarted: string[] = [];
    // A sheep that lost its session or its disk is restarted by its supervisor.
    for (const host of new Set([...this.faultyDisks, ...this.cutOff])) {
      this.faultyDisks.delete(host);
      this.cutOff.delete(host);
      if (!host.up) continue;
      this.deps.hosts.crash(host, false);
      await this.deps.context.settleStart(host);
      restarted.push(host.name);
    }
    return `heal network${restarted.length > 0 ? `, restart ${restarted.join(',')}` : ''}`;
  }

  private diskFault(): string {
    const host = this.pick(this.deps.hosts.up().filter((h) => !this.faultyDisks.has(h)));
    if (!host || this.faultyDisks.size >= this.deps.downMax || this.faults() >= this.deps.downMax) return 'diskFault: none';
    const code = this.deps.random.int(2) === 0 ? 'EIO' : 'ENOSPC';
    host.current?.disk.addRule({ operations: ['write', 'datasync', 'rename'], pathIncludes: '/obj/', probability: 0.2, code });
    this.faultyDisks.add(host);
    return `diskFault ${host.name} ${code}`;
  }

  /**
   * One copy on one live host is damaged at rest (corruption.ts), of an object that keeps a
   * good copy on a host that is up, reachable and not failing writes.
   */
  private async corrupt(): Promise<string> {
    const host = this.pick(this.deps.hosts.up().filter((h) => !this.cutOff.has(h) && !this.faultyDisks.has(h)));
    if (!host) return 'corrupt: nobody to damage';
    const perObjectMax = this.deps.downMax - this.impaired() - this.faultyDisks.size;
    if (perObjectMax <= 0) return 'corrupt: enough is impaired';
    const sheep = host.sheep()!;
    return this.corruption.strike(host, perObjectMax, (oid) => sheep.objectFile(oid).contentBytes);
  }
}
