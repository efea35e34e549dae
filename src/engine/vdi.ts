// The VDI registry: every VDI's header, replicated on every sheep through the cluster driver's
// ordered notifies. Pure: operations are planned here from the current state and applied as
// `VdiEntry` puts, so every node reaches the same state in the same order.
import { SdError } from './errors.js';
import { nameToVid } from './hash.js';
import {
  blockSizeShiftMax,
  blockSizeShiftMin,
  copiesMax,
  hyperObjectsMax,
  normalObjectsMax,
  snapshotTagBytesMax,
  tableEntriesPerChunk,
  vdiNameBytesMax,
  vidCount,
} from './limits.js';
import type { Json } from './json.js';
import { isInodeOid, oidIndex, type Oid } from './oid.js';
import type { AttrChange } from './vdi-attrs.js';

export interface VdiEntry {
  vid: number;
  name: string;
  /** '' unless a snapshot with a tag. */
  tag: string;
  snapId: number;
  /** 0 for a VDI without parent. */
  parentVid: number;
  createdSec: number;
  /** 0 for a writable VDI; the freeze time for a snapshot. */
  snapshotSec: number;
  sizeBytes: number;
  copies: number;
  /** The original's copy_policy: 0 or absent replicated, else erasure coded D:P (ec-layout.ts). */
  copyPolicy?: number;
  blockSizeShift: number;
  hyper: boolean;
  deleted: boolean;
}

export type VdiKind = 'snapshot' | 'clone' | 'working';

export function vdiKind(entry: VdiEntry): VdiKind {
  if (entry.snapshotSec !== 0) return 'snapshot';
  // The original's rule: a writable VDI with a parent and snap id 1 was made by clone.
  if (entry.parentVid !== 0 && entry.snapId === 1) return 'clone';
  return 'working';
}

export function objectCount(entry: VdiEntry): number {
  return Math.ceil(entry.sizeBytes / 2 ** entry.blockSizeShift);
}

/**
 * Entries of owner-table chunk `chunk` that the VDI's size reaches; the rest are 0 for good (a
 * VDI never shrinks), so a reader need not fetch them: a small VDI's 4 MiB chunk is mostly these.
 */
export function tableEntriesInChunk(entry: Pick<VdiEntry, 'sizeBytes' | 'blockSizeShift'>, chunk: number): number {
  const objects = Math.ceil(entry.sizeBytes / 2 ** entry.blockSizeShift);
  return Math.max(0, Math.min(tableEntriesPerChunk, objects - chunk * tableEntriesPerChunk));
}

/**
 * Refuses an object the VDI does not have: a data object past its last one, or an owner-table
 * chunk past the chunks its size needs (SdError OUT_OF_RANGE).
 */
export function checkObjectInVdi(entry: VdiEntry, oid: Oid): void {
  const objects = objectCount(entry);
  const index = oidIndex(oid);
  if (isInodeOid(oid)) {
    const chunks = Math.max(1, Math.ceil(objects / tableEntriesPerChunk));
    if (index >= chunks) throw new SdError('OUT_OF_RANGE', `owner-table chunk ${index} is past the end of VDI ${entry.name} (${chunks} chunks)`);
  } else if (index >= objects) {
    throw new SdError('OUT_OF_RANGE', `object ${index} is past the end of VDI ${entry.name} (${objects} objects)`);
  }
}

export function maxSizeBytes(hyper: boolean, blockSizeShift: number): number {
  return (hyper ? hyperObjectsMax : normalObjectsMax) * 2 ** blockSizeShift;
}

/** A snapshot is named by tag or by snap id (digits), as `NAME:TAG` / `-s` accept either. */
export type SnapshotRef = { tag: string } | { snapId: number } | undefined;

export function parseSnapshotRef(text: string | undefined): SnapshotRef {
  if (text === undefined || text === '') return undefined;
  if (/^\d+$/.test(text)) return { snapId: Number(text) };
  return { tag: text };
}

/** `NAME`, `NAME:TAG` or `NAME:SNAPID`: the export spec NBD and sheepfs accept. */
export function splitSpec(spec: string): { name: string; ref: SnapshotRef } {
  const colon = spec.lastIndexOf(':');
  if (colon < 0) return { name: spec, ref: undefined };
  return { name: spec.slice(0, colon), ref: parseSnapshotRef(spec.slice(colon + 1)) };
}

export function snapshotRefText(ref: SnapshotRef): { id: number; tag: string } {
  if (ref === undefined) return { id: 0, tag: '' };
  return 'tag' in ref ? { id: 0, tag: ref.tag } : { id: ref.snapId, tag: '' };
}

export function checkName(name: string): void {
  const bytes = Buffer.byteLength(name);
  if (bytes === 0) throw new SdError('INVALID_ARGUMENT', 'VDI name must not be empty');
  if (bytes > vdiNameBytesMax) {
    throw new SdError('INVALID_ARGUMENT', `VDI name is ${bytes} bytes, the limit is ${vdiNameBytesMax}`);
  }
  if (/[\0\n/:]/.test(name)) {
    throw new SdError('INVALID_ARGUMENT', `VDI name '${name}' contains '/', ':', NUL or newline`);
  }
}

export function checkTag(tag: string): void {
  const bytes = Buffer.byteLength(tag);
  if (bytes > snapshotTagBytesMax) {
    throw new SdError('INVALID_ARGUMENT', `snapshot tag is ${bytes} bytes, the limit is ${snapshotTagBytesMax}`);
  }
  if (/^\d+$/.test(tag)) throw new SdError('INVALID_ARGUMENT', `snapshot tag '${tag}' must not be all digits`);
  if (/[\0\n/: ]/.test(tag)) throw new SdError('INVALID_ARGUMENT', `snapshot tag '${tag}' contains a bad character`);
}

export function checkCopies(copies: number): void {
  if (!Number.isInteger(copies) || copies < 1 || copies > copiesMax) {
    throw new SdError('INVALID_ARGUMENT', `Invalid copies number, must be an integer between 1 and ${copiesMax}`);
  }
}

export function checkSize(sizeBytes: number, hyper: boolean, blockSizeShift: number): void {
  if (!Number.isInteger(sizeBytes) || sizeBytes <= 0) {
    throw new SdError('INVALID_ARGUMENT', 'VDI size must be larger than 0');
  }
  const max = maxSizeBytes(hyper, blockSizeShift);
  if (sizeBytes > max) {
    const hint = hyper ? '' : ' (use -y for a hyper volume up to 16 PB)';
    throw new SdError('TOO_LARGE', `VDI size is too large: ${sizeBytes} bytes, max ${max}${hint}`);
  }
}

export class VdiRegistry {
  private readonly byVid = new Map<number, VdiEntry>();
  /** Attributes by VDI name, key → base64 value (vdi-attrs.ts); part of the registry's state. */
  private readonly attrsByName = new Map<string, Map<string, string>>();
  /** Count of applied puts: a node that missed changes has a lower version. */
  version = 0;

  static fromJson(json: Json): VdiRegistry {
    const registry = new VdiRegistry();
    const data = json as { version?: number; entries?: VdiEntry[]; attrs?: Record<string, Record<string, string>> } | null;
    for (const entry of data?.entries ?? []) registry.byVid.set(entry.vid, { ...entry });
    for (const [name, attrs] of Object.entries(data?.attrs ?? {})) registry.attrsByName.set(name, new Map(Object.entries(attrs)));
    registry.version = data?.version ?? 0;
    return registry;
  }

  toJson(): Json {
    const json: Record<string, Json> = { version: this.version, entries: this.all() as unknown as Json[] };
    // Only when there are any: a registry without attributes stays byte-identical to before.
    if (this.attrsByName.size > 0) {
      const names = [...this.attrsByName.keys()].sort();
      json['attrs'] = Object.fromEntries(names.map((name) => [name, Object.fromEntries([...this.attrsByName.get(name)!].sort())]));
    }
    return json;
  }

  /** The attributes of a VDI name (key → base64 value), if it has any. */
  attrs(name: string): ReadonlyMap<string, string> | undefined {
    return this.attrsByName.get(name);
  }

  /** One attribute change, counted as a registry version like a put. */
  applyAttr(change: AttrChange): void {
    const attrs = this.attrsByName.get(change.name) ?? new Map<string, string>();
    if (change.value === null) attrs.delete(change.key);
    else attrs.set(change.key, change.value);
    if (attrs.size > 0) this.attrsByName.set(change.name, attrs);
    else this.attrsByName.delete(change.name);
    this.version += 1;
  }

  get(vid: number): VdiEntry | undefined {
    return this.byVid.get(vid);
  }

  /** Every entry, deleted too, in VID order (the order `vdi list` prints). */
  all(): VdiEntry[] {
    return [...this.byVid.values()].sort((a, b) => a.vid - b.vid);
  }

  live(): VdiEntry[] {
    return this.all().filter((entry) => !entry.deleted);
  }

  apply(entries: readonly VdiEntry[]): void {
    for (const entry of entries) this.byVid.set(entry.vid, { ...entry });
    // A name none of whose VDIs is left takes its attributes with it.
    for (const entry of entries) {
      if (entry.deleted && this.attrsByName.has(entry.name) && !this.live().some((e) => e.name === entry.name)) this.attrsByName.delete(entry.name);
    }
    this.version += 1;
  }

  /** `cluster format -R`: these VIDs are free again (sheep/vdi-recycle.ts). Counted with the put it rides on. */
  free(vids: readonly number[]): void {
    for (const vid of vids) this.byVid.delete(vid);
  }

  working(name: string): VdiEntry | undefined {
    return this.liveNamed(name).find((e) => e.snapshotSec === 0);
  }

  /** The live entries of one name in VID order: only they are sorted (a lookup per VDI open). */
  private liveNamed(name: string): VdiEntry[] {
    const named: VdiEntry[] = [];
    for (const entry of this.byVid.values()) if (entry.name === name && !entry.deleted) named.push(entry);
    return named.sort((a, b) => a.vid - b.vid);
  }

  /** The VDI a request names: the working one, or a snapshot by tag or id. */
  lookup(name: string, ref: SnapshotRef): VdiEntry {
    const named = this.liveNamed(name);
    if (named.length === 0) throw new SdError('NO_VDI', 'No VDI found');
    if (ref === undefined) {
      const working = named.find((e) => e.snapshotSec === 0);
      if (!working) throw new SdError('NO_VDI', 'No VDI found');
      return working;
    }
    const found = named.find((e) =>
      e.snapshotSec !== 0 && ('tag' in ref ? e.tag === ref.tag : e.snapId === ref.snapId),
    );
    if (!found) throw new SdError('NO_TAG', 'Failed to find requested tag');
    return found;
  }

  /** The first free VID at or after the name's hash, wrapping. VIDs are reused only once freed (-R). */
  allocateVid(name: string): number {
    const start = nameToVid(name);
    for (let step = 0; step < vidCount; step++) {
      const vid = ((start - 1 + step) % (vidCount - 1)) + 1;
      if (!this.byVid.has(vid)) return vid;
    }
    throw new SdError('NO_SPACE', 'no free VDI id left');
  }

  nextSnapId(name: string): number {
    const ids = this.all().filter((e) => e.name === name).map((e) => e.snapId);
    return Math.max(0, ...ids) + 1;
  }
}

export interface CreateRequest {
  name: string;
  sizeBytes: number;
  copies: number;
  copyPolicy?: number | undefined;
  hyper: boolean;
  blockSizeShift: number;
  nowSec: number;
}

export function planCreate(registry: VdiRegistry, request: CreateRequest): VdiEntry {
  checkName(request.name);
  checkCopies(request.copies);
  if (request.blockSizeShift < blockSizeShiftMin || request.blockSizeShift > blockSizeShiftMax) {
    throw new SdError('INVALID_ARGUMENT', `block size shift must be ${blockSizeShiftMin}..${blockSizeShiftMax}`);
  }
  checkSize(request.sizeBytes, request.hyper, request.blockSizeShift);
  if (registry.live().some((e) => e.name === request.name)) {
    throw new SdError('VDI_EXISTS', 'VDI exists already');
  }
  return {
    vid: registry.allocateVid(request.name),
    name: request.name,
    tag: '',
    snapId: 1,
    parentVid: 0,
    createdSec: request.nowSec,
    snapshotSec: 0,
    sizeBytes: request.sizeBytes,
    copies: request.copies,
    ...(request.copyPolicy ? { copyPolicy: request.copyPolicy } : {}),
    blockSizeShift: request.blockSizeShift,
    hyper: request.hyper,
    deleted: false,
  };
}

/** Freezes the working VDI under its VID; the new working copy takes the next free VID. */
export function planSnapshot(
  registry: VdiRegistry,
  name: string,
  tag: string,
  nowSec: number,
): { frozen: VdiEntry; working: VdiEntry } {
  const current = registry.lookup(name, undefined);
  if (tag !== '') {
    checkTag(tag);
    if (registry.live().some((e) => e.name === name && e.snapshotSec !== 0 && e.tag === tag)) {
      throw new SdError('SNAPSHOT_EXISTS', 'snapshot tag exists');
    }
  }
  const frozen: VdiEntry = { ...current, tag, snapshotSec: nowSec };
  const working: VdiEntry = {
    ...current,
    vid: registry.allocateVid(name),
    tag: '',
    snapId: current.snapId + 1,
    parentVid: current.vid,
    createdSec: nowSec,
    snapshotSec: 0,
  };
  return { frozen, working };
}

export function planClone(
  registry: VdiRegistry,
  source: VdiEntry,
  target: string,
  nowSec: number,
  copies?: number,
): VdiEntry {
  if (source.snapshotSec === 0) throw new SdError('VDI_NOT_SNAPSHOT', 'Only snapshot VDIs can be cloned');
  checkName(target);
  if (registry.live().some((e) => e.name === target)) throw new SdError('VDI_EXISTS', 'VDI exists already');
  if (copies !== undefined) checkCopies(copies);
  return {
    ...source,
    vid: registry.allocateVid(target),
    name: target,
    tag: '',
    snapId: 1,
    parentVid: source.vid,
    createdSec: nowSec,
    snapshotSec: 0,
    copies: copies ?? source.copies,
    deleted: false,
  };
}

/** Rollback: the working VDI is replaced by a new one whose parent is the snapshot. */
export function planRollback(
  registry: VdiRegistry,
  name: string,
  snapshot: VdiEntry,
  nowSec: number,
): { retired: VdiEntry | undefined; working: VdiEntry } {
  const current = registry.working(name);
  const working: VdiEntry = {
    ...snapshot,
    vid: registry.allocateVid(name),
    tag: '',
    snapId: current?.snapId ?? registry.nextSnapId(name),
    parentVid: snapshot.vid,
    createdSec: nowSec,
    snapshotSec: 0,
    deleted: false,
  };
  return { retired: current ? { ...current, deleted: true } : undefined, working };
}

export function planResize(entry: VdiEntry, sizeBytes: number): VdiEntry {
  if (entry.snapshotSec !== 0) throw new SdError('VDI_IS_SNAPSHOT', 'cannot resize a snapshot');
  checkSize(sizeBytes, entry.hyper, entry.blockSizeShift);
  if (sizeBytes < entry.sizeBytes) throw new SdError('INVALID_ARGUMENT', 'Shrinking VDIs is not implemented');
  return { ...entry, sizeBytes };
}
