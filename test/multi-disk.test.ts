// Multi-disk sheep end to end (docs/multi-disk.md): sheep 0 spreads its objects over three
// directories, sheep 1 over two small loop-mounted ext4 file systems (one fills up, then each is
// made to fail with EIO by shutting the file system down), sheep 2 keeps one store directory.
// A disk is unplugged and another fails under writes; the data reads back right through every node.
// Needs root (mount, losetup). Ports 13300-13302.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MdRing } from '../src/engine/md-ring.js';
import { Cluster, dog, md5, pattern, poll } from './support/cluster.js';

const basePort = 13300;
// Fixed paths: a disk's place on the ring hashes its path, so where each object goes (which
// loop disk fills up) is the same at every run.
const root = `/tmp/sheep-md-${basePort}`;
const dirDisks = ['d0', 'd1', 'd2'].map((d) => path.join(root, d));
const loops = [
  // Each disk's store preallocates a 16 MiB journal: the small one has room for a few objects.
  { name: 'L1', sizeMiB: 24 },
  { name: 'L2', sizeMiB: 96 },
].map((l) => ({ ...l, image: path.join(root, `${l.name}.img`), mount: path.join(root, l.name) }));
// 1 MiB objects (block size shift 20): enough objects to spread, little data to move.
const objectBytes = 1024 * 1024;
const dataObjects = 24;
const vdiBytes = dataObjects * objectBytes;
/** The data objects and the VDI's inode. */
const objectCount = dataObjects + 1;

let c: Cluster;

function mounted(dir: string): boolean {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === dir);
}

function unmountAll(): void {
  for (const loop of loops) {
    if (!mounted(loop.mount)) continue;
    try {
      execFileSync('umount', [loop.mount]);
    } catch {
      execFileSync('umount', ['-l', loop.mount]); // still busy: detached, the loop freed on last close
    }
  }
}

/** Object files (16 hex digits) directly in a disk directory. */
function objectsIn(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((name) => /^[0-9a-f]{16}$/.test(name));
  } catch {
    return [];
  }
}

/** EIO from now on, for every operation on the file system (ext4 supports the XFS shutdown ioctl). */
function failDisk(mount: string): void {
  execFileSync('xfs_io', ['-x', '-c', 'shutdown -f', mount]);
}

function mask(text: string): string {
  return text.replace(/\d+(\.\d+)? [KMGTP]?B/g, 'SIZE').replace(/ *\d+%/g, 'P%');
}

async function md5Everywhere(nodes: readonly number[], expected: string): Promise<void> {
  for (const i of nodes) expect(await c.readMd5(i, 'md'), `md5 through sheep ${i}`).toBe(expected);
}

beforeAll(async () => {
  unmountAll(); // a run that was killed may have left them
  fs.rmSync(root, { recursive: true, force: true });
  fs.mkdirSync(root, { recursive: true });
  for (const loop of loops) {
    execFileSync('truncate', ['-s', `${loop.sizeMiB}M`, loop.image]);
    execFileSync('mkfs.ext4', ['-q', '-F', '-m', '0', loop.image]);
    fs.mkdirSync(loop.mount);
    execFileSync('mount', ['-o', 'loop', loop.image, loop.mount]);
  }
  c = new Cluster({
    basePort,
    prefix: 'sheep-md-',
    diskDirs: (i) => (i === 0 ? dirDisks : i === 1 ? loops.map((l) => l.mount) : []),
  });
  await c.startAll([0, 1, 2]);
  await c.dogOk(['cluster', 'format', '-c', '3', '-z', '20']);
  await c.dogOk(['vdi', 'create', 'md', String(vdiBytes)]);
}, 60_000);

afterAll(async () => {
  await c?.stop();
  unmountAll();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('multi-disk sheep', () => {
  let expected = '';

  it('spreads objects over the disks and shows them in node md info', async () => {
    const data = pattern(vdiBytes, 1);
    await c.dogOk(['vdi', 'write', 'md'], { input: data });
    expected = md5(data);
    await md5Everywhere([0, 1, 2], expected);
    // Every object on exactly one disk of sheep 0; none in its meta store.
    const perDisk = dirDisks.map(objectsIn);
    const all = perDisk.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all.length).toBe(objectCount);
    expect(perDisk.filter((objects) => objects.length > 0).length).toBeGreaterThan(1);
    expect(objectsIn(path.join(c.storeDir(0), 'obj'))).toEqual([]);

    const info = await c.dogOk(['node', 'md', 'info']);
    expect(mask(info.out)).toBe(`Id\tSize\tUsed\tAvail\tUse%\tPath\n${dirDisks.map((d, i) => ` ${i}\tSIZE\tSIZE\tSIZE\tP%\t${d}\n`).join('')}`);
    const everyNode = await c.dogOk(['node', 'md', 'info', '-A']);
    expect(mask(everyNode.out)).toBe(
      'Id\tSize\tUsed\tAvail\tUse%\tPath\n' +
        `Node 0:\n${dirDisks.map((d, i) => ` ${i}\tSIZE\tSIZE\tSIZE\tP%\t${d}\n`).join('')}` +
        `Node 1:\n${loops.map((l, i) => ` ${i}\tSIZE\tSIZE\tSIZE\tP%\t${l.mount}\n`).join('')}` +
        `Node 2:\n 0\tSIZE\tSIZE\tSIZE\tP%\t${path.join(c.storeDir(2), 'obj')}\n`,
    );
    const raw = await c.dogOk(['node', 'md', 'info', '-r'], { port: c.port(1) });
    const rows = raw.out.trimEnd().split('\n');
    expect(rows).toHaveLength(2);
    rows.forEach((row, i) => expect(row).toMatch(new RegExp(`^127\\.0\\.0\\.1:${basePort + 1} ${i} (\\d+) (\\d+) (\\d+) \\d+% ${loops[i]!.mount}$`)));
  });

  it('fills the small loop disk, and new objects go to the next disk', () => {
    const [small, large] = loops.map((l) => objectsIn(l.mount));
    expect(small!.length).toBeGreaterThan(0);
    expect(small!.length + large!.length).toBe(objectCount);
    // The ring (as the sheep built it, from the paths and file-system sizes) placed more on the
    // small disk than it holds: the rest went to the next disk.
    const ring = new MdRing(loops.map((l) => ({ path: l.mount, sizeBytes: fs.statfsSync(l.mount).blocks * fs.statfsSync(l.mount).bsize })));
    const placedSmall = [...small!, ...large!].filter((oid) => ring.diskOf(BigInt(`0x${oid}`)) === loops[0]!.mount);
    expect(placedSmall.length).toBeGreaterThan(small!.length);
    // Less than one more object fits on the small disk.
    expect(fs.statfsSync(loops[0]!.mount).bavail * fs.statfsSync(loops[0]!.mount).bsize).toBeLessThan(objectBytes);
  });

  it('refuses what cannot be plugged or unplugged, on one line', async () => {
    const cases: Array<[string[], string]> = [
      [['plug', '-f', dirDisks[0]!], `Failed to execute request: ${dirDisks[0]} is plugged already\n`],
      [['plug', '-f', c.storeDir(0)], `Failed to execute request: ${c.storeDir(0)} is the meta store\n`],
      [['unplug', '-f', path.join(root, 'nosuch')], `Failed to execute request: ${path.join(root, 'nosuch')} is not a plugged disk\n`],
      [['unplug', '-f', dirDisks.join(',')], 'Failed to execute request: cannot unplug every disk: the objects would have nowhere to go (dog node kill stops the node)\n'],
    ];
    for (const [args, stderr] of cases) {
      const result = await dog(['node', 'md', ...args, '-p', String(basePort)]);
      expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 1, stderr });
    }
  });

  it('unplugs a disk under writes: its objects move to the others, the data stays right', async () => {
    const data = pattern(vdiBytes, 2);
    const writing = c.dogOk(['vdi', 'write', 'md'], { input: data, port: c.port(2) });
    await c.dogOk(['node', 'md', 'unplug', '-f', dirDisks[1]!]);
    await writing;
    expected = md5(data);
    await poll('the unplugged disk to be empty', () => objectsIn(dirDisks[1]!).length === 0, 20_000);
    const kept = [dirDisks[0]!, dirDisks[2]!].flatMap(objectsIn);
    expect(new Set(kept).size).toBe(objectCount);
    expect(kept.length).toBe(objectCount);
    expect(mask((await c.dogOk(['node', 'md', 'info'])).out)).toBe(`Id\tSize\tUsed\tAvail\tUse%\tPath\n 0\tSIZE\tSIZE\tSIZE\tP%\t${dirDisks[0]}\n 1\tSIZE\tSIZE\tSIZE\tP%\t${dirDisks[2]}\n`);
    await md5Everywhere([0, 1, 2], expected);

    // Plugged back (purged), it takes its share again.
    await c.dogOk(['node', 'md', 'plug', '-f', dirDisks[1]!]);
    await poll('the plugged disk to take objects', () => objectsIn(dirDisks[1]!).length > 0, 20_000);
    await md5Everywhere([0], expected);
  });

  it('takes a failing disk out under writes and recovers its objects onto the other disk', async () => {
    const lost = objectsIn(loops[0]!.mount);
    // The writes reach the first half of the VDI only: the lost objects of the other half come
    // back from the other replicas, not from a writer.
    const half = vdiBytes / 2;
    expect(lost.some((oid) => parseInt(oid.slice(8), 16) >= half / objectBytes)).toBe(true);
    const before = (await c.dogOk(['vdi', 'read', 'md'])).stdout;
    const data = pattern(half, 3);
    const writing = c.dogOk(['vdi', 'write', 'md', '0', String(half)], { input: data });
    failDisk(loops[0]!.mount);
    await writing;
    expected = md5(Buffer.concat([data, before.subarray(half)]));
    await poll('the failed disk to be taken out', () => c.log(1).includes('disk failed: taken out'), 20_000);
    // Every object is back on the disk that is left, the failed disk's ones fetched from peers.
    await poll('every object on the remaining disk', () => objectsIn(loops[1]!.mount).length === objectCount, 30_000);
    expect(mask((await c.dogOk(['node', 'md', 'info'], { port: c.port(1) })).out)).toBe(`Id\tSize\tUsed\tAvail\tUse%\tPath\n 0\tSIZE\tSIZE\tSIZE\tP%\t${loops[1]!.mount}\n`);
    await md5Everywhere([0, 1, 2], expected);
    expect(c.running(1)).toBe(true);
  });

  it('leaves the cluster when its last disk fails; the others keep serving', async () => {
    failDisk(loops[1]!.mount);
    const data = pattern(vdiBytes, 4);
    await c.dogOk(['vdi', 'write', 'md'], { input: data });
    expect((await c.exited(1)).code).toBe(1);
    expect(c.log(1)).toContain('no disks available, going down');
    await md5Everywhere([0, 2], md5(data));
  });
});
