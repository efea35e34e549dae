// `dog cluster snapshot save|list|show|load` (the original's farm, docs/dog.md): every VDI of the
// cluster into a local directory. Objects are files named by their SHA-1 (DIR/objects/<sha1>),
// shared between tags and saves; a tag's manifest is itself such an object, named by DIR/snap.log.
// Load checks the manifest and every object before it creates anything.
import type { Command } from 'commander';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { VdiEntry } from '../engine/vdi.js';
import type { SheepClient } from '../rpc/sheep-client.js';
import { VolumeIo } from '../volume/volume-io.js';
import { action, client, DogFailure, exitSysfail, exitUsage, out, withGlobals, type Globals } from './common.js';
import { Progress } from './progress.js';

const manifestVersion = 1;

interface SavedVdi extends Omit<VdiEntry, 'deleted'> {
  /** [object index, SHA-1 of its bytes]; a missing index is a hole. */
  objects: Array<[number, string]>;
}
interface Manifest {
  version: number;
  tag: string;
  timeSec: number;
  vdis: SavedVdi[];
}
interface LogEntry {
  idx: number;
  tag: string;
  timeSec: number;
  manifest: string;
}

const sha1 = (data: Buffer): string => createHash('sha1').update(data).digest('hex');
const objectPath = (dir: string, sum: string): string => path.join(dir, 'objects', sum);
const logPath = (dir: string): string => path.join(dir, 'snap.log');

function readLog(dir: string): LogEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(logPath(dir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new DogFailure(`Fail to read ${logPath(dir)}: ${(error as Error).message}`, exitSysfail);
  }
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      try {
        return JSON.parse(line) as LogEntry;
      } catch {
        throw new DogFailure(`${logPath(dir)} is damaged`, exitSysfail);
      }
    });
}

/** Stores `data` under its checksum, once: written aside then renamed, never half there. */
function storeObject(dir: string, data: Buffer): string {
  const sum = sha1(data);
  const file = objectPath(dir, sum);
  if (!fs.existsSync(file)) {
    fs.writeFileSync(`${file}.tmp`, data);
    fs.renameSync(`${file}.tmp`, file);
  }
  return sum;
}

/** The object's bytes, checked against the name they are stored under. */
function loadObject(dir: string, sum: string): Buffer {
  let data: Buffer;
  try {
    data = fs.readFileSync(objectPath(dir, sum));
  } catch {
    throw new DogFailure(`Fail to load object ${sum}: it is missing from ${dir}`, exitSysfail);
  }
  if (sha1(data) !== sum) throw new DogFailure(`Fail to load object ${sum}: its checksum does not match`, exitSysfail);
  return data;
}

/** A tag (or, as in the original, an index) of the log. */
function findTag(dir: string, tagOrIdx: string): LogEntry {
  const log = readLog(dir);
  const found = /^\d+$/.test(tagOrIdx) ? log.find((e) => e.idx === Number(tagOrIdx)) : log.find((e) => e.tag === tagOrIdx);
  if (!found) throw new DogFailure('Snapshot index or tag does not exist.');
  return found;
}

function readManifest(dir: string, entry: LogEntry): Manifest {
  const manifest = JSON.parse(loadObject(dir, entry.manifest).toString('utf8')) as Manifest;
  if (manifest.version !== manifestVersion) throw new DogFailure(`Unknown snapshot format version ${manifest.version}`, exitSysfail);
  return manifest;
}

const objectLength = (v: { sizeBytes: number; blockSizeShift: number }, index: number): number =>
  Math.min(2 ** v.blockSizeShift, v.sizeBytes - index * 2 ** v.blockSizeShift);

/** A file system failure (not a directory, no space, no permission) in one line, as the original's. */
async function saving(tag: string, dir: string | undefined, o: Globals): Promise<void> {
  if (/^\s*[+-]?\d/.test(tag)) throw new DogFailure('Tag should not start with number.', exitUsage);
  if (dir === undefined) throw new DogFailure('Please specify the path to save snapshot.', exitUsage);
  try {
    await save(tag, dir, o);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && code.startsWith('E')) throw new DogFailure(`Fail to save snapshot to path: ${dir}: ${(error as Error).message}`, exitSysfail);
    throw error;
  }
}

async function save(tag: string, dir: string, o: Globals): Promise<void> {
  fs.mkdirSync(path.join(dir, 'objects'), { recursive: true });
  const log = readLog(dir);
  if (log.some((e) => e.tag === tag)) throw new DogFailure('Snapshot tag has already been used for another snapshot, please, use another one.');
  const sheep = client(o);
  const entries = (await sheep.vdiAll()).filter((e) => !e.deleted);
  if (entries.length === 0) throw new DogFailure('Cannot execute: the cluster is empty.');
  await sheep.enableDirectIo();
  const total = entries.reduce((sum, e) => sum + e.sizeBytes, 0);
  const progress = new Progress('save', total);
  const vdis: SavedVdi[] = [];
  for (const entry of entries) {
    const volume = new VolumeIo(sheep, entry);
    const objects: Array<[number, string]> = [];
    const count = Math.ceil(entry.sizeBytes / 2 ** entry.blockSizeShift);
    for (let index = 0; index < count; index++) {
      if ((await volume.owner(index)) !== 0) objects.push([index, storeObject(dir, await volume.readObject(index, 0, objectLength(entry, index)))]);
      progress.add(objectLength(entry, index));
    }
    const { deleted: _deleted, ...kept } = entry;
    vdis.push({ ...kept, objects });
  }
  progress.end();
  const timeSec = Math.floor(Date.now() / 1000);
  const manifest = storeObject(dir, Buffer.from(JSON.stringify({ version: manifestVersion, tag, timeSec, vdis } satisfies Manifest)));
  const idx = (log.at(-1)?.idx ?? 0) + 1;
  fs.appendFileSync(logPath(dir), `${JSON.stringify({ idx, tag, timeSec, manifest } satisfies LogEntry)}\n`);
}

/** The C library's ctime(3) text, in local time. */
function ctime(sec: number): string {
  const d = new Date(sec * 1000);
  const day = d.toLocaleString('en-US', { weekday: 'short' });
  const month = d.toLocaleString('en-US', { month: 'short' });
  const two = (n: number) => String(n).padStart(2, '0');
  return `${day} ${month} ${String(d.getDate()).padStart(2, ' ')} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())} ${d.getFullYear()}`;
}

function list(dir: string): void {
  if (!fs.existsSync(dir)) throw new DogFailure(`Fail to list snapshot: no such directory ${dir}`, exitSysfail);
  const lines = ['Index\t\tTag\t\tSnapshot Time'];
  for (const e of readLog(dir)) lines.push(`${e.idx}\t\t${e.tag}\t\t${ctime(e.timeSec)}`);
  out(`${lines.join('\n')}\n`);
}

function show(tagOrIdx: string, dir: string | undefined): void {
  if (dir === undefined) throw new DogFailure('Please specify the path to show snapshot.', exitUsage);
  const manifest = readManifest(dir, findTag(dir, tagOrIdx));
  out(manifest.vdis.map((v, n) => `${n + 1}. VDI id: ${v.vid.toString(16)}, name: ${v.name}, tag: ${v.tag}\n`).join(''));
}

/** Makes VOLUME's objects those of `want`: writes what differs from `had`, discards what `want` lacks. */
async function fill(dir: string, volume: VolumeIo, want: SavedVdi, had: Map<number, string>, progress: Progress): Promise<void> {
  const wanted = new Map(want.objects);
  for (const [index, sum] of wanted) {
    if (had.get(index) !== sum) await volume.writeObject(index, 0, loadObject(dir, sum));
    progress.add(objectLength(want, index));
  }
  for (const index of had.keys()) {
    if (!wanted.has(index) && index * 2 ** want.blockSizeShift < want.sizeBytes) await volume.discard(index * 2 ** want.blockSizeShift, objectLength(want, index));
  }
}

/** Recreates one name's chain: each snapshot in the order it was taken, then the working VDI. */
async function loadChain(sheep: SheepClient, dir: string, chain: SavedVdi[], byVid: Map<number, SavedVdi>, progress: Progress): Promise<void> {
  const first = chain[0]!;
  const parent = byVid.get(first.parentVid);
  let entry: VdiEntry;
  let had = new Map<number, string>();
  if (parent && parent.name !== first.name) {
    entry = await sheep.vdiClone(parent.name, { snapId: parent.snapId }, first.name, first.copies);
    had = new Map(parent.objects);
  } else {
    entry = await sheep.vdiCreate(first.name, first.sizeBytes, first.copies, first.hyper, first.copyPolicy);
  }
  for (const saved of chain) {
    if (saved.sizeBytes > entry.sizeBytes) entry = await sheep.vdiResize(saved.name, saved.sizeBytes);
    await fill(dir, new VolumeIo(sheep, entry), saved, had, progress);
    had = new Map(saved.objects);
    if (saved.snapshotSec !== 0) entry = (await sheep.vdiSnapshot(saved.name, saved.tag), await sheep.lookup(saved.name, undefined));
  }
  // Only snapshots were saved under this name: the working VDI the chain left behind goes.
  if (chain.at(-1)!.snapshotSec !== 0) await sheep.vdiDelete(first.name, undefined);
}

async function load(tagOrIdx: string, dir: string | undefined, o: Globals): Promise<void> {
  if (dir === undefined) throw new DogFailure('Please specify the path to save snapshot.', exitUsage);
  const manifest = readManifest(dir, findTag(dir, tagOrIdx));
  // Every object is read and checked before the cluster is touched.
  for (const v of manifest.vdis) for (const [, sum] of v.objects) loadObject(dir, sum);
  const sheep = client(o);
  if ((await sheep.vdiAll()).some((e) => !e.deleted)) throw new DogFailure('Fail to load snapshot: the cluster has VDIs; load needs a freshly formatted cluster');
  await sheep.enableDirectIo();
  const byVid = new Map(manifest.vdis.map((v) => [v.vid, v]));
  const chains = new Map<string, SavedVdi[]>();
  for (const v of [...manifest.vdis].sort((a, b) => a.snapId - b.snapId)) chains.set(v.name, [...(chains.get(v.name) ?? []), v]);
  const progress = new Progress('load', manifest.vdis.reduce((sum, v) => sum + v.objects.reduce((s, [i]) => s + objectLength(v, i), 0), 0));
  const done = new Set<string>();
  // A clone's chain waits for the chain holding its parent snapshot.
  const visit = async (name: string): Promise<void> => {
    if (done.has(name)) return;
    done.add(name);
    const chain = chains.get(name)!;
    const parent = byVid.get(chain[0]!.parentVid);
    if (parent && parent.name !== name) await visit(parent.name);
    await loadChain(sheep, dir, chain, byVid, progress);
  };
  for (const name of chains.keys()) await visit(name);
  progress.end();
}

export function addClusterSnapshotCommands(cluster: Command): void {
  const snapshot = cluster.command('snapshot').description('snapshot/restore the cluster');
  withGlobals(snapshot.command('save').description('save snapshot to localpath').argument('<TAG>').argument('[PATH]')).action(action(saving));
  withGlobals(snapshot.command('list').description('list snapshot of localpath').argument('<PATH>')).action(
    action(async (dir: string) => list(dir)),
  );
  withGlobals(snapshot.command('load').description('load snapshot from localpath').argument('<TAG|IDX>').argument('[PATH]')).action(action(load));
  withGlobals(snapshot.command('show').description('show vdi list from snapshot').argument('<TAG|IDX>').argument('[PATH]')).action(
    action(async (tag: string, dir: string | undefined) => show(tag, dir)),
  );
}
