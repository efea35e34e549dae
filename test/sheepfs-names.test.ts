// sheepfs control files with names that hold spaces (a line is one name, as the original read
// it) and vdi/clone, against a real cluster (ports 8620-8622) and a real mount in a temp dir,
// every effect checked through dog on another node. The test process never touches the mount.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, md5, run, startCluster, type Cluster } from './support/cluster.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const sheepfsBin = path.resolve(import.meta.dirname, '..', 'bin', 'sheepfs');
const basePort = 8620;
const MiB = 1024 * 1024;
const workDir = makeTempDir('sheepfs-names-test-');
const mnt = path.join(workDir, 'mnt');
let cluster: Cluster;
let server: ChildProcess | undefined;
let serverExit: Promise<number | null> | undefined;

async function sh(command: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const result = await run('bash', ['-c', command], { timeoutMs: 60_000, cwd: workDir });
  if (result.timedOut) throw new Error(`timed out: ${command}\n${result.stderr}`);
  return { status: result.code, stdout: result.stdout, stderr: result.stderr };
}

async function shOk(command: string): Promise<string> {
  const result = await sh(command);
  if (result.status !== 0) throw new Error(`${command} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

/** md5 of the first `length` bytes of a VDI, read by dog through node 2. */
async function dogMd5(name: string, length: number, snapshot?: string): Promise<string> {
  const args = ['vdi', 'read', name, '0', String(length), ...(snapshot === undefined ? [] : ['-s', snapshot])];
  return md5((await cluster.dogOk(args, { port: cluster.port(2) })).stdout);
}

beforeAll(async () => {
  cluster = await startCluster({ nodes: 3, copies: 2, basePort, prefix: 'sheepfs-names-' });
  await cluster.dogOk(['vdi', 'create', 'my disk', '64M']);
  mkdirSync(mnt);
  server = spawn(process.execPath, [sheepfsBin, '-f', '-p', String(basePort), '--log', path.join(workDir, 'sheepfs.log'), mnt], {
    stdio: 'ignore',
  });
  const child = server;
  serverExit = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  expect(await waitFor(() => isMounted(mnt), 20_000)).toBe(true);
}, 120_000);

afterAll(async () => {
  if (server !== undefined && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await Promise.race([serverExit, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  forceUnmount(mnt);
  await cluster?.destroy();
  spawnSync('rm', ['-rf', workDir], { timeout: 30_000 });
}, 60_000);

describe('sheepfs names with spaces and vdi/clone', () => {
  const data = randomBytes(6 * MiB);

  it('mounts, writes, snapshots and clones a VDI whose name holds a space', async () => {
    await shOk(`echo 'my disk' > '${mnt}/vdi/mount'`);
    expect((await shOk(`ls '${mnt}/volume'`)).trim()).toBe('my disk');
    await run('bash', ['-c', `dd of='${mnt}/volume/my disk' bs=1M conv=notrunc,fsync status=none`], { input: data, cwd: workDir });
    expect(await dogMd5('my disk', data.length)).toBe(md5(data));

    await shOk(`echo 'my disk:s1' > '${mnt}/vdi/snapshot'`);
    expect((await cluster.dogOk(['vdi', 'list', '-r'], { port: cluster.port(1) })).out).toMatch(/^s my\\ disk 1 .* s1 22$/m);
    // The working VDI moves on; the snapshot keeps what was written.
    await shOk(`dd if=/dev/zero of='${mnt}/volume/my disk' bs=1M count=1 conv=notrunc,fsync status=none`);
    expect(await dogMd5('my disk', data.length, 's1')).toBe(md5(data));

    await shOk(`echo 'my disk:s1 my copy' > '${mnt}/vdi/clone'`);
    expect((await cluster.dogOk(['vdi', 'list', '-r', 'my copy'], { port: cluster.port(1) })).out).toMatch(/^c my\\ copy 0 67108864 /);
    expect(await dogMd5('my copy', data.length)).toBe(md5(data));
    // A clone of a snapshot id works too, and the clone is writable through sheepfs.
    await shOk(`echo 'my disk:1 other copy' > '${mnt}/vdi/clone'`);
    await shOk(`echo 'other copy' > '${mnt}/vdi/mount'`);
    await shOk(`dd if=/dev/zero of='${mnt}/volume/other copy' bs=1M count=1 conv=notrunc,fsync status=none`);
    const zeroed = Buffer.from(data);
    zeroed.fill(0, 0, MiB);
    expect(await dogMd5('other copy', data.length)).toBe(md5(zeroed));
    expect(await dogMd5('my copy', data.length)).toBe(md5(data));
    await shOk(`echo 'other copy' > '${mnt}/vdi/unmount'`);

    await shOk(`echo 'my disk:s1' > '${mnt}/vdi/rollback'`);
    expect(await dogMd5('my disk', data.length)).toBe(md5(data));
    await shOk(`echo 'my disk' > '${mnt}/vdi/unmount'`);
    await shOk(`echo 'other copy' > '${mnt}/vdi/delete'`);
    expect((await cluster.dogOk(['vdi', 'list', '-r'])).out).not.toContain('other\\ copy');
  }, 120_000);

  it('refuses bad clone lines and clones of what does not exist, changing nothing', async () => {
    const before = (await cluster.dogOk(['vdi', 'list', '-r'])).out;
    for (const line of ['my disk my copy2', 'my disk:', 'my disk:s1', 'my disk:s1 a/b']) {
      expect((await sh(`echo '${line}' > '${mnt}/vdi/clone'`)).stderr, line).toContain('Invalid argument');
    }
    expect((await sh(`echo 'no disk:s1 x' > '${mnt}/vdi/clone'`)).stderr).toContain('No such file or directory');
    expect((await sh(`echo 'my disk:nosuch x' > '${mnt}/vdi/clone'`)).stderr).toContain('No such file or directory');
    expect((await sh(`echo 'my disk:s1 my copy' > '${mnt}/vdi/clone'`)).stderr).toContain('File exists');
    expect((await cluster.dogOk(['vdi', 'list', '-r'])).out).toBe(before);
  });
});
