// An in-memory SheepfsBackend: a few fake VDIs with sparse, copy-on-write volumes and snapshots.
// It stands in for the cluster in sheepfs tests (test/support/sheepfs-memory-main.ts), so the FUSE
// layer can be exercised without sheep daemons. Behaviour follows the Volume/SheepfsBackend
// contracts.
import { piecesOf } from '../../src/engine/pieces.js';
import { sdError } from '../../src/engine/errors.js';
import type { SheepfsBackend } from '../../src/fs/backend.js';
import type { Extent, Volume, VolumeInfo } from '../../src/engine/volume.js';

const objectSizeBytes = 4 * 1024 * 1024;
const vidFirst = 0x7c2b25;

interface VdiRecord {
  name: string;
  tag: string;
  snapId: number;
  vid: number;
  sizeBytes: number;
  createdAtMs: number;
  /** Object index -> bytes; a missing index is a hole that reads as zeros. */
  objects: Map<number, Buffer>;
  /** Indices whose Buffer is shared with a snapshot: copied before the first write (COW). */
  shared: Set<number>;
}

export interface MemoryVdiSeed {
  name: string;
  sizeBytes: number;
  snapshotTags?: readonly string[];
}

export interface MemoryBackendOptions {
  vdis?: readonly MemoryVdiSeed[];
  /** Make ping() fail, to test start-up against a dead cluster. */
  unreachable?: boolean;
  createdAtMs?: number;
}

export const memoryVdisDefault: readonly MemoryVdiSeed[] = [
  { name: 'Alice', sizeBytes: 1024 * 1024 * 1024 },
  { name: 'Bob', sizeBytes: 8 * 1024 * 1024, snapshotTags: ['base'] },
];

function checkRange(record: VdiRecord, offsetBytes: number, lengthBytes: number): void {
  const valid = Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes);
  if (
    !valid ||
    offsetBytes < 0 ||
    lengthBytes < 0 ||
    offsetBytes + lengthBytes > record.sizeBytes
  ) {
    throw sdError('OUT_OF_RANGE', `range ${offsetBytes}+${lengthBytes} beyond ${record.sizeBytes}`);
  }
}

/** Calls `visit` for each object-sized piece of a byte range, in order (cut as VolumeIo cuts). */
function forEachPiece(
  offsetBytes: number,
  lengthBytes: number,
  visit: (index: number, inObjectBytes: number, pieceBytes: number, doneBytes: number) => void,
): void {
  for (const piece of piecesOf(offsetBytes, lengthBytes, objectSizeBytes)) {
    visit(piece.index, piece.innerBytes, piece.lengthBytes, piece.bufferBytes);
  }
}

function writableObject(record: VdiRecord, index: number): Buffer {
  const existing = record.objects.get(index);
  if (existing !== undefined && !record.shared.has(index)) return existing;
  const fresh = Buffer.alloc(objectSizeBytes);
  existing?.copy(fresh);
  record.objects.set(index, fresh);
  record.shared.delete(index);
  return fresh;
}

class MemoryVolume implements Volume {
  readonly info: VolumeInfo;
  private readonly record: VdiRecord;

  constructor(record: VdiRecord, readOnly: boolean) {
    this.record = record;
    this.info = {
      name: record.name,
      tag: record.tag,
      snapId: record.snapId,
      vid: record.vid,
      sizeBytes: record.sizeBytes,
      objectSizeBytes,
      readOnly,
    };
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    checkRange(this.record, offsetBytes, lengthBytes);
    const data = Buffer.alloc(lengthBytes);
    forEachPiece(offsetBytes, lengthBytes, (index, inObjectBytes, pieceBytes, doneBytes) => {
      this.record.objects
        .get(index)
        ?.copy(data, doneBytes, inObjectBytes, inObjectBytes + pieceBytes);
    });
    return data;
  }

  async write(offsetBytes: number, data: Buffer): Promise<void> {
    if (this.info.readOnly) throw sdError('READ_ONLY', `${this.info.name} is a snapshot`);
    checkRange(this.record, offsetBytes, data.length);
    forEachPiece(offsetBytes, data.length, (index, inObjectBytes, pieceBytes, doneBytes) => {
      data.copy(
        writableObject(this.record, index),
        inObjectBytes,
        doneBytes,
        doneBytes + pieceBytes,
      );
    });
  }

  async flush(): Promise<void> {}

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.writeZeroes(offsetBytes, lengthBytes);
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    if (this.info.readOnly) throw sdError('READ_ONLY', `${this.info.name} is a snapshot`);
    checkRange(this.record, offsetBytes, lengthBytes);
    forEachPiece(offsetBytes, lengthBytes, (index, inObjectBytes, pieceBytes) => {
      if (pieceBytes === objectSizeBytes) {
        this.record.objects.delete(index);
        this.record.shared.delete(index);
      } else if (this.record.objects.has(index)) {
        writableObject(this.record, index).fill(0, inObjectBytes, inObjectBytes + pieceBytes);
      }
    });
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    checkRange(this.record, offsetBytes, lengthBytes);
    const extents: Extent[] = [];
    forEachPiece(offsetBytes, lengthBytes, (index, inObjectBytes, pieceBytes, doneBytes) => {
      const allocated = this.record.objects.has(index);
      const last = extents[extents.length - 1];
      if (last !== undefined && last.allocated === allocated) last.lengthBytes += pieceBytes;
      else
        extents.push({ offsetBytes: offsetBytes + doneBytes, lengthBytes: pieceBytes, allocated });
      void inObjectBytes;
    });
    return extents;
  }

  async close(): Promise<void> {}
}

function formatSize(sizeBytes: number): string {
  const units = ['MB', 'GB', 'TB'];
  let value = sizeBytes / (1024 * 1024);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

function formatTime(timeMs: number): string {
  return new Date(timeMs).toISOString().slice(0, 16).replace('T', ' ');
}

export class MemoryBackend implements SheepfsBackend {
  private readonly working = new Map<string, VdiRecord>();
  private readonly snapshots = new Map<string, VdiRecord[]>();
  private readonly unreachable: boolean;
  private readonly createdAtMs: number;
  private nextVid = vidFirst;

  constructor(options: MemoryBackendOptions = {}) {
    this.unreachable = options.unreachable ?? false;
    this.createdAtMs = options.createdAtMs ?? Date.UTC(2026, 10, 23, 16, 27);
    for (const seed of options.vdis ?? memoryVdisDefault) this.seed(seed);
  }

  private seed(seed: MemoryVdiSeed): void {
    this.working.set(seed.name, this.newRecord(seed.name, '', 0, seed.sizeBytes));
    this.snapshots.set(seed.name, []);
    for (const tag of seed.snapshotTags ?? []) this.takeSnapshot(seed.name, tag);
  }

  private newRecord(name: string, tag: string, snapId: number, sizeBytes: number): VdiRecord {
    const vid = this.nextVid;
    this.nextVid += 1;
    const record = { name, tag, snapId, vid, sizeBytes, createdAtMs: this.createdAtMs };
    return { ...record, objects: new Map(), shared: new Set() };
  }

  private workingOf(name: string): VdiRecord {
    const record = this.working.get(name);
    if (record === undefined) throw sdError('NO_VDI', `Failed to open VDI ${name}: No VDI found`);
    return record;
  }

  private snapshotOf(name: string, tagOrId: string): VdiRecord {
    this.workingOf(name);
    const found = (this.snapshots.get(name) ?? []).find(
      (snapshot) => snapshot.tag === tagOrId || String(snapshot.snapId) === tagOrId,
    );
    if (found === undefined)
      throw sdError('NO_TAG', `Failed to find requested tag ${tagOrId} of ${name}`);
    return found;
  }

  private takeSnapshot(name: string, tag: string): void {
    const working = this.workingOf(name);
    const list = this.snapshots.get(name) ?? [];
    if (tag !== '' && list.some((snapshot) => snapshot.tag === tag)) {
      throw sdError('SNAPSHOT_EXISTS', `Failed to create snapshot for ${name}: tag ${tag} exists`);
    }
    const snapshot = this.newRecord(name, tag, list.length + 1, working.sizeBytes);
    snapshot.objects = new Map(working.objects);
    for (const index of working.objects.keys()) working.shared.add(index);
    list.push(snapshot);
    this.snapshots.set(name, list);
  }

  private async answer(): Promise<void> {
    if (this.unreachable)
      throw sdError('NETWORK', 'cannot connect to sheep (memory backend: unreachable)');
  }

  async clusterInfoText(): Promise<string> {
    await this.answer();
    const time = formatTime(this.createdAtMs);
    return [
      'Cluster status: running, auto-recovery enabled',
      '',
      `Cluster created at ${time}`,
      '',
      'Epoch Time           Version [Host:Port:V-Nodes,,,]',
      `${time}:00      1 [127.0.0.1:7000:128, 127.0.0.1:7001:128, 127.0.0.1:7002:128]`,
      '',
    ].join('\n');
  }

  async nodeListText(): Promise<string> {
    await this.answer();
    const header = '  Id   Host:Port         V-Nodes       Zone';
    const rows = [0, 1, 2].map(
      (id) => `   ${id}   127.0.0.1:${7000 + id}      \t128          ${id}`,
    );
    return [header, ...rows, ''].join('\n');
  }

  async nodeInfoText(): Promise<string> {
    await this.answer();
    const totalBytes = [...this.working.values()].reduce(
      (sum, record) => sum + record.sizeBytes,
      0,
    );
    const rows = [0, 1, 2].map((id) => ` ${id}\t76 GB\t0.0 MB\t76 GB\t  0%`);
    return [
      'Id\tSize\tUsed\tAvail\tUse%',
      ...rows,
      'Total\t229 GB\t0.0 MB\t229 GB\t  0%',
      '',
      `Total virtual image size\t${formatSize(totalBytes)}`,
      '',
    ].join('\n');
  }

  async vdiListText(): Promise<string> {
    await this.answer();
    const header =
      '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag' +
      '   Block Size Shift';
    const rows: string[] = [];
    for (const [name, working] of this.working) {
      for (const snapshot of this.snapshots.get(name) ?? []) rows.push(this.vdiRow('s', snapshot));
      rows.push(this.vdiRow(' ', working));
    }
    return [header, ...rows, ''].join('\n');
  }

  private vdiRow(kind: string, record: VdiRecord): string {
    const usedBytes = record.objects.size * objectSizeBytes;
    return (
      `${kind} ${record.name.padEnd(12)}${String(record.snapId).padStart(2)} ` +
      `${formatSize(record.sizeBytes).padStart(7)} ${formatSize(usedBytes).padStart(7)}  0.0 MB ` +
      `${formatTime(record.createdAtMs)}   ${record.vid.toString(16)}      3  ` +
      `${record.tag.padStart(10)}  22`
    );
  }

  async snapshot(name: string, tag: string | undefined): Promise<void> {
    await this.answer();
    this.takeSnapshot(name, tag ?? '');
  }

  async rollback(name: string, tag: string): Promise<void> {
    await this.answer();
    const working = this.workingOf(name);
    const snapshot = this.snapshotOf(name, tag);
    working.objects = new Map(snapshot.objects);
    working.shared = new Set(snapshot.objects.keys());
  }

  async deleteVdi(name: string, tag: string | undefined): Promise<void> {
    await this.answer();
    if (tag === undefined) {
      this.workingOf(name);
      this.working.delete(name);
      this.snapshots.delete(name);
      return;
    }
    const snapshot = this.snapshotOf(name, tag);
    this.snapshots.set(
      name,
      (this.snapshots.get(name) ?? []).filter((each) => each !== snapshot),
    );
  }

  async clone(source: string, tag: string, target: string): Promise<void> {
    await this.answer();
    const snapshot = this.snapshotOf(source, tag);
    if (this.working.has(target)) throw sdError('VDI_EXISTS', `Failed to create VDI ${target}: VDI exists already`);
    const clone = this.newRecord(target, '', 1, snapshot.sizeBytes);
    clone.objects = new Map(snapshot.objects);
    clone.shared = new Set(snapshot.objects.keys());
    this.working.set(target, clone);
  }

  async openVolume(spec: string): Promise<Volume> {
    await this.answer();
    const colon = spec.indexOf(':');
    if (colon < 0) return new MemoryVolume(this.workingOf(spec), false);
    return new MemoryVolume(this.snapshotOf(spec.slice(0, colon), spec.slice(colon + 1)), true);
  }

  async ping(): Promise<void> {
    await this.answer();
  }

  async close(): Promise<void> {}
}
