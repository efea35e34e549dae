// Defect: replicas diverged when the client's node died mid-write (hardening issue, data loss 2).
// The gateway sends a write to every replica; if it dies after some have it and before others do,
// nobody retries, and the copies differ. After any failure every copy of an object must converge
// to one content before it is served again. Real sheep on ports 7620-7629.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Oid } from '../src/engine/oid.js';
import { RecentWrites } from '../src/sheep/recent-writes.js';
import { Cluster, dogBin, md5, parseEpochHistory, pattern, poll } from './support/cluster.js';
import { dataOffset } from '../src/store/block-sums.js';

const MiB = 1024 * 1024;
let clusters: Cluster[] = [];

afterEach(async () => {
  const done = clusters;
  clusters = [];
  await Promise.all(done.map((c) => c.destroy()));
});

describe('RecentWrites', () => {
  const oid = (n: number) => BigInt(n) as Oid;

  it('a departed gateway leaves the objects it wrote within the window, once', () => {
    const writes = new RecentWrites(1000, 10);
    writes.note('a', oid(1), 0);
    writes.note('a', oid(2), 500);
    writes.note('b', oid(3), 500);
    expect([...(writes.take('a', 1200) as Set<Oid>)]).toEqual([oid(2)]);
    expect([...(writes.take('a', 1200) as Set<Oid>)]).toEqual([]);
    expect([...(writes.take('b', 1200) as Set<Oid>)]).toEqual([oid(3)]);
  });

  it('a re-write keeps an object in the window', () => {
    const writes = new RecentWrites(1000, 10);
    writes.note('a', oid(1), 0);
    writes.note('a', oid(2), 100);
    writes.note('a', oid(1), 900);
    expect([...(writes.take('a', 1500) as Set<Oid>)]).toEqual([oid(1)]);
  });

  it('more objects than tracked make every copy a suspect until the window passes', () => {
    const writes = new RecentWrites(1000, 3);
    for (let n = 0; n < 4; n++) writes.note('a', oid(n), n);
    expect(writes.take('a', 10)).toBe('all');
    for (let n = 0; n < 4; n++) writes.note('b', oid(n), n);
    writes.note('b', oid(9), 2000); // the window has passed: tracked again
    expect([...(writes.take('b', 2000) as Set<Oid>)]).toEqual([oid(9)]);
  });
});

describe('a gateway killed mid-write', () => {
  it('leaves one content on every replica, and every node reads that content', async () => {
    const c = new Cluster({ basePort: 7620, prefix: 'sheep-diverge-' });
    clusters.push(c);
    await Promise.all([0, 1, 2].map((i) => c.start(i)));
    await c.waitForMembers();
    await c.dogOk(['cluster', 'format', '-c', '3'], { port: c.port(0) });
    const before = pattern(64 * MiB, 21);
    await c.dogOk(['vdi', 'create', 'v', String(before.length)], { port: c.port(0) });
    await c.dogOk(['vdi', 'write', 'v'], { port: c.port(0), input: before });
    // Node 0 starts afresh, so its connection to node 2 has small socket buffers (the kernel
    // grows them with traffic): the writes below cannot all fit in them.
    await c.kill(0);
    await c.waitForMembers();
    await c.start(0);
    await c.waitForFullCopies([0, 1, 2], 3, 60_000);

    // Objects whose primary is node 0: dog sends their writes there, so node 0 is the gateway.
    const victims: Array<{ index: number; oid: string; oldChunk: Buffer; newChunk: Buffer }> = [];
    for (let index = 0; index < 16 && victims.length < 4; index++) {
      const where = (await c.dogOk(['vdi', 'object', 'location', 'v', String(index)], { port: c.port(0) })).out;
      const placement = /should be located at:\n(.*)\n/.exec(where)![1]!.split(' ');
      if (placement[0] !== c.nodeId(0)) continue;
      const oid = /Looking for the object ([0-9a-f]{16})/.exec(where)![1]!;
      victims.push({ index, oid, oldChunk: before.subarray(index * 4 * MiB, (index + 1) * 4 * MiB), newChunk: pattern(4 * MiB, 100 + index) });
    }
    expect(victims.length).toBeGreaterThanOrEqual(2);
    // The data of a copy: its file past the header (block sums and identity, block-sums.ts).
    const content = (i: number, oid: string) => md5(fs.readFileSync(path.join(c.storeDir(i), 'obj', oid)).subarray(dataOffset));
    const range = (index: number) => [String(index * 4 * MiB), String(4 * MiB)];

    // Node 2 stops reading. Node 0's writes reach node 1; on their way to node 2 the first fills
    // the kernel's socket buffers and the others wait in node 0's memory, lost when it is killed.
    await c.kill(2, 'SIGSTOP', false);
    const writers = victims.map((v) => {
      const writer = spawn(process.execPath, [dogBin, 'vdi', 'write', 'v', ...range(v.index), '-p', String(c.port(0))], { stdio: ['pipe', 'ignore', 'ignore'] });
      writer.stdin.end(v.newChunk);
      return writer;
    });
    await poll('node 1 to have the new contents', () => victims.every((v) => content(1, v.oid) === md5(v.newChunk)), 20_000, 20);
    await c.kill(0);
    await c.kill(2, 'SIGCONT', false);
    for (const writer of writers) writer.kill('SIGKILL');

    await poll('epoch 2 of nodes 1 and 2 everywhere', async () => {
      for (const i of [1, 2]) {
        const history = parseEpochHistory((await c.dogOk(['cluster', 'info'], { port: c.port(i) })).out);
        if (history.at(-1)?.nodes.join() !== [c.nodeId(1), c.nodeId(2)].join()) return false;
      }
      return true;
    }, 20_000);
    await poll('recovery idle', () => c.recoveryIdle(1), 30_000);
    // The writes were never acknowledged: either content may win, but one content everywhere.
    const agreed = new Map<string, string>();
    for (const v of victims) {
      const reads = await Promise.all([1, 2].map(async (i) => md5((await c.dogOk(['vdi', 'read', 'v', ...range(v.index)], { port: c.port(i) })).stdout)));
      expect([md5(v.oldChunk), md5(v.newChunk)]).toContain(reads[0]);
      expect({ index: v.index, node2: reads[1] }).toEqual({ index: v.index, node2: reads[0] });
      expect({ index: v.index, store2: content(2, v.oid) }).toEqual({ index: v.index, store2: content(1, v.oid) });
      agreed.set(v.oid, reads[0]!);
    }

    // The dead node returns: it takes the agreed contents too.
    await c.start(0);
    await c.waitForFullCopies([0, 1, 2], 3, 60_000);
    for (const v of victims) {
      for (const i of [0, 1, 2]) expect(content(i, v.oid)).toBe(agreed.get(v.oid));
      for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'v', ...range(v.index)], { port: c.port(i) })).stdout)).toBe(agreed.get(v.oid));
    }
  });
});
