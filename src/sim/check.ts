// The invariants of DESIGN.md, checked against the model and the nodes' own state:
// - every acknowledged write reads back through every live node, and no read returns data older
//   than an acknowledged write (read checks, safety: always; a read may fail only while faults
//   are active);
// - a snapshot never changes (snapshots are read and checked like VDIs, their model is frozen);
// - once faults heal, the cluster converges: one epoch history everywhere, every object on every
//   node of its placement and nowhere else, every copy passing its block checksums (a copy the
//   simulator damaged is repaired), all copies equal, no object of a VDI nobody can reach.
import { asSdError } from '../engine/errors.js';
import { oidHex, oidVid, type Oid } from '../engine/oid.js';
import type { VdiEntry } from '../engine/vdi.js';
import { sameBytes, type FileView } from '../io/memory-disk.js';
import { copyProblem } from './corruption.js';
import type { SimHost } from './hosts.js';
import { unitBytes, type Model, type VdiModel } from './model.js';
import type { Volumes } from './volumes.js';

export class InvariantViolation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant}: ${detail}`);
    this.name = 'InvariantViolation';
  }
}

/** Reads a client tries before a failure counts, and its pause between them (simulated). */
export const readAttemptsMax = 3;
export const readRetryMs = 1000;

export interface ReadContext {
  /** Lets simulated time pass (a client's pause between retries). */
  pause(ms: number): Promise<void>;
  model: Model;
  volumes: Volumes;
  /** Runs an operation on simulated time with a bound; rejects if it does not settle. */
  settle<T>(host: SimHost, work: () => Promise<T>): Promise<T>;
  /** Faults are active: a read may fail (but never return wrong data). */
  degraded(): boolean;
  trace(line: string): void;
}

/** Reads one unit through one host and checks it; a failed read is tolerated only when degraded. */
export async function checkUnitOn(
  context: ReadContext,
  host: SimHost,
  vdi: VdiModel,
  index: number,
  tag: string | undefined,
): Promise<void> {
  const spec = `${vdi.name}${tag ? `:${tag}` : ''}`;
  let data: Buffer | undefined;
  // A client retries a failed read, as a VM's block layer does; only one that keeps failing
  // while nothing is faulty breaks the invariant.
  for (let attempt = 1; data === undefined; attempt++) {
    try {
      data = await context.settle(host, async () => (await context.volumes.get(host, vdi.name, tag)).read(index * unitBytes, unitBytes));
    } catch (error) {
      if (!host.up) return; // died meanwhile: nothing to say about it
      const code = errorCode(error);
      context.trace(`read ${spec}#${index} @${host.name} failed ${code}`);
      if (context.degraded() || !vdi.certain) return;
      if (attempt >= readAttemptsMax) {
        throw new InvariantViolation('acknowledged write readable through every live node', `${spec} unit ${index} through ${host.id}: ${code}`);
      }
      await context.pause(readRetryMs);
    }
  }
  if (!vdi.certain) return;
  const verdict = context.model.checkRead(vdi, index, tag, data);
  if (!verdict.ok) {
    const invariant = tag === undefined ? 'no read older than an acknowledged write' : 'a snapshot never changes';
    throw new InvariantViolation(invariant, `${verdict.why} (through ${host.id})`);
  }
}

export function errorCode(error: unknown): string {
  if (error instanceof InvariantViolation) throw error;
  try {
    return asSdError(error).code;
  } catch {
    throw error; // a TypeError or RangeError: a bug, not an operating error
  }
}

// ---- convergence ----

export interface ConvergenceInput {
  hosts: SimHost[];
  copies: number;
  /**
   * VDIs some operation of which failed: a failed write may leave a data object no table points
   * at, a failed delete or rollback the objects it did not reclaim (nothing retries a reclaim).
   * What they leave behind is counted as leaked space, not failed on.
   */
  uncertainNames: ReadonlySet<string>;
  /**
   * Some VDI operation failed: a snapshot, clone or rollback that copied a table and then failed
   * never published its VID, so objects of VIDs missing from the registry are leaks too.
   */
  unregisteredMayLeak: boolean;
  /** Every orphan is counted as leaked, none fails (the ci profile, see workload.ts). */
  orphansFail: boolean;
  /** Called with each object left behind by such a VDI. */
  onLeak(oid: Oid): void;
  /** A copy outside the placement fails the check; when false `onStale` counts it. */
  staleCopiesFail: boolean;
  onStale(oid: Oid, nodeId: string): void;
  /** The simulator damaged this copy at rest since the last convergence (corruption.ts). */
  damaged(oid: Oid, nodeId: string): boolean;
}

/** Whether the live nodes agree and have finished recovering (the convergence wait's goal). */
export function settled(hosts: readonly SimHost[]): boolean {
  const states = hosts.map((host) => host.sheep()?.state());
  if (states.some((state) => state === undefined)) return false;
  // The cheap part first: while any node still recovers (most of a wait) no history is compared.
  if (!states.every((state) => state!.status === 'running' && !state!.recovering)) return false;
  const first = JSON.stringify(states[0]!.epochs);
  const ids = hosts.map((host) => host.id).sort();
  return states.every(
    (state) =>
      state!.status === 'running' &&
      !state!.recovering &&
      JSON.stringify(state!.epochs) === first &&
      JSON.stringify([...state!.members].sort()) === JSON.stringify(ids),
  );
}

/** Checks the converged state; throws an InvariantViolation naming the first thing that is off. */
export async function checkConverged(input: ConvergenceInput): Promise<void> {
  const { hosts } = input;
  const sheep = hosts.map((host) => host.sheep()!);
  const states = sheep.map((s) => s.state());
  const registry = states[0]!.registry;
  const history = JSON.stringify(states[0]!.epochs);
  states.forEach((state, i) => {
    if (JSON.stringify(state.epochs) !== history) {
      throw new InvariantViolation('one epoch history everywhere', `${hosts[i]!.id} has ${JSON.stringify(state.epochs.map((e) => e.epoch))}`);
    }
  });
  const last = states[0]!.epochs.at(-1);
  const memberIds = hosts.map((host) => host.id).sort();
  if (!last || JSON.stringify([...last.nodes].sort()) !== JSON.stringify(memberIds)) {
    throw new InvariantViolation('one epoch history everywhere', `last epoch ${JSON.stringify(last)} is not the live members ${memberIds.join(',')}`);
  }
  const holders = new Map<Oid, string[]>();
  for (let i = 0; i < hosts.length; i++) {
    for (const oid of await sheep[i]!.objects()) {
      const list = holders.get(oid) ?? [];
      list.push(hosts[i]!.id);
      holders.set(oid, list);
    }
  }
  for (const [oid, ids] of holders) {
    const held = [...ids].sort();
    // What no live VDI reaches is an orphan or an explained leak, whatever its replica count.
    if (!reachable(registry, oidVid(oid))) {
      const entry = registry.find((e) => e.vid === oidVid(oid));
      const explained = (entry && input.uncertainNames.has(entry.name)) || (!entry && input.unregisteredMayLeak);
      if (explained || !input.orphansFail) {
        input.onLeak(oid);
        continue;
      }
      const what = entry ? `${entry.name}${entry.tag ? `:${entry.tag}` : ''} (deleted ${entry.deleted}, snapshot ${entry.snapshotSec !== 0})` : 'not in the registry';
      throw new InvariantViolation('no orphan objects', `${oidHex(oid)} on ${held.join(',')} belongs to VID ${oidVid(oid).toString(16)} ${what}, which no live VDI reaches`);
    }
    const placed = sheep[0]!.placement(oid).sort();
    const where = `${oidHex(oid)} placed on ${placed.join(',')} but held by ${held.join(',')}`;
    if (placed.some((id) => !held.includes(id))) throw new InvariantViolation('full replica count', where);
    for (const id of held.filter((id) => !placed.includes(id))) {
      if (input.staleCopiesFail) throw new InvariantViolation('no stale copies', where);
      input.onStale(oid, id);
    }
    // Compared as a read sees them, block by block on the memory disks: holes, and blocks a
    // copy shares with another, cost nothing (most of a 4 MiB table object is holes).
    let first: { view: FileView; sizeBytes: number } | undefined;
    for (const id of placed) {
      const index = hosts.findIndex((host) => host.id === id);
      const file = sheep[index]!.objectFile(oid);
      const view = hosts[index]!.disk.view(file.path);
      if (view === undefined) throw new Error(`${id} lists ${oidHex(oid)} but holds no file ${file.path}: the checker's object path is out of date`);
      // Checked by the store's layout, off the disk: nothing the daemon says about it counts.
      const problem = copyProblem(view, oid, file.contentBytes);
      if (problem !== undefined) {
        const invariant = input.damaged(oid, id) ? 'every corrupt copy is repaired' : 'every stored copy passes its checksums';
        throw new InvariantViolation(invariant, `${oidHex(oid)} on ${id}: ${problem}`);
      }
      const copy = { view, sizeBytes: file.sizeBytes };
      if (first === undefined) first = copy;
      else if (copy.sizeBytes !== first.sizeBytes || !sameBytes(copy.view, first.view, copy.sizeBytes)) {
        throw new InvariantViolation('copies converge', `${oidHex(oid)} differs between ${placed.join(',')}`);
      }
    }
  }
}

/** A VID is reachable if it is live, or an ancestor of a live VDI (its objects are shared). */
function reachable(registry: readonly VdiEntry[], vid: number): boolean {
  const byVid = new Map(registry.map((entry) => [entry.vid, entry]));
  for (const entry of registry) {
    if (entry.deleted) continue;
    for (let at: VdiEntry | undefined = entry; at; at = at.parentVid ? byVid.get(at.parentVid) : undefined) {
      if (at.vid === vid) return true;
    }
  }
  return false;
}
