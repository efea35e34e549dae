// The NBD server driven by real clients: qemu-img, qemu-io, nbdinfo and nbdcopy (libnbd).
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { SdError } from '../src/engine/errors.js';
import { startNbdServer, type NbdServer } from '../src/nbd/index.js';
import { MemoryVolumeProvider } from './support/memory-volume.js';

const mebibyte = 1024 * 1024;
const volumeSizeBytes = 64 * mebibyte;
const toolTimeoutMs = 20_000;

interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool without blocking the event loop (the server lives in this process). */
function runTool(command: string, args: string[]): Promise<ToolResult> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { timeout: toolTimeoutMs, encoding: 'utf8', maxBuffer: 16 * mebibyte },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function mustRun(command: string, args: string[]): Promise<string> {
  const result = await runTool(command, args);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed (${result.code}): ${result.stderr}`);
  }
  return result.stdout;
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

let provider: MemoryVolumeProvider;
let server: NbdServer;
let workDir: string;
let sourcePath: string;
let sourceData: Buffer;

function url(exportName = ''): string {
  return `nbd://127.0.0.1:${server.port}/${exportName}`;
}

/** A 64 MiB raw image with data in objects 0-1 and 10 only, the rest a hole. */
async function writeSparseImage(path: string): Promise<Buffer> {
  const image = Buffer.alloc(volumeSizeBytes);
  randomBytes(5 * mebibyte).copy(image, 0);
  randomBytes(3 * mebibyte).copy(image, 40 * mebibyte);
  const file = await open(path, 'w');
  await file.write(image, 0, 5 * mebibyte, 0);
  await file.write(image, 40 * mebibyte, 3 * mebibyte, 40 * mebibyte);
  await file.truncate(volumeSizeBytes);
  await file.close();
  return image;
}

beforeAll(async () => {
  provider = new MemoryVolumeProvider();
  for (const name of ['vol', 'copy', 'io', 'zero', 'base', 'broken'])
    provider.createVdi(name, volumeSizeBytes);
  server = await startNbdServer({ host: '127.0.0.1', port: 0, provider });
  workDir = await mkdtemp(join(tmpdir(), 'nbd-tools-'));
  sourcePath = join(workDir, 'source.raw');
  sourceData = await writeSparseImage(sourcePath);
});

afterAll(async () => {
  await server?.close();
  if (workDir) await rm(workDir, { recursive: true, force: true });
  // Every volume the server opened is closed again once its last connection is gone.
  expect(provider.closeCount).toBe(provider.openCount);
});

describe('qemu-img', () => {
  test('info reports the size of the VDI', async () => {
    const stdout = await mustRun('qemu-img', [
      'info',
      '--image-opts',
      `driver=nbd,host=127.0.0.1,port=${server.port},export=vol`,
    ]);
    expect(stdout).toContain('virtual size: 64 MiB (67108864 bytes)');
  });

  test('convert into the export, then compare reads back identical data', async () => {
    await mustRun('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', sourcePath, url('vol')]);
    const compare = await runTool('qemu-img', [
      'compare',
      '-f',
      'raw',
      '-F',
      'raw',
      sourcePath,
      url('vol'),
    ]);
    expect(compare.stdout.trim()).toBe('Images are identical.');
    expect(compare.code).toBe(0);
    const readBackPath = join(workDir, 'vol-back.raw');
    await mustRun('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', url('vol'), readBackPath]);
    expect(md5(await readFile(readBackPath))).toBe(md5(sourceData));
  });
});

describe('nbdinfo', () => {
  test('--list names every VDI', async () => {
    const stdout = await mustRun('nbdinfo', ['--list', url()]);
    for (const name of ['vol', 'copy', 'io', 'base']) expect(stdout).toContain(`export="${name}":`);
  });

  test('shows the transmission flags we advertise', async () => {
    const stdout = await mustRun('nbdinfo', [url('vol')]);
    for (const line of [
      'is_read_only: false',
      'can_multi_conn: true',
      'can_flush: true',
      'can_fua: true',
      'can_trim: true',
      'can_zero: true',
      'can_df: true',
      'block_size_maximum: 33554432',
      'base:allocation',
    ]) {
      expect(stdout).toContain(line);
    }
  });

  test('--map shows data where objects exist and holes elsewhere', async () => {
    const zero = await mustRun('nbdinfo', ['--map', url('zero')]);
    expect(
      zero
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/)),
    ).toEqual([['0', '67108864', '3', 'hole,zero']]);
    await mustRun('nbdcopy', [sourcePath, url('zero')]);
    const stdout = await mustRun('nbdinfo', ['--map', url('zero')]);
    expect(
      stdout
        .trim()
        .split('\n')
        .map((line) => line.trim().split(/\s+/)),
    ).toEqual([
      ['0', '8388608', '0', 'data'],
      ['8388608', '33554432', '3', 'hole,zero'],
      ['41943040', '4194304', '0', 'data'],
      ['46137344', '20971520', '3', 'hole,zero'],
    ]);
    expect(provider.objectCount('zero')).toBe(3);
  });
});

describe('nbdcopy', () => {
  test('copies in and out over 4 connections that share one opened volume', async () => {
    const opensBefore = provider.openCount;
    await mustRun('nbdcopy', ['--connections=4', '--requests=16', sourcePath, url('copy')]);
    expect(provider.openCount - opensBefore).toBe(1);
    const outPath = join(workDir, 'copy-out.raw');
    await mustRun('nbdcopy', ['--connections=4', url('copy'), outPath]);
    expect(md5(await readFile(outPath))).toBe(md5(sourceData));
    expect(provider.objectCount('copy')).toBe(3);
  });
});

describe('qemu-io', () => {
  test('writes a pattern, reads it back, discard deallocates', async () => {
    const io = (...commands: string[]) =>
      mustRun('qemu-io', [
        '-f',
        'raw',
        ...commands.flatMap((command) => ['-c', command]),
        url('io'),
      ]);
    expect(await io('write -P 0xab 1000 5000')).toContain('wrote 5000/5000 bytes at offset 1000');
    expect(provider.objectCount('io')).toBe(1);
    const read = await io('read -P 0xab 1000 5000', 'read -P 0 0 1000', 'read -P 0 6000 4096');
    expect(read).toContain('read 5000/5000 bytes at offset 1000');
    expect(read).not.toContain('Pattern verification failed');
    const mismatch = await runTool('qemu-io', [
      '-f',
      'raw',
      '-c',
      'read -P 0xcd 1000 5000',
      url('io'),
    ]);
    expect(mismatch.stdout).toContain('Pattern verification failed at offset 1000, 5000 bytes');
    expect(await io('discard 0 4194304')).toContain('discard 4194304/4194304 bytes at offset 0');
    expect(provider.objectCount('io')).toBe(0);
    expect(await io('read -P 0 1000 5000')).not.toContain('Pattern verification failed');
  });

  test('write zeroes with NO_HOLE provisions, with unmap deallocates', async () => {
    const io = (command: string) => mustRun('qemu-io', ['-f', 'raw', '-c', command, url('io')]);
    await io('write -P 0x11 4194304 4096');
    // qemu sends NBD_CMD_FLAG_NO_HOLE unless -u: the spec then requires the area stay allocated.
    await io('write -z 4194304 4194304');
    expect(provider.objectCount('io')).toBe(1);
    expect(await io('read -P 0 4194304 4194304')).not.toContain('Pattern verification failed');
    await io('write -z -u 4194304 4194304');
    expect(provider.objectCount('io')).toBe(0);
  });
});

describe('read-only snapshot and failures', () => {
  test('a snapshot export is read-only and keeps its data', async () => {
    await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 65536', url('base')]);
    provider.snapshot('base', 'v1');
    await mustRun('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 65536', url('base')]);
    const info = await mustRun('nbdinfo', [url('base:v1')]);
    expect(info).toContain('is_read_only: true');
    expect(info).toContain('can_trim: false');
    const write = await runTool('qemu-io', [
      '-f',
      'raw',
      '-c',
      'write -P 0x99 0 4096',
      url('base:v1'),
    ]);
    expect(write.code).not.toBe(0);
    expect(write.stderr + write.stdout).toContain('Permission denied');
    const read = await mustRun('qemu-io', [
      '-r',
      '-f',
      'raw',
      '-c',
      'read -P 0x5a 0 65536',
      url('base:v1'),
    ]);
    expect(read).toContain('read 65536/65536 bytes at offset 0');
    expect(read).not.toContain('Pattern verification failed');
  });

  test('an unknown export is refused with our message', async () => {
    const result = await runTool('qemu-img', ['info', url('nope')]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('no VDI named nope');
    const tag = await runTool('nbdinfo', [url('base:missing')]);
    expect(tag.code).not.toBe(0);
    // libnbd does not print the server's message, only that NBD_OPT_GO failed for this export.
    expect(tag.stderr).toContain('server replied with error to opt_go request');
  });

  test('a cluster error becomes EIO and the server keeps serving', async () => {
    provider.failVdi('broken', new SdError('NETWORK', 'no replica answered'));
    const result = await runTool('qemu-io', [
      '-r',
      '-f',
      'raw',
      '-c',
      'read 0 4096',
      url('broken'),
    ]);
    expect(result.stdout + result.stderr).toContain('read failed: Input/output error');
    provider.failVdi('broken', null);
    const healed = await mustRun('qemu-io', [
      '-r',
      '-f',
      'raw',
      '-c',
      'read -P 0 0 4096',
      url('broken'),
    ]);
    expect(healed).toContain('read 4096/4096 bytes at offset 0');
  });
});
