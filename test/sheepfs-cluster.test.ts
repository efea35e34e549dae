// sheepfs against a real cluster: three sheep (copies 3) on ports 7300-7302, `bin/sheepfs -f` in
// a child process, the mount driven only by child processes (bash, dd, cat) with timeouts, and
// every result checked against `dog`. The test process never touches the mount itself.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  makeTempDir,
  md5,
  portIsFree,
  run,
  startCluster,
  type Cluster,
} from './support/cluster.js';
import { maskDates } from './support/mask.js';
import { forceUnmount, isMounted, waitFor } from './support/sheepfs-helpers.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const sheepfsBin = path.join(repoRoot, 'bin', 'sheepfs');
const basePort = 7300;
const commandTimeoutMs = 60_000;
const MiB = 1024 * 1024;

const workDir = makeTempDir('sheepfs-cluster-test-');
const mnt = path.join(workDir, 'mnt');
let cluster: Cluster | undefined;
let server: ChildProcess | undefined;
let serverExit: Promise<number | null> | undefined;

interface Sh {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** bash (not dash: its echo hides the errno) in a child process, killed at the timeout. */
async function sh(command: string, timeoutMs = commandTimeoutMs): Promise<Sh> {
  const result = await run('bash', ['-c', command], { timeoutMs, cwd: workDir });
  if (result.timedOut) throw new Error(`timed out: ${command}\n${result.stderr}`);
  return { status: result.code, stdout: result.stdout, stderr: result.stderr };
}

async function shOk(command: string): Promise<string> {
  const result = await sh(command);
  if (result.status !== 0) throw new Error(`${command} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

async function md5Of(file: string, offsetBytes: number, lengthBytes: number): Promise<string> {
  const out = await shOk(
    `dd if='${file}' bs=1M iflag=skip_bytes,count_bytes skip=${offsetBytes} count=${lengthBytes} status=none | md5sum`,
  );
  return out.split(' ')[0] ?? '';
}

async function dogRead(name: string, offsetBytes: number, lengthBytes: number, snapshot?: string) {
  const args = ['vdi', 'read', name, String(offsetBytes), String(lengthBytes)];
  if (snapshot !== undefined) args.push('-s', snapshot);
  return (await cluster!.dogOk(args)).stdout;
}

beforeAll(async () => {
  // Other parts of the repository may not compile at moments; tsc still emits ours.
  spawnSync('npx', ['tsc', '-p', 'tsconfig.json', '--noEmitOnError', 'false'], {
    cwd: repoRoot,
    timeout: 90_000,
  });
  cluster = await startCluster({ nodes: 3, copies: 3, basePort, prefix: 'sheepfs-cluster-' });
  await cluster.dogOk(['vdi', 'create', 'Alice', '1G']);
  await cluster.dogOk(['vdi', 'create', 'Bob', '8M']);
  mkdirSync(mnt);
  server = spawn(
    process.execPath,
    [sheepfsBin, '-f', '-p', String(basePort), '--log', path.join(workDir, 'sheepfs.log'), mnt],
    { stdio: 'ignore' },
  );
  const child = server;
  serverExit = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  expect(await waitFor(() => isMounted(mnt), 20_000)).toBe(true);
}, 180_000);

afterAll(async () => {
  if (server !== undefined && server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await Promise.race([serverExit, new Promise((resolve) => setTimeout(resolve, 5_000))]);
    if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
  }
  forceUnmount(mnt);
  await cluster?.stop();
  spawnSync('rm', ['-rf', workDir], { timeout: 30_000 });
}, 60_000);

describe('sheepfs over a three-node cluster', () => {
  const source = randomBytes(64 * MiB);
  const expected = Buffer.from(source); // what Alice's first 64 MiB should hold, kept in step

  it('serves every info file exactly as dog prints it', async () => {
    const files: Array<[string, string[]]> = [
      ['cluster/info', ['cluster', 'info']],
      ['node/list', ['node', 'list']],
      ['node/info', ['node', 'info']],
      ['vdi/list', ['vdi', 'list']],
    ];
    // `node info` shows the free space of a disk other programs write to: it may change between
    // two calls, so the file must equal what dog prints just before or just after (a few tries).
    for (const [file, args] of files) {
      let text = '';
      let printed: string[] = [];
      for (let attempt = 0; attempt < 5; attempt++) {
        const before = maskDates((await cluster!.dogOk(args)).out);
        text = maskDates(await shOk(`cat '${mnt}/${file}'`));
        const after = maskDates((await cluster!.dogOk(args)).out);
        printed = [before, after];
        if (printed.includes(text)) break;
      }
      expect(printed, file).toContain(text);
      expect(text.length, file).toBeGreaterThan(0);
    }
  });

  it('writes 64 MiB with plain dd (O_TRUNC ignored) and dog reads the same bytes', async () => {
    writeFileSync(path.join(workDir, 'source'), source);
    await shOk(`echo Alice > '${mnt}/vdi/mount'`);
    expect((await shOk(`stat -c '%s %a' '${mnt}/volume/Alice'`)).trim()).toBe(`${1024 ** 3} 600`);
    await shOk(`dd if=source of='${mnt}/volume/Alice' bs=4M conv=fsync status=none`);
    expect((await shOk(`stat -c %s '${mnt}/volume/Alice'`)).trim()).toBe(String(1024 ** 3));
    expect(md5(await dogRead('Alice', 0, source.length))).toBe(md5(source));
    expect(await md5Of(`${mnt}/volume/Alice`, 0, source.length)).toBe(md5(source));
  }, 120_000);

  it('writes unaligned bytes at any offset, as dog sees them', async () => {
    const patch = randomBytes(1000);
    writeFileSync(path.join(workDir, 'patch'), patch);
    const offsetBytes = 4 * MiB - 333; // crosses an object boundary
    await shOk(
      `dd if=patch of='${mnt}/volume/Alice' bs=1 seek=${offsetBytes} conv=notrunc status=none`,
    );
    patch.copy(expected, offsetBytes);
    expect(md5(await dogRead('Alice', offsetBytes - 5000, 12_000))).toBe(
      md5(expected.subarray(offsetBytes - 5000, offsetBytes + 7000)),
    );
    expect(md5(await dogRead('Alice', 0, expected.length))).toBe(md5(expected));
  }, 120_000);

  it('reads what dog vdi write wrote, in allocated and fresh objects', async () => {
    const early = randomBytes(70_000); // inside the 64 MiB already written
    const late = randomBytes(5 * MiB); // objects never written before
    const lateOffset = 512 * MiB + 12_345;
    await cluster!.dogOk(['vdi', 'write', 'Alice', String(10 * MiB + 7), String(early.length)], {
      input: early,
    });
    early.copy(expected, 10 * MiB + 7);
    await cluster!.dogOk(['vdi', 'write', 'Alice', String(lateOffset), String(late.length)], {
      input: late,
    });
    expect(await md5Of(`${mnt}/volume/Alice`, 10 * MiB + 7, early.length)).toBe(md5(early));
    expect(await md5Of(`${mnt}/volume/Alice`, lateOffset, late.length)).toBe(md5(late));
    expect(await md5Of(`${mnt}/volume/Alice`, 0, expected.length)).toBe(md5(expected));
  }, 120_000);

  it('copies a file in with cp (O_TRUNC ignored, size kept)', async () => {
    await shOk(`echo Bob > '${mnt}/vdi/mount'`);
    const bytes = randomBytes(3 * MiB);
    writeFileSync(path.join(workDir, 'small'), bytes);
    await shOk(`cp small '${mnt}/volume/Bob'`);
    expect((await shOk(`stat -c %s '${mnt}/volume/Bob'`)).trim()).toBe(String(8 * MiB));
    expect(md5(await dogRead('Bob', 0, bytes.length))).toBe(md5(bytes));
  });

  it('snapshots, serves the snapshot read-only, rolls back and deletes', async () => {
    await shOk(`echo 'Alice:snap1' > '${mnt}/vdi/snapshot'`);
    await shOk(`dd if=/dev/zero of='${mnt}/volume/Alice' bs=4M count=2 conv=fsync status=none`);
    const zeroed = Buffer.from(expected);
    zeroed.fill(0, 0, 8 * MiB);
    // The overwrite went to the new working VDI, not into the snapshot.
    expect(md5(await dogRead('Alice', 0, expected.length))).toBe(md5(zeroed));
    expect(md5(await dogRead('Alice', 0, expected.length, 'snap1'))).toBe(md5(expected));

    await shOk(`echo Alice:snap1 > '${mnt}/vdi/mount'`);
    expect((await shOk(`stat -c '%a' '${mnt}/volume/Alice:snap1'`)).trim()).toBe('400');
    expect(await md5Of(`${mnt}/volume/Alice:snap1`, 0, expected.length)).toBe(md5(expected));
    const write = await sh(
      `dd if=/dev/zero of='${mnt}/volume/Alice:snap1' bs=4k count=1 conv=notrunc status=none`,
    );
    expect(write.status).not.toBe(0);
    expect(write.stderr).toContain('Read-only file system');
    expect(maskDates(await shOk(`cat '${mnt}/vdi/list'`))).toBe(
      maskDates((await cluster!.dogOk(['vdi', 'list'])).out),
    );
    expect(await shOk(`cat '${mnt}/vdi/list'`)).toMatch(/^s Alice .* snap1 /m);

    await shOk(`echo 'Alice:snap1' > '${mnt}/vdi/rollback'`);
    expect(await md5Of(`${mnt}/volume/Alice`, 0, expected.length)).toBe(md5(expected));
    expect(md5(await dogRead('Alice', 0, expected.length))).toBe(md5(expected));

    const busy = await sh(`echo 'Alice:snap1' > '${mnt}/vdi/delete'`);
    expect(busy.stderr).toContain('Device or resource busy');
    await shOk(`echo Alice:snap1 > '${mnt}/vdi/unmount'`);
    await shOk(`echo 'Alice:snap1' > '${mnt}/vdi/delete'`);
    expect((await cluster!.dogOk(['vdi', 'list'])).out).not.toContain('snap1');

    await cluster!.dogOk(['vdi', 'create', 'Carol', '4M']);
    await shOk(`echo Carol > '${mnt}/vdi/delete'`);
    expect((await cluster!.dogOk(['vdi', 'list'])).out).not.toMatch(/Carol/);
  }, 180_000);

  it('answers bad requests with the right errno', async () => {
    expect((await sh(`echo nosuch > '${mnt}/vdi/mount'`)).stderr).toContain(
      'No such file or directory',
    );
    expect((await sh(`echo Alice:nosuchtag > '${mnt}/vdi/mount'`)).stderr).toContain(
      'No such file or directory',
    );
    // A line is one name, spaces and all: 'a b' is a VDI that does not exist.
    expect((await sh(`echo 'a b' > '${mnt}/vdi/mount'`)).stderr).toContain('No such file or directory');
    for (const line of ["''", "'a\tb'", "'a:b:c'", "'a/b'"]) {
      expect((await sh(`printf '%s\\n' ${line} > '${mnt}/vdi/mount'`)).stderr, line).toContain(
        'Invalid argument',
      );
    }
    const bob = `${mnt}/volume/Bob`;
    expect(
      (await sh(`dd if=/dev/zero of='${bob}' bs=1M count=1 seek=8 conv=notrunc status=none`))
        .stderr,
    ).toContain('File too large');
    expect((await sh(`truncate -s 0 '${bob}'`)).stderr).toContain('Operation not permitted');
    expect((await sh(`truncate -s 16M '${bob}'`)).stderr).toContain('Operation not permitted');
    expect((await sh(`rm -f '${bob}'`)).stderr).toContain('Operation not permitted');
    expect((await shOk(`stat -c %s '${bob}'`)).trim()).toBe(String(8 * MiB));
    expect((await cluster!.dogOk(['vdi', 'list', 'Bob'])).out).toContain('8.0 MB');
  });

  it('unmounts a volume, then on SIGTERM unmounts everything and exits 0', async () => {
    await shOk(`echo Alice > '${mnt}/vdi/unmount'`);
    await shOk(`echo Bob > '${mnt}/vdi/unmount'`);
    expect((await shOk(`ls '${mnt}/volume'`)).trim()).toBe('');
    server!.kill('SIGTERM');
    expect(await Promise.race([serverExit, new Promise((r) => setTimeout(() => r('late'), 10_000))])).toBe(0);
    expect(isMounted(mnt)).toBe(false);
    expect((await sh(`ls '${mnt}'`)).status).toBe(0); // no stale "Transport endpoint" mount
  });

  it('fails with one line and exit 1 when no sheep listens', async () => {
    const port = basePort + 3;
    expect(await portIsFree(port)).toBe(true);
    const other = path.join(workDir, 'other');
    mkdirSync(other);
    const result = await run(
      process.execPath,
      [sheepfsBin, '-p', String(port), '--log', path.join(workDir, 'fail.log'), other],
      { timeoutMs: 30_000 },
    );
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toEqual([
      expect.stringContaining(`cannot reach a sheep at 127.0.0.1:${port}`),
    ]);
    expect(isMounted(other)).toBe(false);
  }, 40_000);
});
