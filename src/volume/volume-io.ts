// A VDI as bytes, over object I/O: the owner table decides, per object, where its bytes live —
// 0: never written (reads as zeros: thin provisioning), the VDI's own id, or an ancestor's id
// (copy-on-write: the first write copies the object into the VDI's own id). The client runtime
// above the pure engine: async, and it keeps state (the cached owner table, allocations in
// flight) for as long as the VDI is open.
import { SdError, asSdError } from '../engine/errors.js';
import { ownerTableCachedChunksMax } from '../engine/limits.js';
import { asVid, dataOid, type Vid } from '../engine/oid.js';
import type { ObjectIo } from '../engine/object-io.js';
import { piecesOf } from '../engine/pieces.js';
import type { VdiEntry } from '../engine/vdi.js';
import type { Extent, Volume, VolumeInfo } from '../engine/volume.js';
import { OwnerTable } from './owner-table.js';

export class VolumeIo implements Volume {
  readonly info: VolumeInfo;
  private readonly vid: Vid;
  private readonly objectBytes: number;
  private readonly table: OwnerTable;
  private readonly allocating = new Map<number, Promise<void>>();

  constructor(
    private readonly io: ObjectIo,
    readonly entry: VdiEntry,
    ownerTableChunksMax = ownerTableCachedChunksMax,
  ) {
    this.vid = asVid(entry.vid);
    this.table = new OwnerTable(io, this.vid, ownerTableChunksMax, entry);
    this.objectBytes = 2 ** entry.blockSizeShift;
    this.info = {
      name: entry.name,
      tag: entry.tag,
      snapId: entry.snapId,
      vid: entry.vid,
      sizeBytes: entry.sizeBytes,
      objectSizeBytes: this.objectBytes,
      readOnly: entry.snapshotSec !== 0,
    };
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0) {
      throw new SdError('INVALID_ARGUMENT', 'offset and length must be non-negative integers');
    }
    if (offsetBytes + lengthBytes > this.info.sizeBytes) {
      throw new SdError('OUT_OF_RANGE', `range ${offsetBytes}+${lengthBytes} is beyond the end of the VDI (${this.info.sizeBytes} bytes)`);
    }
  }

  private checkWritable(): void {
    if (this.info.readOnly) throw new SdError('READ_ONLY', `${this.info.name} is a snapshot: read-only`);
  }

  owner(index: number): Promise<number> {
    return this.table.owner(index);
  }

  async read(offsetBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkRange(offsetBytes, lengthBytes);
    const pieces = piecesOf(offsetBytes, lengthBytes, this.objectBytes);
    if (pieces.length === 1) return this.readPiece(pieces[0]!);
    const result = Buffer.alloc(lengthBytes);
    await Promise.all(
      pieces.map(async (piece) => (await this.fetchPiece(piece))?.copy(result, piece.bufferBytes)),
    );
    return result;
  }

  /** One object's part of a read, without copying it into a larger buffer. */
  private async readPiece(piece: { index: number; innerBytes: number; lengthBytes: number }): Promise<Buffer> {
    return (await this.fetchPiece(piece)) ?? Buffer.alloc(piece.lengthBytes);
  }

  /** The bytes of one object's part, or undefined where it was never written (zeros). */
  private async fetchPiece(piece: { index: number; innerBytes: number; lengthBytes: number }): Promise<Buffer | undefined> {
    const owner = await this.owner(piece.index);
    if (owner === 0) return undefined;
    try {
      return await this.io.read(dataOid(asVid(owner), piece.index), piece.innerBytes, piece.lengthBytes);
    } catch (error) {
      if (asSdError(error).code !== 'NO_OBJECT') throw error;
      return undefined;
    }
  }

  /**
   * Object-addressed I/O, for callers that count bytes past 2^53 (a hyper VDI is up to 2^54
   * bytes): the byte position is `index * objectSize + innerBytes`, checked exactly.
   */
  async readObject(index: number, innerBytes: number, lengthBytes: number): Promise<Buffer> {
    this.checkObjectRange(index, innerBytes, lengthBytes);
    return this.readPiece({ index, innerBytes, lengthBytes });
  }

  async writeObject(index: number, innerBytes: number, data: Buffer): Promise<void> {
    this.checkWritable();
    this.checkObjectRange(index, innerBytes, data.length);
    if (data.length > 0) await this.writePiece(index, innerBytes, data);
  }

  private checkObjectRange(index: number, innerBytes: number, lengthBytes: number): void {
    const valid = [index, innerBytes, lengthBytes].every((n) => Number.isSafeInteger(n) && n >= 0);
    if (!valid || innerBytes + lengthBytes > this.objectBytes) {
      throw new SdError('INVALID_ARGUMENT', 'object range must lie inside one object');
    }
    const end = BigInt(index) * BigInt(this.objectBytes) + BigInt(innerBytes + lengthBytes);
    if (end > BigInt(this.info.sizeBytes)) {
      throw new SdError('OUT_OF_RANGE', `range ending at ${end} is beyond the end of the VDI (${this.info.sizeBytes} bytes)`);
    }
  }

  async write(offsetBytes: number, data: Buffer): Promise<void> {
    this.checkWritable();
    this.checkRange(offsetBytes, data.length);
    await Promise.all(
      piecesOf(offsetBytes, data.length, this.objectBytes).map((piece) =>
        this.writePiece(piece.index, piece.innerBytes, data.subarray(piece.bufferBytes, piece.bufferBytes + piece.lengthBytes)),
      ),
    );
  }

  private async writePiece(index: number, innerBytes: number, data: Buffer): Promise<void> {
    if ((await this.owner(index)) === this.vid) {
      await this.io.write(dataOid(this.vid, index), innerBytes, data, false);
      return;
    }
    await this.exclusiveAllocation(index, async () => {
      const owner = await this.owner(index);
      const oid = dataOid(this.vid, index);
      if (owner === this.vid) {
        await this.io.write(oid, innerBytes, data, false);
        return;
      }
      const whole = innerBytes === 0 && data.length === this.objectBytes;
      if (owner === 0 || whole) {
        await this.io.write(oid, innerBytes, data, true);
      } else {
        const base = await this.readObjectOrZeros(owner, index);
        data.copy(base, innerBytes);
        await this.io.write(oid, 0, base, true);
      }
      await this.table.setOwner(index, this.vid);
    });
  }

  private async readObjectOrZeros(owner: number, index: number): Promise<Buffer> {
    try {
      return await this.io.read(dataOid(asVid(owner), index), 0, this.objectBytes);
    } catch (error) {
      if (asSdError(error).code !== 'NO_OBJECT') throw error;
      return Buffer.alloc(this.objectBytes);
    }
  }

  /** Serialises the first write of an object, so two writers never both copy-on-write it. */
  private async exclusiveAllocation(index: number, work: () => Promise<void>): Promise<void> {
    const previous = this.allocating.get(index) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.allocating.set(index, next);
    try {
      await next;
    } finally {
      if (this.allocating.get(index) === next) this.allocating.delete(index);
    }
  }

  async flush(): Promise<void> {
    // Every acknowledged write is already on stable storage on every replica.
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offsetBytes, lengthBytes);
    await Promise.all(
      piecesOf(offsetBytes, lengthBytes, this.objectBytes).map(async (piece) => {
        const owner = await this.owner(piece.index);
        if (owner === 0) return;
        if (piece.lengthBytes < this.objectBytes) {
          await this.writePiece(piece.index, piece.innerBytes, Buffer.alloc(piece.lengthBytes));
          return;
        }
        await this.exclusiveAllocation(piece.index, async () => {
          // Table first: a crash in between leaves an unreferenced object, never a dangling entry.
          await this.table.setOwner(piece.index, 0);
          if (owner === this.vid) await this.io.remove(dataOid(this.vid, piece.index));
        });
      }),
    );
  }

  writeZeroes(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.discard(offsetBytes, lengthBytes);
  }

  async extents(offsetBytes: number, lengthBytes: number): Promise<Extent[]> {
    this.checkRange(offsetBytes, lengthBytes);
    const extents: Extent[] = [];
    for (const piece of piecesOf(offsetBytes, lengthBytes, this.objectBytes)) {
      const allocated = (await this.owner(piece.index)) !== 0;
      const last = extents.at(-1);
      if (last && last.allocated === allocated) last.lengthBytes += piece.lengthBytes;
      else extents.push({ offsetBytes: offsetBytes + piece.bufferBytes, lengthBytes: piece.lengthBytes, allocated });
    }
    return extents;
  }

  async close(): Promise<void> {
    await Promise.all([...this.allocating.values()].map((p) => p.catch(() => undefined)));
  }
}
