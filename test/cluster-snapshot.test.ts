// `dog cluster snapshot save|list|show|load` end to end (issue #15): a cluster's VDIs saved into a
// local directory and loaded into a new cluster, checked by md5 through every node.
// Ports 13600-13699 belong to this file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, md5, pattern, startCluster } from './support/cluster.js';
import { maskDates, maskRawVdiList } from './support/mask.js';

const MiB = 1024 * 1024;

describe('dog cluster snapshot', () => {
  let first: Cluster | undefined;
  let second: Cluster | undefined;
  let dir: string;
  /** [name, snapshot tag or ''] → md5 of its whole content. */
  const sums = new Map<string, string>();
  const vdis: Array<[string, string]> = [
    ['vm', 's1'],
    ['vm', ''],
    ['db', ''],
    ['cl', ''],
  ];
  let savedList = '';

  async function vdiMd5(c: Cluster, i: number, name: string, tag: string): Promise<string> {
    return md5((await c.dogOk(['vdi', 'read', ...(tag ? ['-s', tag] : []), name], { port: c.port(i) })).stdout);
  }

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dog-farm-'));
    first = await startCluster({ nodes: 3, copies: 2, basePort: 13600, prefix: 'dog-farm-a-' });
    await first.dogOk(['vdi', 'create', 'vm', '24M']);
    await first.dogOk(['vdi', 'write', 'vm', '0', String(8 * MiB)], { input: pattern(8 * MiB, 1) });
    await first.dogOk(['vdi', 'write', 'vm', String(16 * MiB), String(MiB)], { input: pattern(MiB, 2) });
    await first.dogOk(['vdi', 'snapshot', '-s', 's1', 'vm']);
    await first.dogOk(['vdi', 'write', 'vm', String(4 * MiB), String(2 * MiB)], { input: pattern(2 * MiB, 3) });
    await first.dogOk(['vdi', 'create', '-c', '3', 'db', '12M']);
    await first.dogOk(['vdi', 'write', 'db', String(5 * MiB), String(3 * MiB)], { input: pattern(3 * MiB, 4) });
    await first.dogOk(['vdi', 'clone', '-s', 's1', 'vm', 'cl']);
    await first.dogOk(['vdi', 'write', 'cl', String(20 * MiB), String(MiB)], { input: pattern(MiB, 5) });
    for (const [name, tag] of vdis) sums.set(`${name}@${tag}`, await vdiMd5(first, 0, name, tag));
    savedList = maskRawVdiList((await first.dogOk(['vdi', 'list', '-r'])).out);
  }, 60_000);
  afterAll(async () => {
    await first?.stop();
    await second?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('saves every VDI content-addressed, lists and shows the tag', async () => {
    const saved = await first!.dog(['cluster', 'snapshot', 'save', 'monday', dir], { port: first!.port(1) });
    expect(saved.code, saved.stderr).toBe(0);
    expect(saved.out + saved.stderr).toBe(''); // no progress into a pipe
    const objects = fs.readdirSync(path.join(dir, 'objects'));
    // A second save stores no new data object: only its manifest.
    await first!.dogOk(['cluster', 'snapshot', 'save', 'tuesday', dir]);
    expect(fs.readdirSync(path.join(dir, 'objects')).length).toBe(objects.length + 1);
    const again = await first!.dog(['cluster', 'snapshot', 'save', 'monday', dir]);
    expect([again.code, again.stderr]).toEqual([1, 'Snapshot tag has already been used for another snapshot, please, use another one.\n']);
    const numeric = await first!.dog(['cluster', 'snapshot', 'save', '7up', dir]);
    expect([numeric.code, numeric.stderr]).toEqual([64, 'Tag should not start with number.\n']);
    expect(maskDates((await first!.dogOk(['cluster', 'snapshot', 'list', dir])).out)).toBe(
      'Index\t\tTag\t\tSnapshot Time\n1\t\tmonday\t\tWww Mmm DD HH:MM:SS YYYY\n2\t\ttuesday\t\tWww Mmm DD HH:MM:SS YYYY\n',
    );
    const shown = (await first!.dogOk(['cluster', 'snapshot', 'show', 'monday', dir])).out.replace(/VDI id: [0-9a-f]+/g, 'VDI id: ID');
    expect(shown.split('\n').filter(Boolean).map((l) => l.replace(/^\d+\. /, '')).sort()).toEqual(
      ['db, tag: ', 'cl, tag: ', 'vm, tag: s1', 'vm, tag: '].map((t) => `VDI id: ID, name: ${t}`).sort(),
    );
  });

  it('refuses a damaged or missing object with nothing written, then loads into a new cluster equal by md5 through every node', async () => {
    await first!.stop();
    first = undefined;
    second = await startCluster({ nodes: 3, copies: 2, basePort: 13610, prefix: 'dog-farm-b-' });
    const objects = path.join(dir, 'objects');
    // A data object (not a manifest: those hold the save time, so which sorts first varies).
    const manifests = new Set(fs.readFileSync(path.join(dir, 'snap.log'), 'utf8').trim().split('\n').map((line) => (JSON.parse(line) as { manifest: string }).manifest));
    const victim = path.join(objects, fs.readdirSync(objects).filter((name) => !manifests.has(name)).sort()[0]!);
    const good = fs.readFileSync(victim);
    const bad = Buffer.from(good);
    bad[0] ^= 0xff;
    fs.writeFileSync(victim, bad);
    const refused = await second.dog(['cluster', 'snapshot', 'load', 'monday', dir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^Fail to load object [0-9a-f]{40}: its checksum does not match\n$/);
    expect((await second.dogOk(['vdi', 'list', '-r'])).out).toBe('');
    fs.rmSync(victim);
    const missing = await second.dog(['cluster', 'snapshot', 'load', 'monday', dir]);
    expect([missing.code, missing.stderr]).toEqual([2, `Fail to load object ${path.basename(victim)}: it is missing from ${dir}\n`]);
    expect((await second.dogOk(['vdi', 'list', '-r'])).out).toBe('');
    fs.writeFileSync(victim, good);

    const loaded = await second.dog(['cluster', 'snapshot', 'load', '1', dir], { port: second.port(2) });
    expect(loaded.code, loaded.stderr).toBe(0);
    expect(loaded.out + loaded.stderr).toBe('');
    for (let i = 0; i < 3; i++) {
      for (const [name, tag] of vdis) expect(await vdiMd5(second, i, name, tag), `${name}@${tag} via ${i}`).toBe(sums.get(`${name}@${tag}`));
    }
    expect(maskRawVdiList((await second.dogOk(['vdi', 'list', '-r'], { port: second.port(1) })).out)).toBe(savedList);
    const twice = await second.dog(['cluster', 'snapshot', 'load', 'monday', dir]);
    expect([twice.code, twice.stderr]).toEqual([1, 'Fail to load snapshot: the cluster has VDIs; load needs a freshly formatted cluster\n']);
  });
});
