// sheepfs end to end: a real FUSE mount served by a child sheepfs process (the command of bin/sheepfs
// over the memory backend, built by buildMemorySheepfs), driven by other child processes (sh, dd, cat, cmp). The test process never touches the
// mount itself through node's fs: a slip in sheepfs would hang the test runner in the kernel.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildMemorySheepfs } from './support/build-sheepfs.js';
import { MemoryBackend } from './support/memory-backend.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const commandTimeoutMs = 20_000;
const memoryEnv = process.env;
let sheepfsBin = '';
const workDir = mkdtempSync(path.join(tmpdir(), 'sheepfs-test-'));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

// bash, not sh: dash's echo reports every failed write as "I/O error", hiding the errno.
function sh(command: string, env: NodeJS.ProcessEnv = process.env): Run {
  const result = spawnSync('bash', ['-c', command], {
    encoding: 'utf8',
    timeout: commandTimeoutMs,
    env,
    cwd: workDir,
  });
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

function sheepfs(args: string[], env: NodeJS.ProcessEnv = memoryEnv): Run {
  const result = spawnSync(process.execPath, [sheepfsBin, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env,
  });
  return { status: result.status, stdout: result.stdout ?? '', stderr: result.stderr ?? '' };
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

function md5Of(file: string, bytes: number): string {
  const run = sh(`head -c ${bytes} '${file}' | md5sum`);
  expect(run.status, run.stderr).toBe(0);
  return run.stdout.split(' ')[0] ?? '';
}

const mountpoints: string[] = [];
const children: ChildProcess[] = [];

function newMountpoint(name: string): string {
  const mountpoint = path.join(workDir, name);
  sh(`mkdir -p '${mountpoint}'`);
  mountpoints.push(mountpoint);
  return mountpoint;
}

beforeAll(() => {
  sheepfsBin = buildMemorySheepfs();
  expect(sheepfs(['--help']).status).toBe(0);
}, 120_000);

afterAll(() => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  for (const mountpoint of mountpoints) forceUnmount(mountpoint, (command) => sh(command));
  rmSync(workDir, { recursive: true, force: true });
});

describe('sheepfs over the memory backend', () => {
  let mnt = '';
  let server: ChildProcess;
  const source64 = randomBytes(64 * 1024 * 1024);
  const expected = Buffer.from(source64); // what volume/Alice should hold, kept in step

  beforeAll(async () => {
    mnt = newMountpoint('main');
    writeFileSync(path.join(workDir, 'source64'), source64);
    server = spawn(
      process.execPath,
      [sheepfsBin, '-f', '--log', path.join(workDir, 'main.log'), mnt],
      {
        env: memoryEnv,
        stdio: 'ignore',
      },
    );
    children.push(server);
    expect(await waitFor(() => isMounted(mnt), 15_000)).toBe(true);
  });

  it('serves every info file as the backend prints it', async () => {
    const backend = new MemoryBackend();
    const files: Array<[string, () => Promise<string>]> = [
      ['cluster/info', () => backend.clusterInfoText()],
      ['node/list', () => backend.nodeListText()],
      ['node/info', () => backend.nodeInfoText()],
      ['vdi/list', () => backend.vdiListText()],
    ];
    for (const [file, text] of files) {
      const run = sh(`cat '${mnt}/${file}'`);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toBe(await text());
    }
    const pastEnd = sh(`dd if='${mnt}/vdi/list' bs=1k skip=100 status=none | wc -c`);
    expect([pastEnd.status, pastEnd.stdout.trim()]).toEqual([0, '0']);
    const sizes = sh(
      `stat -c '%n %s %a' '${mnt}/vdi/list' '${mnt}/vdi/mount' '${mnt}/volume'`,
    ).stdout;
    expect(sizes).toContain(`vdi/list ${Buffer.byteLength(await backend.vdiListText())} 444`);
    expect(sizes).toContain('vdi/mount 0 200');
    expect(sizes).toContain('volume 4096 755');
  });

  it('mounts a VDI as a file of its size and round-trips 64 MiB through dd', () => {
    expect(sh(`echo Alice > '${mnt}/vdi/mount' && echo Alice > '${mnt}/vdi/mount'`).status).toBe(0);
    expect(sh(`stat -c '%s %a' '${mnt}/volume/Alice'`).stdout.trim()).toBe(`${1024 ** 3} 600`);
    // Without conv=notrunc: O_TRUNC is ignored for a volume, as for a block device.
    const run = sh(`dd if=source64 of='${mnt}/volume/Alice' bs=4M conv=fsync`);
    expect(run.status, run.stderr).toBe(0);
    expect(md5Of(`${mnt}/volume/Alice`, source64.length)).toBe(md5(source64));
  });

  it('writes unaligned bytes at any offset', () => {
    const patch = randomBytes(1000);
    writeFileSync(path.join(workDir, 'patch'), patch);
    const offsetBytes = 4 * 1024 * 1024 - 333; // crosses an object boundary
    const run = sh(`dd if=patch of='${mnt}/volume/Alice' bs=1 seek=${offsetBytes} conv=notrunc`);
    expect(run.status, run.stderr).toBe(0);
    patch.copy(expected, offsetBytes);
    expect(md5Of(`${mnt}/volume/Alice`, expected.length)).toBe(md5(expected));
    writeFileSync(path.join(workDir, 'expected'), expected);
    expect(sh(`cmp -n ${expected.length} expected '${mnt}/volume/Alice'`).status).toBe(0);
  });

  it('snapshots, serves the snapshot read-only, and rolls back', () => {
    expect(sh(`echo 'Alice:snap1' > '${mnt}/vdi/snapshot'`).status).toBe(0);
    expect(sh(`dd if=/dev/zero of='${mnt}/volume/Alice' bs=4M count=2 conv=notrunc`).status).toBe(
      0,
    );
    expect(sh(`echo Alice:snap1 > '${mnt}/vdi/mount'`).status).toBe(0);
    expect(sh(`stat -c '%a' '${mnt}/volume/Alice:snap1'`).stdout.trim()).toBe('400');
    expect(md5Of(`${mnt}/volume/Alice:snap1`, expected.length)).toBe(md5(expected));
    expect(md5Of(`${mnt}/volume/Alice`, expected.length)).not.toBe(md5(expected));
    const write = sh(`dd if=/dev/zero of='${mnt}/volume/Alice:snap1' bs=4k count=1 conv=notrunc`);
    expect(write.status).not.toBe(0);
    expect(write.stderr).toContain('Read-only file system');
    expect(sh(`cat '${mnt}/vdi/list'`).stdout).toMatch(/^s Alice .* snap1 /m);

    expect(sh(`echo 'Alice:snap1' > '${mnt}/vdi/rollback'`).status).toBe(0);
    expect(md5Of(`${mnt}/volume/Alice`, expected.length)).toBe(md5(expected));
    expect(sh(`echo Alice:snap1 > '${mnt}/vdi/unmount'`).status).toBe(0);
    expect(sh(`ls '${mnt}/volume'`).stdout.trim()).toBe('Alice');
    const again = sh(`echo Alice:snap1 > '${mnt}/vdi/unmount'`);
    expect(again.stderr).toContain('No such file or directory');
  });

  it('answers bad control lines with the right errno and keeps serving', () => {
    expect(sh(`echo nosuch > '${mnt}/vdi/mount'`).stderr).toContain('No such file or directory');
    expect(sh(`echo 'Alice:nosuchtag' > '${mnt}/vdi/rollback'`).stderr).toContain(
      'No such file or directory',
    );
    // A line is one name: spaces are part of it.
    expect(sh(`echo 'no such' > '${mnt}/vdi/mount'`).stderr).toContain('No such file or directory');
    for (const line of ["''", "'a/b'", "'a:b:c'", `'${'x'.repeat(2000)}'`, "'a\tb c'"]) {
      expect(sh(`printf '%s\\n' ${line} > '${mnt}/vdi/mount'`).stderr).toContain(
        'Invalid argument',
      );
    }
    expect(sh(`echo Alice > '${mnt}/vdi/rollback'`).stderr).toContain('Invalid argument');
    sh(
      `head -c 20000 /dev/urandom > '${mnt}/vdi/mount'; ` +
        `head -c 300 /dev/urandom > '${mnt}/vdi/snapshot'`,
    );
    expect(sh(`cat '${mnt}/vdi/mount'`).stderr).toContain('Permission denied');
    expect(sh(`echo x > '${mnt}/vdi/list'`).stderr).toContain('Permission denied');
    expect(sh(`touch '${mnt}/volume/new'`).status).not.toBe(0);
    expect(sh(`cat '${mnt}/node/list'`).status).toBe(0);
  });

  it('refuses writes past the end, truncation and unlink of a volume', () => {
    expect(sh(`echo Bob > '${mnt}/vdi/mount'`).status).toBe(0);
    const bob = `${mnt}/volume/Bob`;
    expect(sh(`dd if=/dev/urandom of='${bob}' bs=1M count=8 conv=notrunc`).status).toBe(0);
    const before = md5Of(bob, 8 * 1024 * 1024);
    expect(sh(`dd if=/dev/zero of='${bob}' bs=1M count=1 seek=8 conv=notrunc`).stderr).toContain(
      'File too large',
    );
    const crossing = sh(`dd if=/dev/zero of='${bob}' bs=1M count=2 seek=7 conv=notrunc`);
    expect(crossing.stderr).toContain('File too large');
    expect(sh(`truncate -s 0 '${bob}'`).stderr).toContain('Operation not permitted');
    expect(sh(`truncate -s 16M '${bob}'`).stderr).toContain('Operation not permitted');
    expect(sh(`truncate -s 8M '${bob}'`).status).toBe(0); // the current size: a no-op
    expect(sh(`rm -f '${bob}'`).stderr).toContain('Operation not permitted');
    // Opening with O_TRUNC (dd without conv=notrunc, cp) truncates nothing.
    const opened = sh(`dd if=/dev/zero of='${bob}' bs=4k count=1`);
    expect(opened.status, opened.stderr).toBe(0);
    expect(sh(`stat -c %s '${bob}'`).stdout.trim()).toBe(String(8 * 1024 * 1024));
    const after = sh(
      `head -c 7340032 '${bob}' | md5sum; tail -c 1048576 '${bob}' | od -An -tx1 | sort -u`,
    ).stdout;
    expect(md5Of(bob, 8 * 1024 * 1024)).not.toBe(before); // the crossing write filled 7..8 MiB
    expect(after.trim().split('\n').pop()?.trim()).toBe('*'); // ...with zeros only
    expect(sh(`echo Bob > '${mnt}/vdi/delete'`).stderr).toContain('Device or resource busy');
    expect(
      sh(`echo Bob > '${mnt}/vdi/unmount' && echo 'Bob:base' > '${mnt}/vdi/delete'`).status,
    ).toBe(0);
    expect(sh(`cat '${mnt}/vdi/list'`).stdout).not.toContain('base');
  });

  it('unmounts cleanly on SIGTERM', async () => {
    server.kill('SIGTERM');
    const exited = await waitFor(() => server.exitCode !== null, 10_000);
    expect(exited).toBe(true);
    expect(server.exitCode).toBe(0);
    expect(isMounted(mnt)).toBe(false);
  });
});

describe('sheepfs process behaviour', () => {
  it('returns once mounted in the background and exits when unmounted from outside', async () => {
    const mnt = newMountpoint('background');
    const run = sheepfs(['--log', path.join(workDir, 'background.log'), mnt]);
    expect(run.status, run.stderr).toBe(0);
    expect(isMounted(mnt)).toBe(true);
    expect(sh(`cat '${mnt}/cluster/info'`).stdout).toContain('Cluster status: running');
    const daemon = () => sh(`pgrep -f -- '-- ${mnt}$'`).stdout.trim();
    expect(daemon()).not.toBe('');
    expect(sh(`fusermount -u '${mnt}'`).status).toBe(0);
    expect(await waitFor(() => daemon() === '', 5_000)).toBe(true);
  });

  it('fails with one line for a missing, non-directory or busy mountpoint', () => {
    const file = path.join(workDir, 'plain-file');
    writeFileSync(file, 'x');
    const busy = newMountpoint('busy');
    expect(sh(`mount -t tmpfs none '${busy}'`).status).toBe(0);
    const cases: Array<[string[], string]> = [
      [[path.join(workDir, 'missing')], 'does not exist'],
      [['-f', path.join(workDir, 'missing')], 'does not exist'],
      [[file], 'not a directory'],
      [[busy], 'busy'],
      [['-f', busy], 'busy'],
    ];
    for (const [args, message] of cases) {
      const run = sheepfs(['--log', path.join(workDir, 'fail.log'), ...args]);
      expect(run.status).toBe(1);
      expect(run.stderr).toContain(message);
      expect(run.stderr.trim().split('\n')).toHaveLength(1);
    }
    sh(`umount '${busy}'`);
  });

  it('fails with one line when no sheep answers', () => {
    const mnt = newMountpoint('unreachable');
    const env = { ...process.env, SHEEPFS_MEMORY_UNREACHABLE: '1' };
    const run = sheepfs(['--log', path.join(workDir, 'fail.log'), mnt], env);
    expect(run.status).toBe(1);
    expect(run.stderr.trim().split('\n')).toEqual([
      expect.stringContaining('cannot reach a sheep'),
    ]);
    expect(isMounted(mnt)).toBe(false);
  });
});
