// One simulated run: K sheep in this process over the simulated network, memory disks and the
// simulated cluster driver, all on one scheduler and one seed; a workload of N steps with the
// invariants checked after each, and a full convergence check every `convergeEvery` steps and
// at the end. The result carries the trace hash: the same seed gives the same hash.
import { SdError } from '../engine/errors.js';
import type { Oid } from '../engine/oid.js';
import { seededRandom } from '../io/random.js';
import type { Timer } from '../io/clock.js';
import { checkConverged, checkUnitOn, InvariantViolation, settled } from './check.js';
import { copyProblem } from './corruption.js';
import { SimCluster } from './driver.js';
import { EpochOracle } from './epoch-oracle.js';
import { Hosts } from './hosts.js';
import { Model } from './model.js';
import { SimNetwork, type NetworkFaults } from './network.js';
import type { SheepFactory, SimLog } from './node.js';
import { Scheduler } from './scheduler.js';
import { Trace } from './trace.js';
import { faultProfiles, objectSizeShift, Workload, type FaultProfile, type WorkloadContext } from './workload.js';
import { Volumes } from './volumes.js';

/** An operation that has not settled after this long (simulated) is a hang: a failure. */
export const simOperationLimitMs = 30 * 60_000;
/** After faults heal, the cluster must settle within this (simulated). */
export const simConvergeLimitMs = 5 * 60_000;
/** Idle time between steps, drawn up to this: background work (recovery, detection) runs. */
export const simThinkMsMax = 200;
/** Steps between two convergence checks (and one at the end). */
export const simConvergeEveryDefault = 100;
/** After recovery ends everywhere, time for the removal of copies nodes no longer own. */
export const simStaleRemovalMs = 2000;
/** After the convergence's scrub, how long catch-up gets to rewrite damaged copies (simulated). */
export const simRepairLimitMs = 60_000;
const simRepairPollMs = 500;
/** VDIs made at boot, so that I/O starts at once. */
export const bootVdis = 2;

export const simNetworkFaults: NetworkFaults = {
  delayMs: { minMs: 0.05, maxMs: 3 },
  resetAfterChunk: 0.002,
  connectFailure: 0.005,
  connectHangMsMax: 3000,
};

export interface SimOptions {
  seed: number;
  steps: number;
  nodes: number;
  copies?: number;
  convergeEvery?: number;
  /** Which faults to inject; `full` when absent. */
  profile?: FaultProfile;
  factory: SheepFactory;
  /** Each sheep's log lines, as `time host level message {fields}` (for --log). */
  onLog?: (line: string) => void;
  /** Called with each trace line as it is recorded (for --verbose). */
  onTrace?: (line: string) => void;
}

export interface SimFailure {
  step: number;
  invariant: string;
  message: string;
  trace: string[];
}

export interface SimResult {
  seed: number;
  profile: string;
  convergeEvery: number;
  steps: number;
  ok: boolean;
  failure?: SimFailure;
  traceHash: string;
  simulatedMs: number;
  events: number;
  wallMs: number;
  convergences: number;
  leakedObjects: number;
  staleCopies: number;
  wallMsByAction: Record<string, number>;
}

const silentLog: SimLog = { debug() {}, info() {}, warn() {}, error() {} };

function lineLog(host: string, nowMs: () => number, write: (line: string) => void): SimLog {
  const at = (level: string) => (fields: object, message?: string) =>
    write(`${nowMs().toFixed(3)} ${host} ${level} ${message ?? ''} ${JSON.stringify(fields)}`);
  return { debug() {}, info: at('info'), warn: at('warn'), error: at('error') };
}

export async function simulate(options: SimOptions): Promise<SimResult> {
  const wallStartMs = performance.now();
  const run = new SimRun(options);
  let failure: SimFailure | undefined;
  try {
    await run.execute();
  } catch (error) {
    const invariant = error instanceof InvariantViolation ? error.invariant : 'no crash of the simulation';
    const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
    failure = { step: run.stepNumber, invariant, message, trace: run.trace.last() };
  }
  return {
    seed: options.seed,
    profile: (options.profile ?? faultProfiles.full!).name,
    convergeEvery: options.convergeEvery ?? simConvergeEveryDefault,
    steps: run.stepNumber,
    ok: failure === undefined,
    ...(failure ? { failure } : {}),
    traceHash: run.trace.hash,
    simulatedMs: run.scheduler.nowMs() - run.startMs,
    events: run.scheduler.firedEvents,
    wallMs: performance.now() - wallStartMs,
    convergences: run.convergences,
    leakedObjects: run.leakedObjects,
    staleCopies: run.staleCopies,
    wallMsByAction: Object.fromEntries([...run.wallMsByAction].map(([k, v]) => [k, Math.round(v)])),
  };
}

class SimRun {
  readonly scheduler = new Scheduler();
  /** Checks on the wire that no peer request is served by a receiver on a newer epoch. */
  private readonly epochOracle = new EpochOracle((name) => this.hosts.all.find((host) => host.name === name)?.sheep()?.epoch());
  /** Mid-step faults not yet fired (cancelled when a convergence begins). */
  private readonly pendingFaults = new Set<Timer>();
  readonly startMs = this.scheduler.nowMs();
  readonly trace: Trace;
  readonly model = new Model();
  readonly volumes = new Volumes(2 ** objectSizeShift);
  readonly network: SimNetwork;
  readonly cluster: SimCluster;
  readonly hosts: Hosts;
  readonly workload: Workload;
  readonly copies: number;
  readonly profile: FaultProfile;
  stepNumber = 0;
  convergences = 0;
  /** Where the wall time went, by action (and 'converge', 'think', 'sample'). */
  readonly wallMsByAction = new Map<string, number>();

  private async timed<T>(what: string, work: () => Promise<T>): Promise<T> {
    const startedMs = performance.now();
    try {
      return await work();
    } finally {
      this.wallMsByAction.set(what, (this.wallMsByAction.get(what) ?? 0) + performance.now() - startedMs);
    }
  }

  /** Objects of VDIs whose delete or rollback failed, left behind at the last convergence. */
  leakedObjects = 0;
  /** Copies outside their placement at the last convergence (counted under the ci profile). */
  staleCopies = 0;
  private readonly random;

  constructor(private readonly options: SimOptions) {
    const seed = options.seed >>> 0;
    this.random = seededRandom(seed);
    this.trace = new Trace(() => this.scheduler.nowMs() - this.startMs);
    const profile = options.profile ?? faultProfiles.full!;
    const faults = profile.networkResets ? simNetworkFaults : { ...simNetworkFaults, resetAfterChunk: 0, connectFailure: 0 };
    this.network = new SimNetwork(this.scheduler, seededRandom(seed ^ 0x6e657477), faults);
    this.cluster = new SimCluster(this.scheduler, seededRandom(seed ^ 0x636c7573));
    this.network.observer = this.epochOracle;
    const onLog = options.onLog;
    const logFor = onLog ? (host: string) => lineLog(host, () => this.scheduler.nowMs() - this.startMs, onLog) : () => silentLog;
    this.hosts = new Hosts(this.scheduler, this.network, this.cluster, seed, options.factory, logFor);
    this.copies = options.copies ?? Math.min(3, options.nodes);
    this.profile = profile;
    const context = this.context();
    this.workload = new Workload({
      profile: this.profile,
      random: seededRandom(seed ^ 0x776f726b),
      hosts: this.hosts,
      network: this.network,
      model: this.model,
      context,
      hostsMax: options.nodes + 1,
      copies: this.copies,
      downMax: Math.max(0, this.copies - 1),
    });
  }

  record(line: string): void {
    this.trace.record(line);
    this.options.onTrace?.(line);
  }

  async execute(): Promise<void> {
    await this.boot();
    const convergeEvery = this.options.convergeEvery ?? simConvergeEveryDefault;
    for (this.stepNumber = 1; this.stepNumber <= this.options.steps; this.stepNumber++) {
      const action = this.workload.drawAction();
      const startedMs = performance.now();
      const line = await this.workload.step(action);
      this.wallMsByAction.set(action, (this.wallMsByAction.get(action) ?? 0) + performance.now() - startedMs);
      this.record(`#${this.stepNumber} ${line}`);
      this.failOnSchedulerErrors();
      await this.timed('sample', () => this.checkSample());
      if (this.stepNumber % convergeEvery === 0) await this.timed('converge', () => this.converge());
      await this.timed('think', () => this.scheduler.runFor(this.random.float() * simThinkMsMax));
    }
    this.stepNumber = this.options.steps;
    await this.converge();
  }

  private async boot(): Promise<void> {
    const first = Array.from({ length: this.options.nodes }, () => this.hosts.add());
    const joined = await this.waitAll(first.map((host) => this.hosts.start(host)));
    if (!joined.every(Boolean)) throw new SdError('INTERNAL', 'a node did not join at boot');
    const sheep = first[0]!.sheep()!;
    await this.bounded(sheep.format(this.copies, objectSizeShift), 'format');
    await this.settleCluster();
    this.record(`boot ${this.options.nodes} nodes, copies ${this.copies}`);
    for (let i = 0; i < bootVdis; i++) this.record(`#0 ${await this.workload.step('create')}`);
  }

  /** Runs the scheduler until every promise settles (bounded). */
  private async waitAll<T>(promises: Array<Promise<T>>): Promise<T[]> {
    return this.bounded(Promise.all(promises), 'boot');
  }

  private async bounded<T>(promise: Promise<T>, what: string): Promise<T> {
    const outcome = await this.scheduler.settle(promise, simOperationLimitMs);
    if (outcome.done) return outcome.value;
    if ('error' in outcome) throw outcome.error;
    throw new InvariantViolation('every wait is bounded', `${what} did not finish in ${simOperationLimitMs} ms`);
  }

  private context(): WorkloadContext {
    return {
      model: this.model,
      volumes: this.volumes,
      trace: (line) => this.record(line),
      pause: async (ms) => void (await this.scheduler.runFor(ms)),
      degraded: () =>
        this.network.partitioned ||
        this.workload.faultyDisks.size > 0 ||
        this.hosts.all.some((host) => !host.up) ||
        !settled(this.hosts.up()),
      settle: async (host, work) => {
        const incarnation = host.current;
        if (!incarnation || !host.up) throw new SdError('NETWORK', `${host.id} is down`);
        const died = incarnation.death.then(() => Promise.reject(new SdError('NETWORK', `${host.id} died`)));
        return this.bounded(Promise.race([work(), died]), `an operation through ${host.id}`);
      },
      scheduleFault: (delayMs, fault) => {
        const timer = this.scheduler.after(delayMs, () => {
          this.pendingFaults.delete(timer);
          fault();
        });
        this.pendingFaults.add(timer);
      },
      settleStart: (host) => this.bounded(this.hosts.start(host), `start of ${host.id}`),
      settleLeave: (host) => this.bounded(this.hosts.leave(host), `leave of ${host.id}`),
    };
  }

  private failOnSchedulerErrors(): void {
    const error = this.scheduler.errors[0];
    if (error !== undefined) throw error;
    const violation = this.epochOracle.violations[0];
    if (violation !== undefined) throw new InvariantViolation('no peer request served under an older epoch than the receiver\'s', violation);
  }

  /** After each step: one written unit of a random VDI or snapshot through one random live node. */
  private async checkSample(): Promise<void> {
    const vdi = this.workload.pick(this.model.certainVdis());
    const host = this.workload.pick(this.hosts.up());
    if (!vdi || !host) return;
    const tags = [...vdi.snapshots.keys()];
    const tag = vdi.deleted ? this.workload.pick(tags) : this.random.int(3) === 0 ? this.workload.pick(tags) : undefined;
    if (vdi.deleted && tag === undefined) return;
    const units = [...(tag === undefined ? vdi.units : vdi.snapshots.get(tag)!.units).keys()];
    const index = this.workload.pick(units);
    if (index === undefined) return;
    await checkUnitOn(this.context(), host, vdi, index, tag);
  }

  /**
   * Heals every fault, brings every host back, waits for the cluster to settle, and checks the
   * converged state and every unit of every VDI and snapshot through every node.
   */
  private async converge(): Promise<void> {
    this.convergences += 1;
    // A fault aimed at the middle of the last step must not strike the healed cluster.
    for (const timer of this.pendingFaults) timer.cancel();
    this.pendingFaults.clear();
    this.record(await this.workload.heal());
    for (const host of this.hosts.down()) {
      const joined = await this.bounded(this.hosts.start(host), `restart of ${host.id}`);
      this.record(`converge: restart ${host.name}: ${joined ? 'joined' : `failed: ${host.startError}`}`);
      if (!joined) throw new InvariantViolation('the cluster converges', `${host.id} could not rejoin after faults healed`);
    }
    await this.settleCluster();
    if (this.workload.corruption.struck) await this.timed('repair', () => this.repairDamage());
    const uncertainNames = new Set([...this.model.vdis.values()].filter((vdi) => vdi.hadFailure).map((vdi) => vdi.name));
    // A failed clone or snapshot may have written the table of a VID it never published; its
    // target is not in the model, so no VDI of the model says so.
    const vdiOperationFailed = this.model.vdiOperationFailed;
    const leaked = new Set<Oid>();
    const stale = new Set<string>();
    await checkConverged({
      hosts: this.hosts.up(),
      copies: this.copies,
      uncertainNames,
      unregisteredMayLeak: vdiOperationFailed,
      orphansFail: this.profile.orphansFail,
      onLeak: (oid) => leaked.add(oid),
      staleCopiesFail: this.profile.staleCopiesFail,
      onStale: (oid, nodeId) => stale.add(`${oid}@${nodeId}`),
      damaged: (oid, nodeId) => this.workload.corruption.isDamaged(oid, nodeId),
    });
    this.workload.corruption.reset();
    this.staleCopies = stale.size;
    this.leakedObjects = leaked.size;
    // Every node opens every VDI afresh: the owner tables are read again through every node.
    this.volumes.forgetAll();
    const context = this.context();
    for (const vdi of this.model.certainVdis()) {
      for (const tag of [undefined, ...vdi.snapshots.keys()]) {
        if (tag === undefined && vdi.deleted) continue;
        const units = tag === undefined ? vdi.units : vdi.snapshots.get(tag)!.units;
        for (const index of units.keys()) {
          for (const host of this.hosts.up()) await checkUnitOn(context, host, vdi, index, tag);
        }
      }
    }
    this.record(`converge: ok (${this.hosts.up().length} nodes, ${this.model.certainVdis().length} VDIs)`);
  }

  /**
   * Copies damaged at rest are found and repaired by the daemon itself: every node runs a scrub
   * pass (the primary of each object compares the replicas' verified sums and rewrites a damaged
   * copy; a damaged copy elsewhere goes to catch-up), then the catch-ups get their time. The
   * convergence check then finds any copy still damaged.
   */
  private async repairDamage(): Promise<void> {
    const hosts = this.hosts.up();
    const ran = await this.bounded(Promise.all(hosts.map((host) => host.sheep()!.scrub())), 'scrub');
    const skipped = hosts.filter((_, i) => !ran[i]).map((host) => host.name);
    const damaged = this.workload.corruption.damaged;
    const left = () =>
      damaged.filter((copy) => {
        const sheep = copy.host.sheep();
        const view = sheep && copy.host.disk.view(copy.path);
        return view !== undefined && copyProblem(view, copy.oid, sheep!.objectFile(copy.oid).contentBytes) !== undefined;
      }).length;
    const untilMs = this.scheduler.nowMs() + simRepairLimitMs;
    while (left() > 0 && this.scheduler.nowMs() < untilMs) await this.scheduler.runFor(simRepairPollMs);
    this.failOnSchedulerErrors();
    this.record(`converge: scrub${skipped.length > 0 ? ` (could not run on ${skipped.join(',')})` : ''}, ${damaged.length} damaged copies, ${left()} left`);
  }

  private async settleCluster(): Promise<void> {
    const hosts = this.hosts.up();
    await this.scheduler.run({ until: () => settled(hosts), untilMs: this.scheduler.nowMs() + simConvergeLimitMs });
    this.failOnSchedulerErrors();
    // Stale copies go once every member announced the end of its recovery: give that its time.
    if (settled(hosts)) await this.scheduler.runFor(simStaleRemovalMs);
    this.failOnSchedulerErrors();
    if (!settled(hosts)) {
      const states = hosts.map((host) => {
        const state = host.sheep()!.state();
        return `${host.name}: ${state.status} epoch ${state.epochs.at(-1)?.epoch ?? 0}${state.recovering ? ' recovering' : ''} members ${state.members.length}`;
      });
      throw new InvariantViolation('the cluster converges', `not settled in ${simConvergeLimitMs} ms: ${states.join('; ')}`);
    }
  }
}
