// The reference model: what every VDI and snapshot must read as, given the operations that were
// acknowledged. Data is written in aligned 4 KiB units, each carrying the id of the write that
// made it (a pattern derived from the id), so a read tells exactly which write it returned.
// An operation that failed may or may not have happened: a failed write leaves its unit with
// more than one allowed content until the next acknowledged write; a failed VDI operation makes
// the VDI uncertain, and the workload stops using and checking it.
// Durability (docs/durability.md): a flush makes what a unit may read as then its floor; a power
// loss of every host at once may take a unit back to that floor, or to any write since.

export const unitBytes = 4096;

/** The pattern's generator: each 32-bit word of a unit from the one before. */
function nextWord(x: number): number {
  return (Math.imul(x, 1664525) + 1013904223) >>> 0;
}

/** The 4 KiB a write puts in its unit: its id, then bytes derived from it. 0 is "never written". */
export function unitPattern(writeId: number): Buffer {
  const data = Buffer.alloc(unitBytes);
  if (writeId === 0) return data;
  let x = writeId >>> 0;
  for (let at = 0; at < unitBytes; at += 4) {
    x = nextWord(x);
    data.writeUInt32LE(x, at);
  }
  data.writeUInt32LE(writeId >>> 0, 0);
  return data;
}

const zeroUnit = Buffer.alloc(unitBytes);

/** The write id a unit holds: 0 for zeros, -1 for bytes that no write of this run produced. */
export function decodeUnit(data: Buffer): number {
  if (data.equals(zeroUnit)) return 0;
  const id = data.readUInt32LE(0);
  return isPatternOf(data, id) ? id : -1;
}

/** `data.equals(unitPattern(id))`, word by word, without building the pattern (checked on every read). */
function isPatternOf(data: Buffer, id: number): boolean {
  if (id === 0 || data.length !== unitBytes) return false;
  let x = nextWord(id); // the first word is the id itself
  for (let at = 4; at < unitBytes; at += 4) {
    x = nextWord(x);
    if (data.readUInt32LE(at) !== x) return false;
  }
  return true;
}

/** What one unit may read as. */
export interface UnitState {
  /** The last acknowledged write (0: none). */
  acked: number;
  /** Writes that failed after `acked`: each may have landed. */
  maybe: number[];
  /** What the unit could read as at the last flush of its VDI: survives any power loss. */
  flushed: number[];
  /** Every write to the unit since that flush, acknowledged or not. */
  unflushed: number[];
}

const unwritten: UnitState = { acked: 0, maybe: [], flushed: [0], unflushed: [] };

export function allowed(unit: UnitState): number[] {
  return [unit.acked, ...unit.maybe];
}

export type Units = Map<number, UnitState>;

function copyUnits(units: Units): Units {
  return new Map([...units].map(([index, unit]) => [index, { ...unit, maybe: [...unit.maybe], flushed: [...unit.flushed], unflushed: [...unit.unflushed] }]));
}

export interface SnapshotModel {
  tag: string;
  units: Units;
}

export interface VdiModel {
  name: string;
  sizeBytes: number;
  units: Units;
  snapshots: Map<string, SnapshotModel>;
  /** A failed operation may have changed it in ways the model cannot know: not checked. */
  certain: boolean;
  /**
   * Some operation on it failed: objects it wrote may be left unreferenced (data is written
   * before the table entry that points at it, by design), so they are not called orphans.
   */
  hadFailure: boolean;
  /** The working VDI was deleted (its snapshots may live on). */
  deleted: boolean;
}

export type Verdict = { ok: true } | { ok: false; why: string };

export class Model {
  readonly vdis = new Map<string, VdiModel>();
  /** Some VDI operation failed (what it left behind may be unreachable). */
  vdiOperationFailed = false;
  private nextWriteId = 1;
  /** Which unit each write went to, to tell a stale read from foreign bytes. */
  private readonly writes = new Map<number, { vdi: string; unit: number }>();

  newWriteId(vdi: string, unit: number): number {
    const id = this.nextWriteId++;
    this.writes.set(id, { vdi, unit });
    return id;
  }

  createVdi(name: string, sizeBytes: number): void {
    this.vdis.set(name, { name, sizeBytes, units: new Map(), snapshots: new Map(), certain: true, hadFailure: false, deleted: false });
  }

  /** A VDI operation failed: whatever it did or did not do, stop relying on this VDI. */
  uncertain(name: string): void {
    const vdi = this.vdis.get(name);
    if (vdi) {
      vdi.certain = false;
      vdi.hadFailure = true;
    }
  }

  unit(vdi: VdiModel, index: number, tag?: string): UnitState {
    const units = tag === undefined ? vdi.units : vdi.snapshots.get(tag)?.units;
    return units?.get(index) ?? unwritten;
  }

  writeAcked(vdi: VdiModel, index: number, writeId: number): void {
    const unit = this.unit(vdi, index);
    vdi.units.set(index, { acked: writeId, maybe: [], flushed: unit.flushed, unflushed: [...unit.unflushed, writeId] });
  }

  writeFailed(vdi: VdiModel, index: number, writeId: number): void {
    vdi.hadFailure = true;
    const unit = this.unit(vdi, index);
    vdi.units.set(index, { ...unit, maybe: [...unit.maybe, writeId], unflushed: [...unit.unflushed, writeId] });
  }

  /** A flush of the VDI was acknowledged: what each unit may read as now survives a power loss. */
  flushed(vdi: VdiModel): void {
    for (const [index, unit] of vdi.units) vdi.units.set(index, { ...unit, flushed: allowed(unit), unflushed: [] });
  }

  /**
   * Every host lost power at once: each unit of every VDI and snapshot may read as what it could
   * at its last flush, or as any write since (lost, old or new, but never anything else).
   */
  powerLossOfAll(): void {
    for (const vdi of this.vdis.values()) {
      // A table entry may survive while the object it points at does not, or the other way round.
      vdi.hadFailure = true;
      for (const units of [vdi.units, ...[...vdi.snapshots.values()].map((snapshot) => snapshot.units)]) {
        for (const [index, unit] of units) {
          const choices = [...new Set([...unit.flushed, ...unit.unflushed, ...allowed(unit)])];
          units.set(index, { acked: choices[0]!, maybe: choices.slice(1), flushed: unit.flushed, unflushed: unit.unflushed });
        }
      }
    }
  }

  snapshot(vdi: VdiModel, tag: string): void {
    this.flushed(vdi); // the snapshot flushed the VDI first (vdi-service.ts)
    vdi.snapshots.set(tag, { tag, units: copyUnits(vdi.units) });
  }

  clone(source: VdiModel, tag: string, target: string): void {
    const snapshot = source.snapshots.get(tag);
    if (!snapshot) throw new Error(`model: no snapshot ${source.name}:${tag}`);
    this.createVdi(target, source.sizeBytes);
    const clone = this.vdis.get(target)!;
    clone.units = copyUnits(snapshot.units);
    // The clone shares the source's objects: what the source leaked is reachable through it.
    clone.hadFailure = source.hadFailure;
  }

  rollback(vdi: VdiModel, tag: string): void {
    const snapshot = vdi.snapshots.get(tag);
    if (!snapshot) throw new Error(`model: no snapshot ${vdi.name}:${tag}`);
    vdi.units = copyUnits(snapshot.units);
  }

  /**
   * Checks what a read of one unit returned. After a failed write, reads may return either
   * content until the next acknowledged write (the replicas it reached and those it did not may
   * differ until recovery compares them); the convergence check then demands equal copies.
   */
  checkRead(vdi: VdiModel, index: number, tag: string | undefined, data: Buffer): Verdict {
    const unit = this.unit(vdi, index, tag);
    const got = decodeUnit(data);
    const where = `${vdi.name}${tag === undefined ? '' : `:${tag}`} unit ${index}`;
    if (allowed(unit).includes(got)) return { ok: true };
    if (got === -1) return { ok: false, why: `${where}: bytes no write produced (torn or corrupt)` };
    const origin = this.writes.get(got);
    const expected = allowed(unit).join(' or ');
    if (origin && origin.vdi === vdi.name && origin.unit === index && got < unit.acked) {
      return { ok: false, why: `${where}: stale read of write #${got}, acknowledged #${expected}` };
    }
    if (got === 0) return { ok: false, why: `${where}: zeros, acknowledged write #${expected}` };
    return {
      ok: false,
      why: `${where}: write #${got} (made for ${origin ? `${origin.vdi} unit ${origin.unit}` : 'nothing'}), expected #${expected}`,
    };
  }

  /** VDIs (and their snapshots) the checker can hold to account. */
  certainVdis(): VdiModel[] {
    return [...this.vdis.values()].filter((vdi) => vdi.certain);
  }
}
