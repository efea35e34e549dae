// dog vdi check and dog cluster check on real sheep: damaged, missing, replaced and outvoted
// copies repaired with the original's messages (exact text), checksums deciding where a vote
// of all copies could not, and verified copies that disagree with no majority left alone.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseOid } from '../src/engine/oid.js';
import { dataOffset, encodeIdentity, sumsOf } from '../src/store/block-sums.js';
import { flipByte } from './support/damage.js';
import { md5, pattern, startCluster, type Cluster } from './support/cluster.js';

const MiB = 2 ** 20;
let c: Cluster;
let data: Buffer;
/** oid of object i, and the nodes holding it in placement order. */
let objects: Array<{ oid: string; placement: number[] }>;

beforeAll(async () => {
  c = await startCluster({ nodes: 3, copies: 3, basePort: 8420, prefix: 'sheep-check-' });
  data = pattern(24 * MiB, 31);
  await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
  await c.dogOk(['vdi', 'write', 'v'], { input: data });
  objects = [];
  for (let index = 0; index < 6; index++) {
    const where = (await c.dogOk(['vdi', 'object', 'location', 'v', String(index)])).out;
    const oid = /Looking for the object ([0-9a-f]{16})/.exec(where)![1]!;
    const nodes = /should be located at:\n(.*)\n/.exec(where)![1]!.split(' ');
    objects.push({ oid, placement: nodes.map((id) => c.ports.indexOf(Number(id.split(':')[1]))) });
  }
}, 120_000);
afterAll(async () => {
  await c?.destroy();
});

/** A copy that passes its checksums but holds other bytes (as a lost write would leave). */
function plantValidCopy(i: number, oid: string, content: Buffer): void {
  const header = Buffer.concat([encodeIdentity(parseOid(oid)!, 4 * MiB), sumsOf(content)]);
  fs.writeFileSync(c.objectPath(i, oid), Buffer.concat([header, Buffer.alloc(dataOffset - header.length), content]));
}

function copiesAgree(oid: string): boolean {
  return new Set([0, 1, 2].map((i) => c.objectHash(i, oid))).size === 1;
}

describe('dog vdi check', () => {
  it('a clean VDI: nothing to fix', async () => {
    expect((await c.dogOk(['vdi', 'check', 'v'])).out).toBe('finish check&repair v\n');
    expect((await c.dogOk(['vdi', 'check', '-e', 'v'])).out).toBe('v is fine, no object is missing.\n');
  });

  it('fixes a corrupted byte, a deleted file, a truncated file and a replaced one, with the exact lines', async () => {
    const [o0, o1, o2, o3] = objects as [typeof objects[0], typeof objects[0], typeof objects[0], typeof objects[0]];
    flipByte(c.objectPath(0, o0.oid), dataOffset + 12345);
    fs.rmSync(c.objectPath(1, o1.oid));
    fs.truncateSync(c.objectPath(2, o2.oid), dataOffset + 3 * MiB);
    fs.copyFileSync(c.objectPath(0, o2.oid), c.objectPath(0, o3.oid));

    const exist = await c.dog(['vdi', 'check', '-e', 'v']);
    expect([exist.code, exist.out]).toEqual([1, `[${c.nodeId(1)}] oid ${o1.oid} is missing.\nv lost 1 object(s).\n`]);

    const checked = await c.dogOk(['vdi', 'check', 'v']);
    expect(checked.out).toBe(
      [`fixed replica ${o0.oid}`, `fixed missing ${o1.oid}`, `fixed replica ${o2.oid}`, `fixed replica ${o3.oid}`, 'finish check&repair v', ''].join('\n'),
    );
    expect(checked.stderr).toBe('');
    for (const o of [o0, o1, o2, o3]) expect(copiesAgree(o.oid), o.oid).toBe(true);
    for (const i of [0, 1, 2]) expect(md5((await c.dogOk(['vdi', 'read', 'v'], { port: c.port(i) })).stdout)).toBe(md5(data));
    expect((await c.dogOk(['vdi', 'check', 'v'])).out).toBe('finish check&repair v\n');
    expect(c.log(0) + c.log(1) + c.log(2)).toContain('check repaired a copy');
  });

  it('two of three copies damaged: the one that passes its checksums is enough, and the line says so', async () => {
    const o = objects[4]!;
    flipByte(c.objectPath(o.placement[0]!, o.oid), dataOffset + 1);
    fs.truncateSync(c.objectPath(o.placement[1]!, o.oid), dataOffset);
    const checked = await c.dogOk(['vdi', 'check', 'v']);
    const line = `fixed replica ${o.oid} (from the only copy that passes its checksums)`;
    expect(checked.out).toBe(`${line}\n${line}\nfinish check&repair v\n`);
    expect(copiesAgree(o.oid)).toBe(true);
    expect(md5((await c.dogOk(['vdi', 'read', 'v', String(4 * 4 * MiB), String(4 * MiB)])).stdout)).toBe(md5(data.subarray(16 * MiB, 20 * MiB)));
  });

  it('verified copies that disagree: the majority wins; with no majority nothing is touched and the exit is non-zero', async () => {
    const o = objects[5]!;
    const [a, b, third] = o.placement as [number, number, number];
    plantValidCopy(a, o.oid, pattern(4 * MiB, 77));
    const outvoted = await c.dogOk(['vdi', 'check', 'v']);
    expect(outvoted.out).toBe(`fixed replica ${o.oid}\nfinish check&repair v\n`);
    expect(copiesAgree(o.oid)).toBe(true);

    plantValidCopy(a, o.oid, pattern(4 * MiB, 78));
    plantValidCopy(b, o.oid, pattern(4 * MiB, 79));
    const before = [a, b, third].map((i) => c.objectHash(i, o.oid));
    const split = await c.dog(['vdi', 'check', 'v']);
    expect([split.code, split.out, split.stderr]).toEqual([1, 'finish check&repair v\n', `no majority of ${o.oid}\n`]);
    expect([a, b, third].map((i) => c.objectHash(i, o.oid))).toEqual(before);
  });

  it('dog cluster check goes through every VDI; bad input is one line', async () => {
    const o = objects[5]!;
    // Settle the split of the previous test: the third copy is the original data.
    fs.copyFileSync(c.objectPath(o.placement[2]!, o.oid), c.objectPath(o.placement[0]!, o.oid));
    await c.dogOk(['vdi', 'create', 'w', String(8 * MiB)]);
    await c.dogOk(['vdi', 'write', 'w'], { input: pattern(8 * MiB, 5) });
    const checked = await c.dogOk(['cluster', 'check']);
    // In VDI id order, as the original walks them (w's id, from its name's hash, is the lower).
    expect(checked.out).toBe(`finish check&repair w\nfixed replica ${o.oid}\nfinish check&repair v\n`);
    const missing = await c.dog(['vdi', 'check', 'nosuch']);
    expect([missing.code, missing.stderr]).toEqual([1, 'Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\n']);
  });
});
