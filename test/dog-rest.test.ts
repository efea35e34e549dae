// What issue #15 left open, end to end: a writer's lock re-taken after every sheep restarted (a
// sheepfs mount) or after `dog vdi lock unlock` (an NBD export), and refused when another writer
// took the VDI meanwhile. Real sheep, sheepfs and NBD on loopback; effects checked through another
// node; and `dog cluster reweight` over stores of different sizes (tmpfs: needs root).
// Ports 13400-13499 belong to this file (sheep below 13450, NBD above).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dogBin, makeTempDir, md5, pattern, poll, run, startCluster } from './support/cluster.js';
import { maskDates } from './support/mask.js';
import { rawNbdOpen } from './support/nbd-raw.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const sheepfsBin = path.join(path.dirname(dogBin), 'sheepfs');
const header = '  Name        Node                  Since             Lock       Client\n';
const NBD_EPERM = 1;

describe('writers keep their lock through a restart of every sheep', () => {
  let c: Cluster;
  const nbdPort = (i: number) => 13450 + i;
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 2, basePort: 13400, prefix: 'dog-rest-lock-', sheepArgs: (i) => ['--nbd', `127.0.0.1:${nbdPort(i)}`] });
    await c.dogOk(['vdi', 'create', 'vm', '16M']);
  });
  afterAll(async () => {
    await c?.stop();
  });

  const lockRows = async (i: number) => maskDates((await c.dogOk(['vdi', 'lock', 'list'], { port: c.port(i) })).out);
  const bash = (command: string) => run('bash', ['-c', command], { timeoutMs: 30_000 });

  async function restartAll(): Promise<void> {
    await c.dogOk(['cluster', 'shutdown']);
    await Promise.all([0, 1, 2].map((i) => c.exited(i)));
    await c.startAll([0, 1, 2], 'at once');
    await poll('running', async () => (await c.status(2)) === 'running, auto-recovery enabled', 30_000);
  }

  it('a sheepfs file held open re-takes its lock at its first write after the restart; a writer that took it meanwhile wins', async () => {
    const mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-rest-mnt-'));
    const block = (seed: number) => pattern(4096, seed);
    const sheepfsRow = new RegExp(`^  vm {10}127\\.0\\.0\\.1:${c.port(0)} {7}YYYY-MM-DD HH:MM  exclusive  sheepfs \\S+ pid \\d+ on ${mnt}$`);
    const child = spawn(process.execPath, [sheepfsBin, '-f', '-p', String(c.port(0)), '--log', `${mnt}.log`, mnt], { stdio: 'ignore' });
    let file: fs.promises.FileHandle | undefined;
    try {
      expect(await waitFor(() => isMounted(mnt), 20_000)).toBe(true);
      expect((await bash(`echo vm > ${mnt}/vdi/mount`)).code).toBe(0);
      // Held open as a VM holds its disk: the mount writes through the volume it opened then.
      file = await fs.promises.open(`${mnt}/volume/vm`, 'r+');
      const writeBlock = async (seed: number, index: number) => {
        await file!.write(block(seed), 0, 4096, index * 4096);
        await file!.sync();
      };
      await writeBlock(1, 0);
      expect((await lockRows(1)).split('\n')[1]).toMatch(sheepfsRow);

      await restartAll();
      // Locks live in memory: after the restart nobody holds vm, though the mount still writes it.
      expect(await lockRows(2)).toBe(header);
      await writeBlock(2, 1);
      const rows = (await lockRows(1)).split('\n');
      expect(rows[1]).toMatch(sheepfsRow);
      expect(rows.slice(2)).toEqual(['']);
      // The lock is the mount's again: a writer through another node is refused.
      await expect(rawNbdOpen(nbdPort(1), 'vm')).rejects.toThrow();

      // Another restart, and this time a writer through node 2 takes vm before the mount writes.
      await restartAll();
      const other = await rawNbdOpen(nbdPort(2), 'vm');
      expect(await other.write(8192, block(3))).toBe(0);
      await expect(writeBlock(4, 3)).rejects.toThrow(/EROFS/);
      // Refused for good, not only once: the mount lost the VDI while it holds it open.
      await expect(writeBlock(5, 4)).rejects.toThrow(/EROFS/);
      other.close();
      const data = (await c.dogOk(['vdi', 'read', 'vm', '0', String(5 * 4096)], { port: c.port(1) })).stdout;
      expect(md5(data)).toBe(md5(Buffer.concat([block(1), block(2), block(3), Buffer.alloc(2 * 4096)])));
    } finally {
      await file?.close().catch(() => undefined);
      child.kill('SIGTERM');
      await waitFor(() => !isMounted(mnt), 10_000);
      forceUnmount(mnt);
      fs.rmSync(mnt, { recursive: true, force: true });
      fs.rmSync(`${mnt}.log`, { force: true });
      await c.dog(['vdi', 'lock', 'unlock', 'vm']);
    }
  });

  it('an NBD export re-takes its lock after `lock unlock`, and stops writing once another writer took it', async () => {
    const nbd = await rawNbdOpen(nbdPort(0), 'vm');
    const nbdRow = new RegExp(`^  vm {10}127\\.0\\.0\\.1:${c.port(0)} {7}YYYY-MM-DD HH:MM  exclusive  nbd 127\\.0\\.0\\.1:\\d+$`);
    expect((await lockRows(1)).split('\n')[1]).toMatch(nbdRow);
    await c.dogOk(['vdi', 'lock', 'unlock', 'vm'], { port: c.port(1) });
    expect(await lockRows(2)).toBe(header);
    expect(await nbd.write(4 * 4096, pattern(4096, 6))).toBe(0);
    expect((await lockRows(2)).split('\n')[1]).toMatch(nbdRow);
    await expect(rawNbdOpen(nbdPort(1), 'vm')).rejects.toThrow();

    await c.dogOk(['vdi', 'lock', 'unlock', 'vm'], { port: c.port(2) });
    const other = await rawNbdOpen(nbdPort(1), 'vm');
    expect(await other.write(5 * 4096, pattern(4096, 7))).toBe(0);
    expect(await nbd.write(6 * 4096, pattern(4096, 8))).toBe(NBD_EPERM);
    nbd.close();
    other.close();
    const data = (await c.dogOk(['vdi', 'read', 'vm', String(4 * 4096), String(3 * 4096)], { port: c.port(2) })).stdout;
    expect(md5(data)).toBe(md5(Buffer.concat([pattern(4096, 6), pattern(4096, 7), Buffer.alloc(4096)])));
  });
});

describe('cluster reweight', () => {
  const MiB = 1024 * 1024;
  const sizesMiB = [64, 64, 256];
  const mounts = sizesMiB.map(() => makeTempDir('dog-rest-weigh-mnt-'));
  let c: Cluster;
  beforeAll(async () => {
    mounts.forEach((dir, i) => execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizesMiB[i]}m`, 'tmpfs', dir]));
    c = await startCluster({ nodes: 3, basePort: 13410, prefix: 'dog-rest-weigh-', format: false, storeDir: (i) => path.join(mounts[i]!, 'store') });
    // 1 MiB objects: enough of them for the ring's shares to show.
    await c.dogOk(['cluster', 'format', '-c', '2', '-z', '20']);
  });
  afterAll(async () => {
    await c?.stop();
    for (const dir of mounts) {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const nodeList = (vnodes: number[]) =>
    '  Id   Host:Port         V-Nodes       Zone\n' +
    [0, 1, 2].map((i) => `${String(i).padStart(4)}   ${c.nodeId(i).padEnd(20)}\t${String(vnodes[i]).padStart(2)}${String(i).padStart(11)}\n`).join('');

  it('gives every node vnodes by its store capacity, with a new epoch; recovery moves the data and every node reads it whole', async () => {
    const bytes = pattern(24 * MiB, 31);
    await c.dogOk(['vdi', 'create', 'vm', '24M']);
    await c.dogOk(['vdi', 'write', 'vm'], { input: bytes });
    expect((await c.dogOk(['node', 'list'])).out).toBe(nodeList([128, 128, 128]));
    expect((await c.dogOk(['cluster', 'info', '-v'])).out.split('\n')[2]).toBe('Cluster vnodes strategy: auto');
    const epochs = (await c.epochHistory(0)).length;
    const before = c.objectFiles(2).length;

    // Each node's capacity as `node info` shows it (its size: used plus free); 128 times each over
    // their average is the original's recalculate_vnodes.
    const sizes = (await c.dogOk(['node', 'info', '-r'])).out.split('\n').slice(0, 3).map((line) => Number(line.split(' ')[1]));
    const average = (sizes[0]! + sizes[1]! + sizes[2]!) / 3;
    const weighed = sizes.map((bytes) => Math.round((128 * bytes) / average));
    expect(weighed[2]).toBeGreaterThan(2 * weighed[0]!);
    expect(await c.dogOk(['cluster', 'reweight'], { port: c.port(1) })).toMatchObject({ out: '', stderr: '' });
    expect((await c.dogOk(['node', 'list'], { port: c.port(2) })).out).toBe(nodeList(weighed));
    expect((await c.epochHistory(0)).length).toBe(epochs + 1);
    await c.waitForFullCopies([0, 1, 2], 2);
    expect(c.objectFiles(2).length).toBeGreaterThan(before);
    for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'vm'], { port: c.port(i) })).stdout)).toBe(md5(bytes));

    // Weighed already: nothing changes, no epoch.
    await c.dogOk(['cluster', 'reweight']);
    expect((await c.epochHistory(1)).length).toBe(epochs + 1);
  });

  it('changes nothing with fixed vnodes (-V), as the original', async () => {
    await c.dogOk(['cluster', 'format', '-f', '-V', '-c', '2']);
    expect((await c.dogOk(['cluster', 'info', '-v'])).out.split('\n')[2]).toBe('Cluster vnodes strategy: fixed');
    const epochs = (await c.epochHistory(0)).length;
    expect(await c.dogOk(['cluster', 'reweight'])).toMatchObject({ out: '', stderr: '' });
    expect((await c.dogOk(['node', 'list'])).out).toBe(nodeList([128, 128, 128]));
    expect((await c.epochHistory(2)).length).toBe(epochs);
  });
});

describe('cluster format -R (recycle VIDs)', () => {
  const MiB = 1024 * 1024;
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ nodes: 3, basePort: 13420, prefix: 'dog-rest-recycle-', format: false });
    expect((await c.dogOk(['cluster', 'format', '-R', '-c', '2', '-z', '20'])).out).toBe('using backend plain store\n');
  });
  afterAll(async () => {
    await c?.stop();
  });

  /** The working VDI's id, as `vdi list -r` prints it. */
  const vidOf = async (name: string) =>
    (await c.dogOk(['vdi', 'list', '-r'])).out.split('\n').find((line) => line.startsWith(`= ${name} `))!.split(' ')[7]!;
  /** Stores holding any object of VID `vid` (hex). */
  const holdersOfVid = (vid: string) =>
    [0, 1, 2].filter((i) => c.objectFiles(i).some((oid) => ((BigInt(`0x${oid}`) >> 32n) & 0xffffffn) === BigInt(`0x${vid}`)));
  const zeros = md5(Buffer.alloc(8 * MiB));

  it('frees a deleted family once nothing of it is left: the name gets its VID back, and reads zeros through every node', async () => {
    await c.dogOk(['vdi', 'create', 'vm', '8M']);
    const first = await vidOf('vm');
    await c.dogOk(['vdi', 'write', 'vm'], { input: pattern(8 * MiB, 41) });
    await c.dogOk(['vdi', 'snapshot', '-s', 's1', 'vm']);
    await c.dogOk(['vdi', 'write', 'vm', '0', String(MiB)], { input: pattern(MiB, 42) });
    const working = await vidOf('vm');
    expect(working).not.toBe(first);
    await c.dogOk(['vdi', 'delete', '-s', 's1', 'vm'], { port: c.port(1) });
    // The snapshot's VID stays taken while the working VDI of its family lives.
    await c.dogOk(['vdi', 'create', 'probe', '8M']);
    expect(await vidOf('probe')).not.toBe(first);
    await c.dogOk(['vdi', 'delete', 'probe']);
    await c.dogOk(['vdi', 'delete', 'vm'], { port: c.port(2) });
    expect(holdersOfVid(first)).toEqual([]);
    expect(holdersOfVid(working)).toEqual([]);
    await c.dogOk(['vdi', 'create', 'vm', '8M'], { port: c.port(1) });
    expect(await vidOf('vm')).toBe(first);
    for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'vm'], { port: c.port(i) })).stdout)).toBe(zeros);
    expect((await c.dogOk(['vdi', 'tree'])).out).toBe('vm---(you are here)\n');
    await c.dogOk(['vdi', 'delete', 'vm']);
  });

  it('keeps the VIDs while a node that stored them is away, and frees them once it is back and its copies are gone', async () => {
    await c.dogOk(['vdi', 'create', 'away', '8M']);
    const first = await vidOf('away');
    await c.dogOk(['vdi', 'write', 'away'], { input: pattern(8 * MiB, 43) });
    expect(holdersOfVid(first)).toContain(2);
    await c.kill(2);
    await c.waitForMembers();
    await c.dogOk(['vdi', 'delete', 'away']);
    // Node 2 still holds objects of the old VDI: its VID must not name a new one.
    await c.dogOk(['vdi', 'create', 'away', '8M']);
    const second = await vidOf('away');
    expect(second).not.toBe(first);
    await c.start(2);
    await c.waitForMembers();
    await poll('node 2 rid of the deleted VDI', async () => holdersOfVid(first).length === 0, 60_000);
    await c.dogOk(['vdi', 'delete', 'away']);
    await c.dogOk(['vdi', 'create', 'away', '8M']);
    expect(await vidOf('away')).toBe(first);
    for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'away'], { port: c.port(i) })).stdout)).toBe(zeros);
  });

  it('without -R a VID is never used again', async () => {
    await c.dogOk(['cluster', 'format', '-f', '-c', '2']);
    await c.dogOk(['vdi', 'create', 'vm', '8M']);
    const first = await vidOf('vm');
    await c.dogOk(['vdi', 'delete', 'vm']);
    await c.dogOk(['vdi', 'create', 'vm', '8M']);
    expect(await vidOf('vm')).not.toBe(first);
    expect((await c.dogOk(['cluster', 'format', '--help'])).out).toMatch(/\n  -R, --recyclevid +enable recycling of VID\n/);
  });
});
