// A VDI as bytes, over object I/O: the owner table decides, per object, where its bytes live —
// 0: never written (reads as zeros: thin provisioning), the VDI's own id, or an ancestor's id
// (copy-on-write: the first write copies the object into the VDI's own id). The client runtime
// above the pure engine: async, and it keeps state (the cached owner table, allocations in
// flight) for as long as the VDI is open.
//
// Writeback (docs/durability.md): writes are cached on the replicas and `flush` makes them
// durable. One order is kept even so: a copy-on-write from an ancestor's object is written
// durably before the table entry that points at it, so a power loss never leaves an entry whose
// object is gone (which would read as zeros, never the ancestor's bytes that were there).
import { SdError, asSdError } from '../engine/errors.js';
import { ownerTableCachedChunksMax } from '../engine/limits.js';
import { asVid, dataOid, type Vid } from '../engine/oid.js';
import type { ObjectIo } from '../engine/object-io.js';
import { piecesOf } from '../engine/pieces.js';
import type { VdiEntry } from '../engine/vdi.js';
import type { Extent, Volume, VolumeInfo } from '../engine/volume.js';
import { OwnerTable } from './owner-table.js';

export interface VolumeIoOptions {
  /** Writes are cached on the replicas until a flush (needs an ObjectIo with `flush`). */
  writeback?: boolean;
}

export class VolumeIo implements Volume {
  readonly info: VolumeInfo;
  private readonly writeback: boolean;
  private readonly vid: Vid;
  private readonly objectBytes: number;
  private readonly table: OwnerTable;
  private readonly allocating = new Map<number, Promise<unknown>>();

  constructor(
    private readonly io: ObjectIo,
    readonly entry: VdiEntry,
    ownerTableChunksMax = ownerTableCachedChunksMax,
    options: VolumeIoOptions = {},
  ) {
    this.vid = asVid(entry.vid);
    this.writeback = (options.writeback ?? false) && io.flush !== undefined;
    // Table entries are written as the data is: cached on a writeback volume.
    const tableIo: ObjectIo = this.writeback
      ? { ...bound(io), write: (oid, offsetBytes, data, create) => io.write(oid, offsetBytes, data, create, { cached: true }) }
      : io;
    this.table = new OwnerTable(tableIo, this.vid, ownerTableChunksMax, entry);
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
    if (data.length > 0) await this.writePiece(index, innerBytes, data, false);
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

  /** `durable` (FUA): on every replica's disk before it resolves, even on a writeback volume. */
  async write(offsetBytes: number, data: Buffer, durable = false): Promise<void> {
    this.checkWritable();
    this.checkRange(offsetBytes, data.length);
    const allocated = await Promise.all(
      piecesOf(offsetBytes, data.length, this.objectBytes).map((piece) =>
        this.writePiece(piece.index, piece.innerBytes, data.subarray(piece.bufferBytes, piece.bufferBytes + piece.lengthBytes), durable),
      ),
    );
    // A durable write that set a table entry: the entry (written cached) is flushed too.
    if (durable && this.writeback && allocated.some(Boolean)) await this.flush();
  }

  /** Answers whether it set the object's table entry. */
  private async writePiece(index: number, innerBytes: number, data: Buffer, durable: boolean): Promise<boolean> {
    const cached = this.writeback && !durable;
    if ((await this.owner(index)) === this.vid) {
      await this.io.write(dataOid(this.vid, index), innerBytes, data, false, { cached });
      return false;
    }
    return this.exclusiveAllocation(index, async () => {
      const owner = await this.owner(index);
      const oid = dataOid(this.vid, index);
      if (owner === this.vid) {
        await this.io.write(oid, innerBytes, data, false, { cached });
        return false;
      }
      const whole = innerBytes === 0 && data.length === this.objectBytes;
      // Over an ancestor's object: durable before the entry (see the top of this file).
      const copyCached = cached && owner === 0;
      if (owner === 0 || whole) {
        await this.io.write(oid, innerBytes, data, true, { cached: copyCached });
      } else {
        const base = await this.readObjectOrZeros(owner, index);
        data.copy(base, innerBytes);
        await this.io.write(oid, 0, base, true, { cached: copyCached });
      }
      await this.table.setOwner(index, this.vid);
      return true;
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
  private async exclusiveAllocation<T>(index: number, work: () => Promise<T>): Promise<T> {
    const previous: Promise<unknown> = this.allocating.get(index) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.allocating.set(index, next);
    try {
      return await next;
    } finally {
      if (this.allocating.get(index) === next) this.allocating.delete(index);
    }
  }

  async flush(): Promise<void> {
    // Writethrough: every acknowledged write is already on every replica's disk.
    if (this.writeback) await this.io.flush!(this.vid);
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    this.checkWritable();
    this.checkRange(offsetBytes, lengthBytes);
    await Promise.all(
      piecesOf(offsetBytes, lengthBytes, this.objectBytes).map(async (piece) => {
        const owner = await this.owner(piece.index);
        if (owner === 0) return;
        if (piece.lengthBytes < this.objectBytes) {
          await this.writePiece(piece.index, piece.innerBytes, Buffer.alloc(piece.lengthBytes), false);
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

/** An ObjectIo's methods bound to it, to build a variant of it. */
function bound(io: ObjectIo): ObjectIo {
  return {
    read: io.read.bind(io),
    write: io.write.bind(io),
    remove: io.remove.bind(io),
    lookup: io.lookup.bind(io),
  };
}
