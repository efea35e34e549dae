// A full store (issue #12 item 4), on real processes: node 1's store is a 64 MiB tmpfs, filled
// with a file. That node must refuse writes that need space with ENOSPC (dog: one line, exit 1),
// keep serving reads, keep running and answering (its log drops lines rather than block), shut
// down and restart while still full, and take writes again by itself once space is freed.
// Needs root (mount). Ports 8030-8039.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, makeTempDir, md5, pattern, poll } from './support/cluster.js';

const MiB = 1024 * 1024;
const mountDir = makeTempDir('sheep-full-mnt-');
const filler = path.join(mountDir, 'filler');
let mounted = false;
let c: Cluster;

beforeAll(() => {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m', 'tmpfs', mountDir]);
  mounted = true;
  c = new Cluster({ basePort: 8030, prefix: 'sheep-full-', storeDir: (i) => (i === 1 ? path.join(mountDir, 'store1') : undefined) });
});

afterAll(async () => {
  await c?.stop().catch(() => undefined);
  if (mounted) execFileSync('umount', ['-l', mountDir]);
  fs.rmSync(mountDir, { recursive: true, force: true });
});

/** Writes zeros into the filler until the filesystem says ENOSPC. */
function fillUp(): void {
  const fd = fs.openSync(filler, 'w');
  const chunk = Buffer.alloc(MiB, 1);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
  } finally {
    fs.closeSync(fd);
  }
  // tmpfs takes partial pages too: fill to the last byte, the last page of node 1's log included
  // (with whole JSON lines), so that its next log line meets ENOSPC too.
  for (const [file, piece] of [
    [filler, Buffer.alloc(512, 1)],
    [path.join(c.storeDir(1), 'sheep.log'), Buffer.from('{"msg":"filler"}\n')],
  ] as const) {
    const fd = fs.openSync(file, 'a');
    try {
      for (;;) fs.writeSync(fd, piece);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(fd);
    }
  }
}

describe('a full store', () => {
  it('refuses writes with ENOSPC, serves reads, restarts while full, and recovers once space is freed', async () => {
    await c.startAll([0, 1, 2]);
    await c.dogOk(['cluster', 'format', '-c', '3']);
    const first = pattern(8 * MiB, 1);
    const second = pattern(8 * MiB, 2);
    await c.dogOk(['vdi', 'create', 'v', String(32 * MiB)]);
    await c.dogOk(['vdi', 'write', 'v'], { input: first });
    fillUp();

    // A write that needs space on node 1 (every object has a copy there) fails at once, in one line.
    const startedMs = Date.now();
    const refused = await c.dog(['vdi', 'write', 'v', String(8 * MiB)], { input: second, port: c.port(1), timeoutMs: 30_000 });
    const refusedMs = Date.now() - startedMs;
    console.log(`write on a full store: exit ${refused.code} after ${refusedMs} ms: ${refused.stderr.trim()}`);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^[^\n]*no space left on device\n$/i);
    expect(refusedMs).toBeLessThan(10_000);
    // The node lives, answers, serves reads, and is still a member everywhere.
    expect(c.running(1)).toBe(true);
    const read = await c.dogOk(['vdi', 'read', 'v', '0', String(8 * MiB)], { port: c.port(1) });
    expect(md5(read.stdout)).toBe(md5(first));
    for (const i of [0, 1, 2]) expect(await c.nodeIds(i)).toEqual([0, 1, 2].map((n) => c.nodeId(n)));

    // Shut down and restart while the store is still full.
    await c.dogOk(['cluster', 'shutdown']);
    const exits = await Promise.all([0, 1, 2].map((i) => c.exited(i)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0]);
    await c.startAll([0, 1, 2]);
    await poll('the cluster to run again', async () => (await c.status(0)).startsWith('running'), 20_000);
    expect(md5((await c.dogOk(['vdi', 'read', 'v', '0', String(8 * MiB)], { port: c.port(1) })).stdout)).toBe(md5(first));

    // Space comes back: writes go through again without a restart, on every copy.
    fs.rmSync(filler);
    const written = await poll('a write to succeed once space is freed', async () => {
      const result = await c.dog(['vdi', 'write', 'v', String(8 * MiB)], { input: second, port: c.port(1), timeoutMs: 30_000 });
      return result.code === 0 ? result : undefined;
    }, 20_000, 500);
    expect(written.stderr).toBe('');
    for (const i of [0, 1, 2]) {
      const read = await c.dogOk(['vdi', 'read', 'v', String(8 * MiB), String(8 * MiB)], { port: c.port(i) });
      expect(md5(read.stdout)).toBe(md5(second));
    }
    for (const [oid, stores] of c.allObjects()) {
      expect(new Set(stores.map((i) => c.objectHash(i, oid))).size, `copies of ${oid}`).toBe(1);
    }
    // And its log took lines again, saying how many it had to drop.
    await poll('node 1 to log again', () => c.log(1).includes('"msg":"log lines dropped"'), 10_000);
  });
});
