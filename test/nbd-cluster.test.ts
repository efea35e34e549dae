// NBD against a real three-node cluster (copies 3): the standard disk tools (qemu-img, qemu-io,
// nbdinfo, nbdcopy) reach VDIs through any sheep, every result checked through another node, dog,
// or the object files on each store's disk.
// Ports 7900-7902 (sheep) and 11900-11902 (NBD) belong to this file.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, md5, run, sleep, startCluster, waitForPort } from './support/cluster.js';
import { GatheringVolume, runsOf } from '../src/nbd/gather.js';
import { MemoryVolumeProvider, WriteGate } from './support/memory-volume.js';
import { rawNbdWrite } from './support/nbd-raw.js';

const MiB = 1024 * 1024;
const objectBytes = 4 * MiB;
const vdiBytes = 256 * MiB;
const basePort = 7900;
const nbdBasePort = 11900;
const toolTimeoutMs = 90_000;
const nbdEperm = 1;
const nbdFlagReadOnly = 1 << 1;

function url(node: number, exportName: string): string {
  return `nbd://127.0.0.1:${nbdBasePort + node}/${exportName}`;
}

interface ToolResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function tool(command: string, args: string[], timeoutMs = toolTimeoutMs): Promise<ToolResult> {
  const result = await run(command, args, { timeoutMs });
  if (result.timedOut) throw new Error(`${command} ${args.join(' ')} timed out after ${timeoutMs} ms`);
  return { code: result.code, stdout: result.stdout, stderr: result.stderr };
}

async function toolOk(command: string, args: string[], timeoutMs = toolTimeoutMs): Promise<string> {
  const result = await tool(command, args, timeoutMs);
  if (result.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
  return result.stdout;
}

/** A row of `dog vdi list -r`: `= NAME SNAPID SIZE USED SHARED CTIME VID COPIES TAG SHIFT`. */
interface RawRow {
  name: string;
  snapId: string;
  usedBytes: number;
  vid: string;
  tag: string;
}

function rawRows(text: string): RawRow[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      return { name: f[1]!, snapId: f[2]!, usedBytes: Number(f[4]), vid: f[7]!, tag: f[9] ?? '' };
    });
}

/** A data object's file name: `00<vid 6 hex><index 8 hex>`. */
function dataOid(vid: string, index: number): string {
  return `00${vid.padStart(6, '0')}${index.toString(16).padStart(8, '0')}`;
}

/** `nbdinfo --map` lines: offset, length, type, description. */
function parseMap(text: string): Array<{ offset: number; length: number; data: boolean }> {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [offset, length, type, description] = line.trim().split(/\s+/);
      expect(description, line).toMatch(/^(data|hole,zero)$/);
      return { offset: Number(offset), length: Number(length), data: Number(type) === 0 };
    });
}

/** Object indexes touched by byte ranges. */
function objectsOf(regions: ReadonlyArray<{ offset: number; length: number }>): number[] {
  const set = new Set<number>();
  for (const { offset, length } of regions) {
    for (let i = Math.floor(offset / objectBytes); i <= Math.floor((offset + length - 1) / objectBytes); i++) set.add(i);
  }
  return [...set].sort((a, b) => a - b);
}

/** Whole-object ranges of the given indexes, neighbours merged (as block status reports them). */
function mergedRanges(indexes: number[]): Array<{ offset: number; length: number }> {
  const ranges: Array<{ offset: number; length: number }> = [];
  for (const i of indexes) {
    const last = ranges.at(-1);
    if (last && last.offset + last.length === i * objectBytes) last.length += objectBytes;
    else ranges.push({ offset: i * objectBytes, length: objectBytes });
  }
  return ranges;
}

// The sheep serves NBD with write gathering (src/nbd/gather.ts); its rules, checked without a cluster.
describe('write gathering', () => {
  const at = (offsetBytes: number, length: number) => ({ offsetBytes, data: Buffer.alloc(length) });

  it('joins adjacent disjoint requests in offset order; any overlap keeps arrival order, unmerged', () => {
    const disjoint = [at(8192, 4096), at(0, 4096), at(4096, 4096), at(65536, 10)];
    expect(runsOf(disjoint)).toEqual({ runs: [[disjoint[1], disjoint[2], disjoint[0]], [disjoint[3]]], ordered: false });
    const overlapping = [at(0, 8192), at(4096, 4096), at(8192, 4096)];
    expect(runsOf(overlapping)).toEqual({ runs: overlapping.map((p) => [p]), ordered: true });
  });

  it('writes queued behind a running write to the same object become one write; data and acks are right', async () => {
    const provider = new MemoryVolumeProvider();
    provider.createVdi('g', 16 * MiB);
    const inner = await provider.open('g');
    const sizes: number[] = [];
    const write = inner.write.bind(inner);
    inner.write = (offsetBytes: number, data: Buffer) => {
      sizes.push(data.length);
      return write(offsetBytes, data);
    };
    const gate = new WriteGate();
    provider.writeGate = gate;
    const volume = new GatheringVolume(inner);
    const piece = 256 * 1024;
    const acks: number[] = [];
    const writes = Array.from({ length: 16 }, (_, k) =>
      volume.write(k * piece, Buffer.alloc(piece, k + 1)).then(() => acks.push(k)));
    // Another object is not held up by object 0.
    const other = volume.write(objectBytes + 5, Buffer.from('other'));
    await sleep(20);
    expect(acks).toEqual([]);
    expect(gate.waitingCount).toBe(2);
    gate.open();
    await Promise.all([...writes, other]);
    expect(acks.length).toBe(16);
    expect(sizes.sort((a, b) => a - b)).toEqual([5, piece, 15 * piece]);
    const back = await volume.read(0, 16 * piece);
    for (let k = 0; k < 16; k++) expect(back[k * piece]! + back[(k + 1) * piece - 1]!).toBe(2 * (k + 1));
    expect((await volume.read(objectBytes + 5, 5)).toString()).toBe('other');
    await volume.close();
  });

  it('a failed gathered write fails every request in it, and later writes still go through', async () => {
    const provider = new MemoryVolumeProvider();
    provider.createVdi('f', 16 * MiB);
    const inner = await provider.open('f');
    const write = inner.write.bind(inner);
    let fail = true;
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    inner.write = async (offsetBytes: number, data: Buffer) => {
      if (first) {
        first = false;
        await held;
        return write(offsetBytes, data);
      }
      if (fail) throw new Error('replica lost');
      return write(offsetBytes, data);
    };
    const volume = new GatheringVolume(inner);
    const head = volume.write(0, Buffer.alloc(4096, 1));
    const queued = [volume.write(4096, Buffer.alloc(4096, 2)), volume.write(8192, Buffer.alloc(4096, 3))];
    release();
    await head;
    for (const q of queued) await expect(q).rejects.toThrow('replica lost');
    fail = false;
    await volume.write(4096, Buffer.alloc(4096, 4));
    expect((await volume.read(4096, 1))[0]).toBe(4);
    await volume.close();
  });
});

describe('NBD on a three-node cluster, copies 3', () => {
  let c: Cluster;
  let work: string;
  let sparsePath: string;
  let randomPath: string;
  let randomMd5: string;
  /** Data regions of the sparse image: whole objects, unaligned pieces, the very end. */
  const regions = [
    { offset: 0, length: 8 * MiB },
    { offset: 100 * MiB, length: 4 * MiB },
    { offset: 150_001_000, length: 3_000_000 },
    { offset: 201 * MiB + 12_345, length: 5_000 },
    { offset: vdiBytes - 777, length: 777 },
  ];

  async function rawList(node = 0): Promise<RawRow[]> {
    return rawRows((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(node) })).out);
  }

  async function row(name: string, tag = ''): Promise<RawRow> {
    const found = (await rawList()).find((r) => r.name === name && r.tag === tag);
    if (!found) throw new Error(`no VDI ${name} tag '${tag}'`);
    return found;
  }

  /** Data object files of a VDI on store i. */
  function dataFiles(i: number, vid: string): string[] {
    const prefix = `00${vid.padStart(6, '0')}`;
    return c.objectFiles(i).filter((oid) => oid.startsWith(prefix));
  }

  beforeAll(async () => {
    c = await startCluster({
      nodes: 3,
      copies: 3,
      basePort,
      prefix: 'nbd-cluster-',
      // Node 2 acknowledges every write only once it is durable (docs/durability.md).
      sheepArgs: (i) => ['--nbd', `127.0.0.1:${nbdBasePort + i}`, ...(i === 2 ? ['--writethrough'] : [])],
    });
    for (let i = 0; i < 3; i++) await waitForPort(nbdBasePort + i);
    work = path.join(c.root, 'work');
    fs.mkdirSync(work);

    // The sparse image the way a user makes one: truncate, then dd pieces of random data in place.
    const noise = path.join(work, 'noise');
    fs.writeFileSync(noise, randomBytes(8 * MiB));
    sparsePath = path.join(work, 'sparse.raw');
    await toolOk('truncate', ['-s', String(vdiBytes), sparsePath]);
    for (const { offset, length } of regions) {
      await toolOk('dd', [`if=${noise}`, `of=${sparsePath}`, 'bs=64K', 'conv=notrunc', 'iflag=count_bytes', 'oflag=seek_bytes',
        `seek=${offset}`, `count=${length}`, 'status=none']);
    }
    expect(fs.statSync(sparsePath).blocks * 512).toBeLessThan(32 * MiB);

    randomPath = path.join(work, 'random.raw');
    const random = randomBytes(vdiBytes);
    randomMd5 = md5(random);
    fs.writeFileSync(randomPath, random);
  });

  afterAll(async () => {
    await c?.stop();
  });

  it('qemu-img convert through node 0 → compare through node 2 identical; the map and used space show only what was written', async () => {
    await c.dogOk(['vdi', 'create', 'disk', '256M']);
    await toolOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', sparsePath, url(0, 'disk')]);
    const compare = await toolOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', sparsePath, url(2, 'disk')]);
    expect(compare.trim()).toBe('Images are identical.');

    const written = objectsOf(regions);
    expect(written).toEqual([0, 1, 25, 35, 36, 50, 63]);
    const map = parseMap(await toolOk('nbdinfo', ['--map', url(1, 'disk')]));
    // Block status covers the whole export, in order, without gaps.
    let at = 0;
    for (const extent of map) {
      expect(extent.offset).toBe(at);
      at += extent.length;
    }
    expect(at).toBe(vdiBytes);
    const data = map.filter((e) => e.data).map(({ offset, length }) => ({ offset, length }));
    expect(data).toEqual(mergedRanges(written));
    expect(map.filter((e) => !e.data).length).toBeGreaterThanOrEqual(4);

    const disk = await row('disk');
    expect(disk.usedBytes).toBe(written.length * objectBytes);
    // Every store holds exactly the written objects (copies 3 on 3 nodes).
    for (let i = 0; i < 3; i++) expect(dataFiles(i, disk.vid)).toEqual(written.map((k) => dataOid(disk.vid, k)));
  });

  it('nbdcopy --connections=4 into a VDI through node 1 and out through node 2: same md5', async () => {
    await c.dogOk(['vdi', 'create', 'copy', '256M']);
    await toolOk('nbdcopy', ['--connections=4', randomPath, url(1, 'copy')]);
    const out = path.join(work, 'copy-out.raw');
    await toolOk('nbdcopy', ['--connections=4', url(2, 'copy'), out]);
    expect(md5(fs.readFileSync(out))).toBe(randomMd5);
    fs.rmSync(out);
    expect((await row('copy')).usedBytes).toBe(vdiBytes);
    // And dog sees the same bytes.
    const read = await c.dog(['vdi', 'read', 'copy'], { port: c.port(0) });
    expect(read.code).toBe(0);
    expect(md5(read.stdout)).toBe(randomMd5);
  });

  it('writeback and writethrough (sheep --writethrough, an export NAME/writethrough) pass md5 through every node', async () => {
    const out = path.join(work, 'through-out.raw');
    for (const [name, via] of [['wb', url(0, 'wb')], ['wt-sheep', url(2, 'wt-sheep')], ['wt-export', url(1, 'wt-export/writethrough')]] as const) {
      await c.dogOk(['vdi', 'create', name, '256M']);
      await toolOk('nbdcopy', ['--connections=4', randomPath, via]);
      for (const node of [0, 1, 2]) {
        await toolOk('nbdcopy', ['--connections=4', url(node, name), out]);
        expect(md5(fs.readFileSync(out)), `${name} through node ${node}`).toBe(randomMd5);
      }
    }
    fs.rmSync(out);
  });

  it('qemu-io patterns round-trip; TRIM of the whole export frees every data object on every disk', async () => {
    await c.dogOk(['vdi', 'create', 'io', '256M']);
    await toolOk('qemu-io', ['-f', 'raw', url(0, 'io'), '-c', 'write -P 0xab 1000 5000']);
    expect(await toolOk('qemu-io', ['-f', 'raw', url(1, 'io'), '-c', 'read -P 0xab 1000 5000'])).toContain('read 5000/5000 bytes');
    const wrong = await tool('qemu-io', ['-f', 'raw', url(1, 'io'), '-c', 'read -P 0xac 1000 5000']);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stdout + wrong.stderr).toContain('Pattern verification failed');
    // The bytes around the write are still zeros.
    await toolOk('qemu-io', ['-f', 'raw', url(2, 'io'), '-c', 'read -P 0 0 1000', '-c', 'read -P 0 6000 4000000']);

    // Fill a few more objects, then discard everything.
    await toolOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', sparsePath, url(0, 'io')]);
    const io = await row('io');
    for (let i = 0; i < 3; i++) expect(dataFiles(i, io.vid).length).toBe(7);
    await toolOk('qemu-io', ['-f', 'raw', url(0, 'io'), '-c', 'discard 0 256M']);
    for (let i = 0; i < 3; i++) expect(dataFiles(i, io.vid), `store ${i}`).toEqual([]);
    expect((await row('io')).usedBytes).toBe(0);
    await toolOk('qemu-io', ['-f', 'raw', url(1, 'io'), '-c', `read -P 0 0 ${vdiBytes}`]);
    const map = parseMap(await toolOk('nbdinfo', ['--map', url(2, 'io')]));
    expect(map).toEqual([{ offset: 0, length: vdiBytes, data: false }]);
  });

  it('a snapshot export (NAME:TAG, NAME:SNAPID) is read-only and reads the snapshot; NBD writes are visible to dog', async () => {
    await c.dogOk(['vdi', 'create', 'snap', '256M']);
    await toolOk('qemu-io', ['-f', 'raw', url(0, 'snap'), '-c', 'write -P 0x11 0 1M']);
    const before = await c.dogOk(['vdi', 'read', 'snap', '0', '1M'], { port: c.port(1) });
    expect(md5(before.stdout)).toBe(md5(Buffer.alloc(MiB, 0x11)));

    await c.dogOk(['vdi', 'snapshot', '-s', 't1', 'snap']);
    await toolOk('qemu-io', ['-f', 'raw', url(0, 'snap'), '-c', 'write -P 0x22 0 1M']);
    const after = await c.dogOk(['vdi', 'read', 'snap', '0', '1M'], { port: c.port(2) });
    expect(md5(after.stdout)).toBe(md5(Buffer.alloc(MiB, 0x22)));
    const frozen = await row('snap', 't1');

    for (const spec of ['snap:t1', `snap:${frozen.snapId}`]) {
      // qemu-io refuses to open a read-only export for writing.
      const write = await tool('qemu-io', ['-f', 'raw', url(1, spec), '-c', 'write -P 0x33 0 1M']);
      expect(write.code, spec).not.toBe(0);
      expect(write.stderr).toMatch(/Permission denied|read-only/i);
      const info = await toolOk('nbdinfo', [url(1, spec)]);
      expect(info).toContain('is_read_only: true');
      // The server itself refuses a write (a client that does not check the flag).
      const raw = await rawNbdWrite(nbdBasePort + 2, spec, 0, Buffer.alloc(4096, 0x44));
      expect(raw.transmissionFlags & nbdFlagReadOnly).toBe(nbdFlagReadOnly);
      expect(raw.error).toBe(nbdEperm);
      // The snapshot's bytes, not the working VDI's.
      await toolOk('qemu-io', ['-r', '-f', 'raw', url(2, spec), '-c', 'read -P 0x11 0 1M']);
      const wrong = await tool('qemu-io', ['-r', '-f', 'raw', url(2, spec), '-c', 'read -P 0x22 0 1M']);
      expect(wrong.code).not.toBe(0);
    }
    const snapRead = await c.dogOk(['vdi', 'read', '-s', 't1', 'snap', '0', '1M']);
    expect(md5(snapRead.stdout)).toBe(md5(Buffer.alloc(MiB, 0x11)));
    // The working VDI still accepts raw writes.
    const raw = await rawNbdWrite(nbdBasePort + 1, 'snap', 0, Buffer.alloc(4096, 0x44));
    expect(raw.error).toBe(0);
    const head = await c.dogOk(['vdi', 'read', 'snap', '0', '4096']);
    expect(head.stdout.equals(Buffer.alloc(4096, 0x44))).toBe(true);
  });

  it('an unknown export fails with the server message; nbdinfo --list lists the VDIs', async () => {
    const nbdinfo = await tool('nbdinfo', [url(0, 'nope')]);
    expect(nbdinfo.code).not.toBe(0);
    expect(nbdinfo.stderr).toContain('No such file or directory for export: nope');
    const debug = await tool('env', ['LIBNBD_DEBUG=1', 'nbdinfo', url(0, 'nope')]);
    expect(debug.stderr).toContain('server error message: nope: No VDI found');
    const qemu = await tool('qemu-img', ['info', '-f', 'raw', url(1, 'nope')]);
    expect(qemu.code).not.toBe(0);
    expect(qemu.stderr).toContain('server reported: nope: No VDI found');
    const missingTag = await tool('qemu-img', ['info', '-f', 'raw', url(1, 'snap:t9')]);
    expect(missingTag.code).not.toBe(0);
    expect(missingTag.stderr).toMatch(/server reported: .*snap:t9|server reported: .*tag/i);

    const list = await toolOk('nbdinfo', ['--list', url(2, '')]);
    const names = [...list.matchAll(/^export="([^"]*)":/gm)].map((m) => m[1]).sort();
    expect(names).toEqual(['copy', 'disk', 'io', 'snap', 'wb', 'wt-export', 'wt-sheep']);
  });

  it('a node SIGKILLed while nbdcopy writes 256 MiB through another: the copy completes and the VDI is identical', async () => {
    await c.dogOk(['vdi', 'create', 'survive', '256M']);
    const { vid } = await row('survive');
    const copy = tool('nbdcopy', ['--connections=4', randomPath, url(0, 'survive')], 120_000);
    // Kill once the copy is well under way (some objects already on disk), not before it starts.
    const deadline = Date.now() + 60_000;
    while (dataFiles(0, vid).length < 8) {
      if (Date.now() > deadline) throw new Error('nbdcopy made no progress');
      await sleep(50);
    }
    await c.kill(1, 'SIGKILL');
    const written = dataFiles(0, vid).length;
    expect(written).toBeLessThan(64);
    const result = await copy;
    expect(result.code, result.stderr).toBe(0);
    await c.waitForMembers();
    const compare = await toolOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', randomPath, url(2, 'survive')]);
    expect(compare.trim()).toBe('Images are identical.');
    const read = await c.dog(['vdi', 'read', 'survive'], { port: c.port(2) });
    expect(md5(read.stdout)).toBe(randomMd5);
  });
});
