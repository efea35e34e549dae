// Erasure-coded VDIs on six real sheep of distinct zones: a 4:2 VDI written with random data
// reads back right through every node, is stored as 1.5 times its data, reads right with two
// nodes killed (decoded from the survivors), is rebuilt by recovery and passes `vdi check`; the
// Copies column says 4:2, also after a restart; a strict cluster refuses writes it cannot place.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isStripOid, stripParent } from '../src/engine/ec-layout.js';
import { oidHex, parseOid, type Oid } from '../src/engine/oid.js';
import { dataOffset } from '../src/store/block-sums.js';
import { md5, poll, startCluster, type Cluster } from './support/cluster.js';
import { maskDates } from './support/mask.js';

const MiB = 2 ** 20;
const all = [0, 1, 2, 3, 4, 5];
let c: Cluster;
const data = crypto.randomBytes(24 * MiB);

beforeAll(async () => {
  c = await startCluster({ nodes: 6, basePort: 13200, prefix: 'sheep-ec-', format: false });
  await c.dogOk(['cluster', 'format', '-c', '4:2']);
}, 120_000);
afterAll(async () => {
  await c?.destroy();
});

/** Strip files per object among `stores`: object oid → strip count. */
function stripsPerObject(stores: readonly number[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const [oid] of c.allObjects(stores)) {
    const parsed = parseOid(oid)!;
    if (!isStripOid(parsed)) continue;
    const parent = oidHex(stripParent(parsed));
    counts.set(parent, (counts.get(parent) ?? 0) + 1);
  }
  return counts;
}

function stripBytes(stores: readonly number[]): number {
  let bytes = 0;
  for (const [oid, holders] of c.allObjects(stores)) {
    // What the store adds to every object (identity, block sums) is left out: strips and replicas pay it alike.
    if (isStripOid(parseOid(oid)! as Oid)) for (const i of holders) bytes += fs.statSync(c.objectPath(i, oid)).size - dataOffset;
  }
  return bytes;
}

describe('a 4:2 VDI on six sheep', () => {
  it('-c D:P is checked with the original usage, and the Copies column says 4:2 (new VDIs inherit it)', async () => {
    const bad = await c.dog(['vdi', 'create', 'x', '8M', '-c', '4:4']);
    expect([bad.code, bad.stderr]).toEqual([
      1,
      'Invalid parameter 4:4\nTo create replicated vdi, set -c x\n  x(1 to 31)   - number of replicated copies\n' +
        'To create erasure coded vdi, set -c x:y\n  x(2,4,8,16)  - number of data strips\n  y(1 to 15)   - number of parity strips\n',
    ]);
    await c.dogOk(['vdi', 'create', 'v', '24M']);
    await c.dogOk(['vdi', 'create', 'r', '8M', '-c', '3']);
    await c.dogOk(['vdi', 'create', 'e', '8M', '-c', '2:1']);
    // Dates and VDI ids (the hash of the name) masked; rows in the registry's order.
    const list = maskDates((await c.dogOk(['vdi', 'list'])).out).replace(/(HH:MM  )[ 0-9a-f]{7}/g, '$1    VID');
    expect(list.split('\n').sort()).toEqual([
      '',
      '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift',
      '  e            0  8.0 MB  0.0 MB  0.0 MB YYYY-MM-DD HH:MM      VID    2:1                22',
      '  r            0  8.0 MB  0.0 MB  0.0 MB YYYY-MM-DD HH:MM      VID      3                22',
      '  v            0   24 MB  0.0 MB  0.0 MB YYYY-MM-DD HH:MM      VID    4:2                22',
    ]);
    expect((await c.dogOk(['cluster', 'info', '-v'])).out).toContain('Cluster store: plain with 4:2 redundancy policy\n');
    const alter = await c.dog(['vdi', 'alter-copy', 'v', '-c', '2', '-f']);
    expect([alter.code, alter.stderr]).toEqual([1, "v's copy policy is erasure code, changing it is not supported yet.\n"]);
  });

  it('writes and reads through every node, stored as 1.5 times the data', async () => {
    await c.dogOk(['vdi', 'write', 'v'], { input: data });
    for (const i of all) expect(await c.readMd5(i, 'v'), `node ${i}`).toBe(md5(data));
    // Six objects, each six strips of 1 MiB (and a 4 KiB header) on six different nodes.
    const strips = stripsPerObject(all);
    expect([...strips.values()]).toEqual(Array(6).fill(6));
    for (const [oid, holders] of c.allObjects(all)) if (isStripOid(parseOid(oid)!)) expect(holders.length, oid).toBe(1);
    const ratio = stripBytes(all) / data.length;
    expect(ratio).toBeGreaterThan(1.5);
    expect(ratio).toBeLessThan(1.51); // the 4 KiB strip headers
    // A partial write reads, patches and rewrites its stripe.
    const patch = crypto.randomBytes(5000);
    await c.dogOk(['vdi', 'write', 'v', String(3 * MiB - 100), String(patch.length)], { input: patch });
    patch.copy(data, 3 * MiB - 100);
    expect(await c.readMd5(3, 'v')).toBe(md5(data));
  });

  it('vdi check rebuilds a strip its node lost', async () => {
    const [victim] = [...c.allObjects(all)].find(([oid]) => isStripOid(parseOid(oid)!))!;
    const holder = c.holders(victim)[0]!;
    fs.rmSync(c.objectPath(holder, victim));
    const check = await c.dogOk(['vdi', 'check', 'v']);
    const parent = oidHex(stripParent(parseOid(victim)!));
    expect(check.out).toBe(`fixed missing ${parent}\nfinish check&repair v\n`);
    expect(c.holders(victim)).toEqual([holder]);
    expect((await c.dogOk(['vdi', 'check', 'v'])).out).toBe('finish check&repair v\n');
  });

  it('two nodes killed: reads decode from the survivors, recovery rebuilds every strip, check is clean', async () => {
    await c.kill(1);
    await c.kill(4);
    const live = [0, 2, 3, 5];
    for (const i of live) expect(await c.readMd5(i, 'v'), `degraded read through ${i}`).toBe(md5(data));
    // Each strip one copy, the owner table three (P+1); every object has its six strips again.
    await c.waitForFullCopies(live, (oid) => (isStripOid(parseOid(oid)!) ? 1 : 3), 60_000);
    expect([...stripsPerObject(live).values()]).toEqual(Array(6).fill(6));
    for (const i of live) expect(await c.readMd5(i, 'v'), `after recovery through ${i}`).toBe(md5(data));
    expect((await c.dogOk(['vdi', 'check', 'v'])).out).toBe('finish check&repair v\n');
    // One more node may go: four strips of six are still there for every object.
    await c.kill(5);
    expect(await c.readMd5(0, 'v')).toBe(md5(data));
  });

  it('after a restart the Copies column still says 4:2 and the data reads right', async () => {
    const live = [0, 2, 3];
    await c.dogOk(['cluster', 'shutdown']);
    await Promise.all(live.map((i) => c.exited(i)));
    await Promise.all(live.map((i) => c.start(i)));
    await poll('running', async () => (await c.status(0)) === 'running, auto-recovery enabled', 30_000);
    const list = (await c.dogOk(['vdi', 'list', '-r'])).out;
    expect(list.split('\n').find((line) => line.startsWith('= v '))!.split(' ')[8]).toBe('4:2');
    expect(await c.readMd5(2, 'v')).toBe(md5(data));
  });

  it('a strict cluster (format -t) halts writes with fewer nodes than strips, and says why', async () => {
    await c.dogOk(['cluster', 'format', '-c', '4:2', '-t', '-f']);
    await c.dogOk(['vdi', 'create', 's', '8M']);
    const refused = await c.dog(['vdi', 'write', 's', '0', '4096'], { input: Buffer.alloc(4096, 1) });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('IO has halted as there are not enough living nodes');
    // Reads go on (nothing was written: zeros).
    expect((await c.dogOk(['vdi', 'read', 's', '0', '4096'])).stdout.equals(Buffer.alloc(4096))).toBe(true);
  });
});

