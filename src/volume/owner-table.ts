// The owner table of one VDI (for each object index, the VID that owns its data; 0: never
// written), kept in memory one chunk (one inode object: 2^20 entries, 4 MiB) at a time. A hyper
// VDI has up to 4096 chunks (16 GiB), so at most `chunksMax` stay cached, least recently used
// evicted first. A chunk is pinned while anyone reads or updates it, and only an unpinned chunk
// is evicted: an update still on its way to the replicas is never dropped, and no second copy of
// a chunk is loaded while the first may still change.
import assert from 'node:assert/strict';
import { asSdError } from '../engine/errors.js';
import { tableEntriesPerChunk } from '../engine/limits.js';
import { inodeOid, type Vid } from '../engine/oid.js';
import type { ObjectIo } from '../engine/object-io.js';
import { tableEntriesInChunk, type VdiEntry } from '../engine/vdi.js';

/** One loaded table object; entry updates of concurrent writes are coalesced into one write. */
class TableChunk {
  private dirty = new Set<number>();
  private waiters: Array<{ resolve(): void; reject(e: unknown): void }> = [];
  private running = false;

  constructor(
    private readonly entries: Uint32Array,
    private readonly save: (offsetBytes: number, data: Buffer) => Promise<void>,
  ) {}

  /** No entry update is waiting or being written. */
  get idle(): boolean {
    return !this.running && this.dirty.size === 0;
  }

  entry(slot: number): number {
    return this.entries[slot] ?? 0;
  }

  /** Sets entry `slot`; resolves once its value is durable. */
  update(slot: number, owner: number): Promise<void> {
    assert.ok(slot < this.entries.length, 'an entry inside the VDI');
    this.entries[slot] = owner;
    this.dirty.add(slot);
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.running) void this.run();
    return done;
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.dirty.size > 0) {
      const slots = [...this.dirty];
      const waiters = this.waiters;
      this.dirty = new Set();
      this.waiters = [];
      const first = Math.min(...slots);
      const last = Math.max(...slots);
      const range = this.entries.subarray(first, last + 1);
      // A copy: entries set while this range is on its way belong to the next round.
      const bytes = Buffer.from(Buffer.from(range.buffer, range.byteOffset, range.byteLength));
      try {
        await this.save(first * 4, bytes);
        for (const waiter of waiters) waiter.resolve();
      } catch (error) {
        for (const waiter of waiters) waiter.reject(error);
      }
    }
    this.running = false;
  }
}

interface CacheSlot {
  loaded: Promise<TableChunk>;
  /** Set once loaded; an unpinned slot always has it. */
  chunk: TableChunk | undefined;
  pins: number;
}

export class OwnerTable {
  /** Map order is use order: the least recently used chunk comes first. */
  private readonly slots = new Map<number, CacheSlot>();
  private waiting: Array<() => void> = [];

  constructor(
    private readonly io: ObjectIo,
    private readonly vid: Vid,
    readonly chunksMax: number,
    /** The VDI's size: entries past it are 0 for good, never fetched nor held. */
    private readonly size: Pick<VdiEntry, 'sizeBytes' | 'blockSizeShift'>,
  ) {
    assert.ok(Number.isSafeInteger(chunksMax) && chunksMax >= 1, 'the cache holds a chunk or more');
  }

  /** Chunks in memory now: never more than `chunksMax`. */
  get cachedChunks(): number {
    return this.slots.size;
  }

  owner(index: number): Promise<number> {
    return this.use(index, (chunk, slot) => chunk.entry(slot));
  }

  /** Resolves once the new entry is on every replica. */
  setOwner(index: number, owner: number): Promise<void> {
    return this.use(index, (chunk, slot) => chunk.update(slot, owner));
  }

  /** Runs `work` on the chunk holding entry `index`, pinned until `work` settles. */
  private async use<T>(
    index: number,
    work: (chunk: TableChunk, slot: number) => T | Promise<T>,
  ): Promise<T> {
    const number = Math.floor(index / tableEntriesPerChunk);
    const slot = await this.pin(number);
    try {
      return await work(await slot.loaded, index % tableEntriesPerChunk);
    } finally {
      slot.pins -= 1;
      if (slot.pins === 0) this.wake();
    }
  }

  private async pin(number: number): Promise<CacheSlot> {
    for (;;) {
      const cached = this.slots.get(number);
      if (cached) {
        this.slots.delete(number);
        this.slots.set(number, cached);
        cached.pins += 1;
        return cached;
      }
      if (this.makeRoom()) return this.admit(number);
      // Every cached chunk is in use: wait until one is released (or fails to load).
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  /** Evicts the least recently used unpinned chunk if the cache is full; false if none is. */
  private makeRoom(): boolean {
    if (this.slots.size < this.chunksMax) return true;
    for (const [number, slot] of this.slots) {
      if (slot.pins > 0) continue;
      assert.ok(slot.chunk?.idle, 'an unpinned chunk has no update in flight');
      this.slots.delete(number);
      return true;
    }
    return false;
  }

  private admit(number: number): CacheSlot {
    const slot: CacheSlot = { loaded: this.load(number), chunk: undefined, pins: 1 };
    this.slots.set(number, slot);
    slot.loaded.then(
      (chunk) => {
        slot.chunk = chunk;
      },
      () => {
        // The next use loads it again.
        if (this.slots.get(number) === slot) this.slots.delete(number);
        this.wake();
      },
    );
    return slot;
  }

  private wake(): void {
    const waiting = this.waiting;
    this.waiting = [];
    for (const resolve of waiting) resolve();
  }

  private async load(number: number): Promise<TableChunk> {
    const oid = inodeOid(this.vid, number);
    const entries = new Uint32Array(tableEntriesInChunk(this.size, number));
    let exists = true;
    try {
      // The entries the VDI's size reaches: reads past its end never get this far.
      const bytes = await this.io.read(oid, 0, entries.byteLength);
      Buffer.from(entries.buffer).set(bytes.subarray(0, entries.byteLength));
    } catch (error) {
      if (asSdError(error).code !== 'NO_OBJECT') throw error;
      exists = false;
    }
    // Only the first write of a table may create it: a replica that lacks an existing table
    // must be sent all of it, never make a sparse one of zeros around the new entries.
    return new TableChunk(entries, async (offsetBytes, data) => {
      await this.io.write(oid, offsetBytes, data, !exists);
      exists = true;
    });
  }
}
