// What issue #15 left open, end to end: a writer's lock re-taken after every sheep restarted (a
// sheepfs mount) or after `dog vdi lock unlock` (an NBD export), and refused when another writer
// took the VDI meanwhile. Real sheep, sheepfs and NBD on loopback; effects checked through another
// node. Ports 13400-13499 belong to this file (sheep 134xx below 13450, NBD above).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, dogBin, md5, pattern, poll, run, startCluster } from './support/cluster.js';
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
