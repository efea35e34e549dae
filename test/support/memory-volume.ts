// An in-memory VolumeProvider for front-end tests. Sparse like the real thing: a Map from object
// index to a Buffer of one object; unallocated objects read as zeros, discard of whole objects
// deletes them, extents report allocation per object. `NAME:TAG` opens a read-only snapshot.
import { piecesOf } from '../../src/engine/pieces.js';
import { SdError } from '../../src/engine/errors.js';
import type { Extent, Volume, VolumeInfo, VolumeProvider } from '../../src/engine/volume.js';

const objectSizeBytesDefault = 4 * 1024 * 1024;

interface Vdi {
  name: string;
  tag: string;
  snapId: number;
  vid: number;
  sizeBytes: number;
  readOnly: boolean;
  objects: Map<number, Buffer>;
  /** When set, every read/write fails with this code (to test error paths). */
  failWith: SdError | null;
}

/** Holds writes until opened, counting the waiting ones: shows what a front end keeps in flight. */
export class WriteGate {
  waitingCount = 0;
  waitingCountMax = 0;
  private opened = false;
  private readonly waiters: Array<() => void> = [];

  async pass(): Promise<void> {
    if (this.opened) return;
    this.waitingCount += 1;
    this.waitingCountMax = Math.max(this.waitingCountMax, this.waitingCount);
    await new Promise<void>((resolve) => this.waiters.push(resolve));
    this.waitingCount -= 1;
  }

  open(): void {
    this.opened = true;
    for (const wake of this.waiters.splice(0)) wake();
  }
}

export class MemoryVolumeProvider implements VolumeProvider {
  private readonly vdis = new Map<string, Vdi>();
  private readonly snapshots = new Map<string, Vdi>();
  private nextVid = 1;
  /** How many times open() and close() succeeded: lets tests check volumes are shared. */
  openCount = 0;
  closeCount = 0;
  /** When set, every write of every volume waits for this gate first. */
  writeGate: WriteGate | null = null;

  constructor(readonly objectSizeBytes = objectSizeBytesDefault) {}

  createVdi(name: string, sizeBytes: number): void {
    if (this.vdis.has(name)) throw new SdError('VDI_EXISTS', `${name} exists`);
    this.vdis.set(name, {
      name,
      tag: '',
      snapId: 0,
      vid: this.nextVid++,
      sizeBytes,
      readOnly: false,
      objects: new Map(),
      failWith: null,
    });
  }

  /** A read-only copy of NAME's current data, opened as `NAME:TAG`. */
  snapshot(name: string, tag: string): void {
    const source = this.vdi(name);
    const objects = new Map<number, Buffer>();
    for (const [index, data] of source.objects) objects.set(index, Buffer.from(data));
    const snapId = [...this.snapshots.values()].filter((vdi) => vdi.name === name).length + 1;
    this.snapshots.set(`${name}:${tag}`, {
      ...source,
      tag,
      snapId,
      vid: this.nextVid++,
      readOnly: true,
      objects,
      failWith: null,
    });
  }

  /** Makes every later read and write of NAME fail with `error` (null heals it). */
  failVdi(name: string, error: SdError | null): void {
    this.vdi(name).failWith = error;
  }

  objectCount(spec: string): number {
    return this.lookup(spec).objects.size;
  }

  async open(spec: string): Promise<Volume> {
    const vdi = this.lookup(spec);
    this.openCount += 1;
    return new MemoryVolume(
      vdi,
      this.objectSizeBytes,
      () => this.writeGate,
      () => {
        this.closeCount += 1;
      },
    );
  }

  async listNames(): Promise<string[]> {
    return [...this.vdis.keys()].sort();
  }

  private vdi(name: string): Vdi {
    const vdi = this.vdis.get(name);
    if (!vdi) throw new SdError('NO_VDI', `no VDI named ${name}`);
    return vdi;
  }

  private lookup(spec: string): Vdi {
    const colon = spec.indexOf(':');
    if (colon < 0) return this.vdi(spec);
    const name = spec.slice(0, colon);
    this.vdi(name);
    const snapshot = this.snapshots.get(spec);
    if (!snapshot) throw new SdError('NO_TAG', `no snapshot ${spec.slice(colon + 1)} of ${name}`);
    return snapshot;
  }
}

class MemoryVolume implements Volume {
  readonly info: VolumeInfo;
  private closed = false;

  constructor(
    private readonly vdi: Vdi,
    private readonly objectSizeBytes: number,
    private readonly writeGate: () => WriteGate | null,
    private readonly onClose: () => void,
  ) {
    this.info = {
      name: vdi.name,
      tag: vdi.tag,
      snapId: vdi.snapId,
      vid: vdi.vid,
      sizeBytes: vdi.sizeBytes,
      objectSizeBytes,
      readOnly: vdi.readOnly,
    };
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.check(offsetBytes, lengthBytes, false);
    const result = Buffer.alloc(lengthBytes);
    this.forEachPiece(offsetBytes, lengthBytes, (index, inObjectBytes, pieceBytes, doneBytes) => {
      this.vdi.objects
        .get(index)
        ?.copy(result, doneBytes, inObjectBytes, inObjectBytes + pieceBytes);
    });
    return result;
  }

  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.check(offsetBytes, data.length, true);
    await this.writeGate()?.pass();
    this.forEachPiece(offsetBytes, data.length, (index, inObjectBytes, pieceBytes, doneBytes) => {
      let object = this.vdi.objects.get(index);
      if (!object) {
        object = Buffer.alloc(this.objectSizeBytes);
        this.vdi.objects.set(index, object);
      }
      data.copy(object, inObjectBytes, doneBytes, doneBytes + pieceBytes);
    });
  }

  async flush(): Promise<void> {
    this.check(0, 0, false);
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.check(offsetBytes, lengthBytes, true);
    this.forEachPiece(offsetBytes, lengthBytes, (index, inObjectBytes, pieceBytes) => {
      if (pieceBytes === this.objectSizeBytes) this.vdi.objects.delete(index);
      else this.vdi.objects.get(index)?.fill(0, inObjectBytes, inObjectBytes + pieceBytes);
    });
  }

  async writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.discard(offsetBytes, lengthBytes);
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.check(offsetBytes, lengthBytes, false);
    const extents: Extent[] = [];
    this.forEachPiece(offsetBytes, lengthBytes, (index, _inObjectBytes, pieceBytes, doneBytes) => {
      const allocated = this.vdi.objects.has(index);
      const last = extents[extents.length - 1];
      if (last && last.allocated === allocated) last.lengthBytes += pieceBytes;
      else
        extents.push({ offsetBytes: offsetBytes + doneBytes, lengthBytes: pieceBytes, allocated });
    });
    return extents;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
  }

  private check(offsetBytes: number, lengthBytes: number, writing: boolean): void {
    if (this.closed) throw new SdError('INTERNAL', 'volume is closed');
    if (this.vdi.failWith) throw this.vdi.failWith;
    if (writing && this.vdi.readOnly)
      throw new SdError('READ_ONLY', `${this.vdi.name} is a snapshot`);
    if (offsetBytes + lengthBytes > this.vdi.sizeBytes) {
      throw new SdError(
        'OUT_OF_RANGE',
        `${offsetBytes}+${lengthBytes} is past ${this.vdi.sizeBytes}`,
      );
    }
  }

  /** Calls visit for each object-sized piece of the range, in order (cut as VolumeIo cuts). */
  private forEachPiece(
    offsetBytes: number,
    lengthBytes: number,
    visit: (index: number, inObjectBytes: number, pieceBytes: number, doneBytes: number) => void,
  ): void {
    for (const piece of piecesOf(offsetBytes, lengthBytes, this.objectSizeBytes)) {
      visit(piece.index, piece.innerBytes, piece.lengthBytes, piece.bufferBytes);
    }
  }
}
