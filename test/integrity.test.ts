// Damage at rest on real sheep: a corrupted byte, a truncated file, another object's file in
// place. Reads through every node stay correct, the damage is logged with the oid and node and
// repaired from a replica that passes its checksums; with every copy damaged a read fails.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { dataOffset } from '../src/store/block-sums.js';
import { flipByte } from './support/damage.js';
import { md5, pattern, poll, startCluster, type Cluster } from './support/cluster.js';

const MiB = 2 ** 20;
const clusters: Cluster[] = [];
afterEach(async () => {
  for (const c of clusters.splice(0)) await c.destroy();
});

async function located(c: Cluster, index: number): Promise<{ oid: string; primary: string; placement: number[] }> {
  const where = (await c.dogOk(['vdi', 'object', 'location', 'v', String(index)])).out;
  const oid = /Looking for the object ([0-9a-f]{16})/.exec(where)![1]!;
  const nodes = /should be located at:\n(.*)\n/.exec(where)![1]!.split(' ');
  return { oid, primary: nodes[0]!, placement: nodes.map((id) => c.ports.indexOf(Number(id.split(':')[1]))) };
}

/** For each node, an object it is the primary of: clients read through it, so its copy is read. */
async function primaryObjects(c: Cluster, objects: number): Promise<string[]> {
  const all = await Promise.all(Array.from({ length: objects }, (_, index) => located(c, index)));
  return [0, 1, 2].map((i) => all.find((o) => o.primary === c.nodeId(i))!.oid);
}

describe('read repair', () => {
  it('serves every read from a good copy and repairs the damaged ones', async () => {
    const c = await startCluster({ nodes: 3, copies: 3, basePort: 8400, prefix: 'sheep-integrity-' });
    clusters.push(c);
    const data = pattern(64 * MiB, 13);
    await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
    await c.dogOk(['vdi', 'write', 'v'], { input: data });
    const oids = await primaryObjects(c, 16);
    const another = (await located(c, 15)).oid;
    const good = oids.map((oid) => c.objectHash(0, oid));

    // Each node holds every object (3 copies on 3 nodes); its own objects it reads itself.
    flipByte(c.objectPath(0, oids[0]!), dataOffset + 3 * MiB + 17);
    fs.truncateSync(c.objectPath(1, oids[1]!), dataOffset + MiB);
    fs.copyFileSync(c.objectPath(2, another), c.objectPath(2, oids[2]!));

    for (const i of [0, 1, 2]) {
      expect({ node: i, md5: md5((await c.dogOk(['vdi', 'read', 'v'], { port: c.port(i) })).stdout) }).toEqual({ node: i, md5: md5(data) });
    }
    for (const [i, problem] of [
      [0, 'block 768 (bytes 3145728+4096) fails its checksum'],
      [1, 'block 256 (bytes 1048576+4096) fails its checksum'],
      [2, `the file holds object ${another}`],
    ] as const) {
      const line = await poll(`node ${i} to log the damage`, () => c.log(i).split('\n').find((l) => l.includes('copy fails its checksum')), 10_000);
      expect(JSON.parse(line)).toMatchObject({ oid: oids[i], node: c.nodeId(i), err: `object ${oids[i]}: ${problem}` });
    }
    await poll('the damaged copies repaired', () => [0, 1, 2].every((i) => c.objectHash(i, oids[i]!) === good[i]), 20_000);
    for (const i of [0, 1, 2]) expect(c.log(i)).toContain('repaired a damaged copy from another replica');
  });

  it('two damaged copies: the one that passes wins; all damaged: the read fails, nothing wrong is returned', async () => {
    const c = await startCluster({ nodes: 3, copies: 3, basePort: 8410, prefix: 'sheep-integrity-' });
    clusters.push(c);
    const data = pattern(32 * MiB, 14);
    await c.dogOk(['vdi', 'create', 'v', String(data.length)]);
    await c.dogOk(['vdi', 'write', 'v'], { input: data });
    const all = await Promise.all(Array.from({ length: 8 }, (_, index) => located(c, index)));
    const [first, second] = await primaryObjects(c, 8);
    const order = all.find((o) => o.oid === first)!.placement;
    // Node 0 is the primary of `first`: it reads its own copy, then the others in placement order.
    const [, next, last] = order as [number, number, number];
    const good = c.objectHash(last, first!);
    flipByte(c.objectPath(0, first!), dataOffset + 100);
    flipByte(c.objectPath(next, first!), dataOffset + 5000);
    const whole = md5((await c.dogOk(['vdi', 'read', 'v'], { port: c.port(0) })).stdout);
    expect(whole).toBe(md5(data));
    await poll('both repaired from the third', () => [0, next].every((i) => c.objectHash(i, first!) === good), 20_000);

    for (const i of [0, 1, 2]) flipByte(c.objectPath(i, second!), dataOffset + 4096 * i + 1);
    const failed = await c.dog(['vdi', 'read', 'v'], { port: c.port(0) });
    expect(failed.code).not.toBe(0);
    expect(failed.stdout.length).toBe(0);
    expect(failed.stderr).toMatch(/^[^\n]*checksums[^\n]*\n$/);
  });
});
