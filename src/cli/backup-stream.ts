// The stream of `dog vdi backup` / `dog vdi restore` (docs/backup-format.md): a header, records of
// changed byte runs, and a trailer with counts, the length and a SHA-256 of everything before it.
// The parser checks as it goes and refuses at the first thing wrong, naming it; restore runs it
// over the whole stream before it changes anything.
import { createHash, type Hash } from 'node:crypto';
import { SdError } from '../engine/errors.js';
import { blockSizeShiftMax, blockSizeShiftMin, vdiSizeBytesMax } from '../engine/limits.js';

export const backupMagic = Buffer.from('SDOGBKUP');
export const backupVersion = 1;
export const headerBytes = 32;
export const recordHeaderBytes = 16;
/** After the end record: records u64, data bytes u64, stream bytes u64, SHA-256. */
export const trailerBytes = 8 + 8 + 8 + 32;
const endIndex = 0xffffffff;
/** Header flag: the stream holds the whole snapshot, not the changes since another. */
export const flagFull = 1;

export type RecordKind = 'data' | 'discard';
const kindCodes: Record<RecordKind, number> = { data: 0, discard: 1 };

export interface BackupHeader {
  full: boolean;
  vdiSizeBytes: number;
  objectSizeBytes: number;
}

export interface BackupRecord {
  index: number;
  kind: RecordKind;
  /** Byte offset inside the object, and the length of the run (0 for a discard). */
  offset: number;
  length: number;
}

export function corrupt(why: string): SdError {
  return new SdError('CORRUPT', `The backup stream is refused, nothing was changed: ${why}`);
}

/** Writes a stream: the caller passes every piece to `emit` in order. */
export class BackupWriter {
  private readonly hash = createHash('sha256');
  private records = 0;
  private dataBytes = 0;
  private streamBytes = 0;

  constructor(private readonly emit: (bytes: Buffer) => Promise<void>) {}

  private async put(bytes: Buffer): Promise<void> {
    this.hash.update(bytes);
    this.streamBytes += bytes.length;
    await this.emit(bytes);
  }

  async header(header: BackupHeader): Promise<void> {
    const bytes = Buffer.alloc(headerBytes);
    backupMagic.copy(bytes, 0);
    bytes.writeUInt32LE(backupVersion, 8);
    bytes.writeUInt32LE(header.full ? flagFull : 0, 12);
    bytes.writeBigUInt64LE(BigInt(header.vdiSizeBytes), 16);
    bytes.writeUInt32LE(header.objectSizeBytes, 24);
    await this.put(bytes);
  }

  async record(record: BackupRecord, data?: Buffer): Promise<void> {
    const bytes = Buffer.alloc(recordHeaderBytes);
    bytes.writeUInt32LE(record.index, 0);
    bytes.writeUInt32LE(kindCodes[record.kind], 4);
    bytes.writeUInt32LE(record.offset, 8);
    bytes.writeUInt32LE(record.length, 12);
    await this.put(bytes);
    if (data) await this.put(data);
    this.records += 1;
    this.dataBytes += record.length;
  }

  async end(): Promise<void> {
    const marker = Buffer.alloc(recordHeaderBytes);
    marker.writeUInt32LE(endIndex, 0);
    await this.put(marker);
    const counts = Buffer.alloc(24);
    counts.writeBigUInt64LE(BigInt(this.records), 0);
    counts.writeBigUInt64LE(BigInt(this.dataBytes), 8);
    counts.writeBigUInt64LE(BigInt(this.streamBytes + 24), 16);
    this.hash.update(counts);
    await this.emit(counts);
    await this.emit(this.hash.digest());
  }
}

type State = 'header' | 'record' | 'data' | 'trailer' | 'done';

/**
 * Parses a stream fed in chunks of any size; `onRecord` gets each record with its data (a
 * discard: an empty buffer). Throws `corrupt(...)` at the first fault; `finish` refuses a stream
 * that stopped early.
 */
export class BackupParser {
  private state: State = 'header';
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private readonly hash: Hash = createHash('sha256');
  private consumed = 0;
  private records = 0;
  private dataBytes = 0;
  private last: { index: number; end: number } | undefined;
  private current: BackupRecord | undefined;
  header: BackupHeader | undefined;

  constructor(private readonly onRecord: (record: BackupRecord, data: Buffer) => Promise<void> | void = () => undefined) {}

  get bytesSeen(): number {
    return this.consumed + this.pendingBytes;
  }

  /** The bytes still needed before the parser can take its next step. */
  private need(): number {
    switch (this.state) {
      case 'header':
        return headerBytes;
      case 'record':
        return recordHeaderBytes;
      case 'data':
        return this.current!.length;
      case 'trailer':
        return trailerBytes;
      case 'done':
        return 0;
    }
  }

  private take(bytes: number): Buffer {
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingBytes);
    const taken = all.subarray(0, bytes);
    const rest = all.subarray(bytes);
    this.pending = rest.length > 0 ? [rest] : [];
    this.pendingBytes = rest.length;
    this.consumed += bytes;
    return taken;
  }

  async feed(chunk: Buffer): Promise<void> {
    if (this.state === 'done') {
      if (chunk.length > 0) throw corrupt(`${chunk.length} bytes follow the end of the stream`);
      return;
    }
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // A foreign stream is refused at its first bytes, before the rest is read.
    if (this.state === 'header' && this.consumed === 0) this.checkMagic();
    const done = () => (this.state as State) === 'done';
    while (!done() && this.pendingBytes >= this.need()) await this.step();
    if (done() && this.pendingBytes > 0) throw corrupt(`${this.pendingBytes} bytes follow the end of the stream`);
  }

  private checkMagic(): void {
    const head = Buffer.concat(this.pending, this.pendingBytes).subarray(0, backupMagic.length);
    if (!head.equals(backupMagic.subarray(0, head.length))) throw corrupt('it is not a dog vdi backup stream (no SDOGBKUP magic)');
  }

  private async step(): Promise<void> {
    switch (this.state) {
      case 'header':
        this.parseHeader(this.hashed(this.take(headerBytes)));
        this.state = 'record';
        return;
      case 'record': {
        const discard = this.parseRecord(this.hashed(this.take(recordHeaderBytes)));
        if (discard) await this.onRecord(discard, Buffer.alloc(0));
        return;
      }
      case 'data': {
        const record = this.current!;
        const data = this.hashed(this.take(record.length));
        this.current = undefined;
        this.state = 'record';
        await this.onRecord(record, data);
        return;
      }
      case 'trailer':
        this.parseTrailer(this.take(trailerBytes));
        this.state = 'done';
        return;
    }
  }

  private hashed(bytes: Buffer): Buffer {
    this.hash.update(bytes);
    return bytes;
  }

  private parseHeader(bytes: Buffer): void {
    const version = bytes.readUInt32LE(8);
    if (version !== backupVersion) throw corrupt(`format version ${version} is not one this dog reads (${backupVersion})`);
    const flags = bytes.readUInt32LE(12);
    if ((flags & ~flagFull) !== 0) throw corrupt(`unknown header flags 0x${flags.toString(16)}`);
    const size = bytes.readBigUInt64LE(16);
    const objectSizeBytes = bytes.readUInt32LE(24);
    const shift = Math.log2(objectSizeBytes);
    if (!Number.isInteger(shift) || shift < blockSizeShiftMin || shift > blockSizeShiftMax) throw corrupt(`object size ${objectSizeBytes} is not a power of 2 from 2^${blockSizeShiftMin} to 2^${blockSizeShiftMax}`);
    if (size === 0n || size > BigInt(vdiSizeBytesMax)) throw corrupt(`VDI size ${size} is out of range`);
    this.header = { full: (flags & flagFull) !== 0, vdiSizeBytes: Number(size), objectSizeBytes };
  }

  /** Returns a discard record (it has no data to wait for). */
  private parseRecord(bytes: Buffer): BackupRecord | undefined {
    const index = bytes.readUInt32LE(0);
    const code = bytes.readUInt32LE(4);
    const offset = bytes.readUInt32LE(8);
    const length = bytes.readUInt32LE(12);
    if (index === endIndex) {
      if (code !== 0 || offset !== 0 || length !== 0) throw corrupt('a malformed end record');
      this.state = 'trailer';
      return undefined;
    }
    const { objectSizeBytes, vdiSizeBytes } = this.header!;
    const objects = Math.ceil(vdiSizeBytes / objectSizeBytes);
    const at = `record ${this.records} (object ${index})`;
    const kind = code === 0 ? 'data' : code === 1 ? 'discard' : undefined;
    if (kind === undefined) throw corrupt(`${at} has unknown kind ${code}`);
    if (index >= objects) throw corrupt(`${at} is past the end of the VDI (${objects} objects)`);
    if (kind === 'data' && (length === 0 || offset + length > objectSizeBytes)) throw corrupt(`${at}: bytes ${offset}+${length} do not lie inside one object`);
    if (kind === 'discard' && (offset !== 0 || length !== 0)) throw corrupt(`${at}: a discard carries no bytes`);
    // Runs in order and apart: the stream can be no larger than the VDI, so restore's buffer is bounded.
    if (this.last && (index < this.last.index || (index === this.last.index && offset < this.last.end))) throw corrupt(`${at} is out of order`);
    this.last = { index, end: kind === 'discard' ? objectSizeBytes : offset + length };
    this.records += 1;
    this.dataBytes += length;
    const record = { index, kind, offset, length } as const;
    if (kind === 'discard') return record;
    this.current = record;
    this.state = 'data';
    return undefined;
  }

  private parseTrailer(bytes: Buffer): void {
    const counts = bytes.subarray(0, 24);
    const records = Number(counts.readBigUInt64LE(0));
    const dataBytes = Number(counts.readBigUInt64LE(8));
    const streamBytes = Number(counts.readBigUInt64LE(16));
    this.hash.update(counts);
    const sum = this.hash.digest();
    if (records !== this.records || dataBytes !== this.dataBytes) throw corrupt(`the trailer counts ${records} records of ${dataBytes} bytes, the stream holds ${this.records} of ${this.dataBytes}`);
    if (streamBytes !== this.consumed - 32) throw corrupt(`the trailer says ${streamBytes} bytes, the stream has ${this.consumed - 32}`);
    if (!sum.equals(bytes.subarray(24))) throw corrupt('the SHA-256 checksum does not match');
  }

  /** The stream has ended: refuses one that stopped before its trailer. */
  finish(): { header: BackupHeader; records: number; dataBytes: number; streamBytes: number } {
    if (this.state !== 'done') throw corrupt(`it is truncated: it ends after ${this.bytesSeen} bytes, inside its ${this.bytesSeen < headerBytes ? 'header' : this.state === 'trailer' ? 'trailer' : 'records'}`);
    return { header: this.header!, records: this.records, dataBytes: this.dataBytes, streamBytes: this.consumed };
  }
}
