// `dog vdi backup` and `dog vdi restore` (docs/backup-format.md). Backup streams the objects of
// snapshot TO whose owner differs from snapshot FROM's (or every allocated one), only the
// sectors that changed. Restore checks the whole stream before it touches anything: a regular
// file on stdin is read twice, a pipe is kept in a private temporary file meanwhile.
import type { Command } from 'commander';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SdError } from '../engine/errors.js';
import { parseSnapshotRef, snapshotRefText, type SnapshotRef, type VdiEntry } from '../engine/vdi.js';
import type { SheepClient } from '../rpc/sheep-client.js';
import { VolumeIo } from '../volume/volume-io.js';
import { BackupParser, BackupWriter, corrupt, type BackupHeader, type BackupRecord } from './backup-stream.js';
import { action, client, DogFailure, exitUsage, openVolume, withGlobals, type Globals } from './common.js';
import { Progress } from './progress.js';

const sectorBytes = 512;
/** Changed runs closer than this are sent as one: a record header per sector would cost more writes. */
const runGapMergeBytes = 4096;
/** Objects read (backup) or written (restore) at once. */
const objectWindow = 4;
const exitSysfail = 2;

/** Sector-aligned byte runs where `data` differs from `base` (zeros when there is none). */
export function changedRuns(data: Buffer, base: Buffer | undefined): Array<{ offset: number; length: number }> {
  const zeros = Buffer.alloc(sectorBytes);
  const runs: Array<{ offset: number; length: number }> = [];
  for (let at = 0; at < data.length; at += sectorBytes) {
    const end = Math.min(at + sectorBytes, data.length);
    const sector = data.subarray(at, end);
    const same = base ? sector.equals(base.subarray(at, end)) : sector.equals(zeros.subarray(0, end - at));
    if (same) continue;
    const last = runs.at(-1);
    if (last && at - (last.offset + last.length) <= runGapMergeBytes) last.length = end - last.offset;
    else runs.push({ offset: at, length: end - at });
  }
  return runs;
}

/** Writes to stdout, waiting while the pipe is full. */
async function toStdout(bytes: Buffer): Promise<void> {
  if (!process.stdout.write(bytes)) await new Promise((resolve) => process.stdout.once('drain', resolve));
}

function snapshotMissing(ref: SnapshotRef): DogFailure {
  const { id, tag } = snapshotRefText(ref);
  return new DogFailure(`Snapshot ID ${id} or tag ${tag} doesn't exist`);
}

async function openSnapshot(sheep: SheepClient, name: string, ref: SnapshotRef): Promise<VolumeIo> {
  try {
    return await openVolume(sheep, name, ref);
  } catch (error) {
    if (error instanceof DogFailure) throw snapshotMissing(ref);
    throw error;
  }
}

type ObjectBackup = { index: number; records: Array<{ record: BackupRecord; data?: Buffer }> };

/** What object `index` contributes to the stream: nothing, a discard, or its changed runs. */
async function objectBackup(index: number, to: VolumeIo, from: VolumeIo | undefined): Promise<ObjectBackup> {
  const objectBytes = to.info.objectSizeBytes;
  const toOwner = await to.owner(index);
  const fromOwner = from && index * objectBytes < from.info.sizeBytes ? await from.owner(index) : 0;
  if (toOwner === fromOwner) return { index, records: [] };
  if (toOwner === 0) return { index, records: [{ record: { index, kind: 'discard', offset: 0, length: 0 } }] };
  const length = Math.min(objectBytes, to.info.sizeBytes - index * objectBytes);
  const [data, base] = await Promise.all([
    to.readObject(index, 0, length),
    fromOwner !== 0 ? from!.readObject(index, 0, Math.min(length, from!.info.sizeBytes - index * objectBytes)) : undefined,
  ]);
  const records = changedRuns(data, base?.length === data.length ? base : undefined).map(({ offset, length: bytes }) => ({
    record: { index, kind: 'data' as const, offset, length: bytes },
    data: data.subarray(offset, offset + bytes),
  }));
  return { index, records };
}

async function backup(name: string, o: Globals & { snapshot?: string; from?: string }): Promise<void> {
  if (o.snapshot === undefined) throw new DogFailure("Please specify the snapshot to back up with the '-s' option", exitUsage);
  if (process.stdout.isTTY) throw new DogFailure('The backup stream is binary: redirect stdout to a file or a pipe', exitUsage);
  const sheep = client(o);
  const to = await openSnapshot(sheep, name, parseSnapshotRef(o.snapshot));
  const from = o.from === undefined ? undefined : await openSnapshot(sheep, name, parseSnapshotRef(o.from));
  if (from && from.info.objectSizeBytes !== to.info.objectSizeBytes) throw new DogFailure('The two snapshots have different object sizes');
  const objectBytes = to.info.objectSizeBytes;
  const objects = Math.ceil(to.info.sizeBytes / objectBytes);
  const changed: number[] = [];
  for (let index = 0; index < objects; index++) {
    const fromOwner = from && index * objectBytes < from.info.sizeBytes ? await from.owner(index) : 0;
    if ((await to.owner(index)) !== fromOwner) changed.push(index);
  }
  const progress = new Progress('backup', changed.length * objectBytes);
  const writer = new BackupWriter(toStdout);
  await writer.header({ full: from === undefined, vdiSizeBytes: to.info.sizeBytes, objectSizeBytes: objectBytes });
  const pending: Array<Promise<ObjectBackup>> = [];
  let next = 0;
  const start = () => {
    const work = objectBackup(changed[next++]!, to, from);
    work.catch(() => undefined);
    pending.push(work);
  };
  while (next < changed.length && pending.length < objectWindow) start();
  while (pending.length > 0) {
    const { records } = await pending.shift()!;
    if (next < changed.length) start();
    for (const { record, data } of records) await writer.record(record, data);
    progress.add(objectBytes);
  }
  await writer.end();
  progress.end();
}

/** Feeds a readable into the parser, and (for a pipe) into the temporary copy as well. */
async function parseFrom(input: NodeJS.ReadableStream, parser: BackupParser, copy?: fs.WriteStream, progress?: Progress): Promise<void> {
  for await (const chunk of input as AsyncIterable<Buffer>) {
    await parser.feed(chunk);
    progress?.add(chunk.length);
    if (copy && !copy.write(chunk)) await new Promise<void>((resolve) => copy.once('drain', () => resolve()));
  }
}

interface Source {
  /** Opens the stream again from its start, for the pass that applies it. */
  reopen(): NodeJS.ReadableStream;
  cleanup(): void;
}

/** Reads and checks the whole stream on stdin; nothing is changed until this returns. */
async function verifyStdin(): Promise<{ source: Source; summary: ReturnType<BackupParser['finish']> }> {
  const parser = new BackupParser();
  if (fs.fstatSync(0).isFile()) {
    await parseFrom(fs.createReadStream('', { fd: 0, start: 0, autoClose: false }), parser);
    const summary = parser.finish();
    return { summary, source: { reopen: () => fs.createReadStream('', { fd: 0, start: 0, autoClose: false }), cleanup: () => undefined } };
  }
  // A pipe can be read once: the copy is kept where only this user can read it, and removed.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-restore-'));
  const file = path.join(dir, 'stream');
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  try {
    const copy = fs.createWriteStream(file, { mode: 0o600 });
    try {
      await parseFrom(process.stdin, parser, copy);
    } finally {
      await new Promise<void>((resolve, reject) => copy.end((error?: Error | null) => (error ? reject(error) : resolve())));
    }
    return { summary: parser.finish(), source: { reopen: () => fs.createReadStream(file), cleanup } };
  } catch (error) {
    cleanup();
    throw error;
  }
}

/** Applies verified records to the restored working VDI, a few objects at once. */
class Applier {
  private readonly inflight = new Set<Promise<void>>();
  private failure: unknown;
  /** A full stream's object being gathered: it is written whole, from zeros. */
  private gathering: { index: number; data: Buffer } | undefined;
  readonly seen = new Set<number>();

  constructor(
    private readonly volume: VolumeIo,
    private readonly header: BackupHeader,
  ) {}

  private async launch(work: () => Promise<void>): Promise<void> {
    const running: Promise<void> = work()
      .catch((error: unknown) => void (this.failure ??= error))
      .finally(() => this.inflight.delete(running));
    this.inflight.add(running);
    if (this.inflight.size >= objectWindow) await Promise.race(this.inflight);
    if (this.failure !== undefined) throw this.failure;
  }

  private objectLength(index: number): number {
    const objectBytes = this.volume.info.objectSizeBytes;
    return Math.min(objectBytes, this.header.vdiSizeBytes - index * objectBytes);
  }

  private async flushGathered(): Promise<void> {
    const gathered = this.gathering;
    this.gathering = undefined;
    if (gathered) await this.launch(() => this.volume.writeObject(gathered.index, 0, gathered.data));
  }

  async apply(record: BackupRecord, data: Buffer): Promise<void> {
    this.seen.add(record.index);
    const objectBytes = this.volume.info.objectSizeBytes;
    if (record.kind === 'discard') {
      await this.launch(() => this.volume.discard(record.index * objectBytes, this.objectLength(record.index)));
      return;
    }
    if (!this.header.full) {
      const copy = Buffer.from(data); // the parser's buffer is reused once this returns
      await this.launch(() => this.volume.writeObject(record.index, record.offset, copy));
      return;
    }
    if (this.gathering?.index !== record.index) {
      await this.flushGathered();
      this.gathering = { index: record.index, data: Buffer.alloc(this.objectLength(record.index)) };
    }
    data.copy(this.gathering.data, record.offset);
  }

  async finish(): Promise<void> {
    await this.flushGathered();
    await Promise.all(this.inflight);
    if (this.failure !== undefined) throw this.failure;
    if (!this.header.full) return;
    // A whole snapshot: what the stream does not hold is a hole, whatever SNAP had there.
    const objectBytes = this.volume.info.objectSizeBytes;
    const objects = Math.ceil(this.volume.info.sizeBytes / objectBytes);
    for (let index = 0; index < objects; index++) {
      if (this.seen.has(index) || (await this.volume.owner(index)) === 0) continue;
      await this.launch(() => this.volume.discard(index * objectBytes, Math.min(objectBytes, this.volume.info.sizeBytes - index * objectBytes)));
    }
    await Promise.all(this.inflight);
    if (this.failure !== undefined) throw this.failure;
  }
}

async function restore(name: string, o: Globals & { snapshot?: string }): Promise<void> {
  if (o.snapshot === undefined) throw new DogFailure("We can restore a backup file only to snapshots: please specify the '-s' option", exitUsage);
  if (process.stdin.isTTY) throw new DogFailure('stdin must be pipe', exitUsage);
  const ref = parseSnapshotRef(o.snapshot);
  const sheep = client(o);
  let snapshot: VdiEntry;
  try {
    snapshot = await sheep.lookup(name, ref);
  } catch (error) {
    if (error instanceof SdError && (error.code === 'NO_VDI' || error.code === 'NO_TAG')) throw snapshotMissing(ref);
    throw error;
  }
  // A writer would go on writing into what becomes a snapshot.
  const writer = (await sheep.vdiLocks()).find((l) => l.name === name);
  if (writer) throw new DogFailure(`VDI ${name} is open for writing by ${writer.client} through ${writer.node}: stop its writers first (dog vdi lock list)`);
  const { source, summary } = await verifyStdin().catch((error: unknown) => {
    if (error instanceof SdError && error.code === 'CORRUPT') throw new DogFailure(error.message, exitSysfail);
    throw error;
  });
  try {
    const header = summary.header;
    const objectBytes = 2 ** snapshot.blockSizeShift;
    if (header.objectSizeBytes !== objectBytes) {
      throw new DogFailure(corrupt(`its objects are ${header.objectSizeBytes} bytes, the VDI's ${objectBytes}`).message, exitSysfail);
    }
    // As the original: the working VDI's state is kept, as an untagged snapshot, before the rollback.
    const working = await sheep.lookup(name, undefined).catch((error: unknown) => {
      if (error instanceof SdError && error.code === 'NO_VDI') return undefined;
      throw error;
    });
    let kept = '';
    if (working) kept = ` (the state before the restore is snapshot id ${(await sheep.vdiSnapshot(name, '')).snapId} of ${name})`;
    try {
      let entry = await sheep.vdiRollback(name, ref);
      if (header.vdiSizeBytes > entry.sizeBytes) entry = await sheep.vdiResize(name, header.vdiSizeBytes);
      await sheep.enableDirectIo();
      const applier = new Applier(new VolumeIo(sheep, entry), header);
      const parser = new BackupParser((record, data) => applier.apply(record, data));
      const progress = new Progress('restore', summary.streamBytes);
      await parseFrom(source.reopen(), parser, undefined, progress);
      parser.finish();
      await applier.finish();
      progress.end();
    } catch (error) {
      if (error instanceof DogFailure) throw error;
      const message = error instanceof SdError ? error.message : String(error);
      throw new DogFailure(`Failed to restore the backup: ${message}${kept}`);
    }
  } finally {
    source.cleanup();
  }
}

export function addBackupCommands(vdi: Command): void {
  withGlobals(
    vdi
      .command('backup')
      .description('write snapshot TO (or what changed since FROM) as a backup stream to stdout')
      .argument('<NAME>'),
  )
    .option('-s, --snapshot <TO>', 'snapshot tag or id to back up')
    .option('-F, --from <FROM>', 'older snapshot: only the blocks changed since it')
    .action(action(backup));
  withGlobals(
    vdi
      .command('restore')
      .description('roll NAME back to snapshot SNAP and apply the backup stream on stdin')
      .argument('<NAME>'),
  )
    .option('-s, --snapshot <SNAP>', 'snapshot tag or id the stream applies to')
    .action(action(restore));
}
