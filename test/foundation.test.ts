// The foundation end to end: real sheep daemons on loopback driven by the real `dog`.
// Ports 7100-7139 belong to this file.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseKey } from '../src/engine/cluster-key.js';
import { encodeFrame, FrameDecoder, type Frame } from '../src/rpc/frame.js';
import { authenticatedSocket } from './support/raw-rpc.js';
import { Cluster, dog, makeTempDir, md5, runSheep, sleep, startCluster, type DogResult } from './support/cluster.js';
import { maskDates, maskRawVdiList } from './support/mask.js';
import { dataOffset } from '../src/store/block-sums.js';

const MiB = 1024 * 1024;
const objectBytes = 4 * MiB;

/** A failure of dog: non-zero exit, exactly one line on stderr, nothing on stdout. */
function expectOneLineFailure(result: DogResult, message?: string | RegExp): void {
  expect(result.code, `stderr: ${result.stderr}`).not.toBe(0);
  expect(result.code).not.toBeNull();
  expect(result.stderr.endsWith('\n'), JSON.stringify(result.stderr)).toBe(true);
  expect(result.stderr.trimEnd().split('\n'), JSON.stringify(result.stderr)).toHaveLength(1);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.out).toBe('');
  if (typeof message === 'string') expect(result.stderr).toBe(`${message}\n`);
  else if (message) expect(result.stderr).toMatch(message);
}

/** Data object ids (16 hex) of a VDI for indexes [from, to). */
function dataOids(vid: string, from: number, to: number): string[] {
  return Array.from({ length: to - from }, (_, k) => `00${vid.padStart(6, '0')}${(from + k).toString(16).padStart(8, '0')}`);
}

function oidVidHex(oid: string): string {
  return oid.slice(2, 8).replace(/^0+/, '');
}

/** VID (hex) of the row of `vdi list -r` whose name and tag match. */
function rawVid(rawList: string, name: string, tag = ''): string {
  for (const line of rawList.split('\n')) {
    const f = line.split(' ');
    if (f[1] === name && f[9] === tag) return f[7]!;
  }
  throw new Error(`no VDI ${name} tag '${tag}' in\n${rawList}`);
}

describe('three sheep, copies 3', () => {
  let c: Cluster;
  const src = randomBytes(64 * MiB);
  const srcOffset = 12345;
  /** The first 12345 + 64 MiB bytes of each VDI as they should be. */
  let snapImage: Buffer;
  let testImage: Buffer;
  let cloneImage: Buffer;
  const imageBytes = srcOffset + src.length;

  beforeAll(async () => {
    c = await startCluster({ nodes: 3, copies: 3, basePort: 7100, prefix: 'foundation-' });
  });
  afterAll(async () => {
    await c?.stop();
  });

  /** Reads [offset, offset+length) of a VDI through a port and returns the md5. */
  async function readMd5(name: string, offset: number, length: number, port: number, tag?: string): Promise<string> {
    const args = ['vdi', 'read', ...(tag ? ['-s', tag] : []), name, String(offset), String(length)];
    const result = await c.dogOk(args, { port });
    expect(result.stdout.length).toBe(length);
    return md5(result.stdout);
  }

  /** Names, sizes and mtimes of every object file, and the raw VDI list: changes if anything is written. */
  async function fingerprint(): Promise<string> {
    const files = c.ports.map((_, i) =>
      c.objectFiles(i).map((oid) => {
        const st = fs.statSync(c.objectPath(i, oid));
        return `${i}/${oid}:${st.size}:${st.mtimeMs}`;
      }),
    );
    const list = await c.dogOk(['vdi', 'list', '-r']);
    return `${list.out}\n${files.flat().join('\n')}`;
  }

  it('replicates a 64 MiB write at an unaligned offset to every store, byte-identical', async () => {
    await c.dogOk(['vdi', 'create', 'test', '1G']);
    const written = await c.dogOk(['vdi', 'write', 'test', String(srcOffset)], { input: src });
    expect(written.out).toBe('');
    const expected = md5(src);
    for (const port of c.ports) expect(await readMd5('test', srcOffset, src.length, port)).toBe(expected);
    // The bytes before the write stay zero.
    const head = await c.dogOk(['vdi', 'read', 'test', '0', String(srcOffset)], { port: c.port(2) });
    expect(head.stdout.equals(Buffer.alloc(srcOffset))).toBe(true);

    const lastIndex = Math.floor((srcOffset + src.length - 1) / objectBytes);
    expect(lastIndex).toBe(16);
    const oids = dataOids('7c2b25', 0, lastIndex + 1);
    const all = c.allObjects();
    const dataOfTest = [...all.keys()].filter((oid) => oid.startsWith('007c2b25')).sort();
    expect(dataOfTest).toEqual(oids);
    for (const oid of oids) {
      expect(c.holders(oid), oid).toEqual([0, 1, 2]);
      const hashes = c.ports.map((_, i) => c.objectHash(i, oid));
      expect(new Set(hashes).size, `${oid}: ${hashes.join(' ')}`).toBe(1);
    }
    // The object file holds the VDI's bytes past its header: object 1 is bytes [4 MiB, 8 MiB) of the image.
    const object1 = fs.readFileSync(c.objectPath(1, oids[1]!));
    const image = Buffer.concat([Buffer.alloc(srcOffset), src]);
    expect(md5(object1.subarray(dataOffset, dataOffset + objectBytes))).toBe(md5(image.subarray(objectBytes, 2 * objectBytes)));
    // And the owner table exists on every store too.
    expect(c.holders('807c2b2500000000')).toEqual([0, 1, 2]);
  });

  it('snapshot keeps old bytes, the working VDI the new, a clone is writable and independent', async () => {
    const base = Buffer.concat([Buffer.alloc(srcOffset), src]);
    await c.dogOk(['vdi', 'snapshot', '-s', 'snap1', 'test']);
    const patch1 = randomBytes(MiB);
    const patch1At = 5 * MiB;
    await c.dogOk(['vdi', 'write', 'test', String(patch1At)], { input: patch1, port: c.port(1) });
    await c.dogOk(['vdi', 'clone', '-s', 'snap1', 'test', 'clone1'], { port: c.port(2) });
    const patch2 = randomBytes(100);
    const patch2At = objectBytes - 50; // crosses the boundary of objects 0 and 1
    await c.dogOk(['vdi', 'write', 'clone1', String(patch2At), '100'], { input: patch2 });
    await c.dogOk(['vdi', 'create', 'test0', '1G'], { port: c.port(1) });

    snapImage = base;
    testImage = Buffer.from(base);
    patch1.copy(testImage, patch1At);
    cloneImage = Buffer.from(base);
    patch2.copy(cloneImage, patch2At);
    // Whole images once each, through different nodes; the patched regions through every node.
    expect(await readMd5('test', 0, imageBytes, c.port(0), 'snap1'), 'snapshot').toBe(md5(snapImage));
    expect(await readMd5('test', 0, imageBytes, c.port(1)), 'test').toBe(md5(testImage));
    expect(await readMd5('clone1', 0, imageBytes, c.port(2)), 'clone1').toBe(md5(cloneImage));
    const head = 8 * MiB; // objects 0 and 1: both patches
    for (const port of c.ports) {
      expect(await readMd5('test', 0, head, port, 'snap1'), `snapshot via ${port}`).toBe(md5(snapImage.subarray(0, head)));
      expect(await readMd5('test', 0, head, port), `test via ${port}`).toBe(md5(testImage.subarray(0, head)));
      expect(await readMd5('clone1', 0, head, port), `clone1 via ${port}`).toBe(md5(cloneImage.subarray(0, head)));
    }
    // Snapshots are read-only by id too: snap id 1 is the same VDI as tag snap1.
    expect(await readMd5('test', 0, 8 * MiB, c.port(0), '1')).toBe(md5(snapImage.subarray(0, 8 * MiB)));

    const header = '  Name        Id    Size    Used  Shared    Creation time   VDI id  Copies  Tag   Block Size Shift\n';
    const expectedList =
      header +
      's test         1  1.0 GB   68 MB  0.0 MB YYYY-MM-DD HH:MM   7c2b25      3         snap1  22\n' +
      '  test         0  1.0 GB  4.0 MB   64 MB YYYY-MM-DD HH:MM   7c2b26      3                22\n' +
      'c clone1       0  1.0 GB  8.0 MB   60 MB YYYY-MM-DD HH:MM   c8f989      3                22\n' +
      '  test0        0  1.0 GB  0.0 MB  0.0 MB YYYY-MM-DD HH:MM   fd34af      3                22\n';
    const expectedTree =
      'test---[YYYY-MM-DD HH:MM]---(you are here)\n' +
      'clone1---(you are here)\n' +
      'test0---(you are here)\n';
    for (const port of c.ports) {
      const list = await c.dogOk(['vdi', 'list'], { port });
      expect(maskDates(list.out), `vdi list via ${port}`).toBe(expectedList);
      const tree = await c.dogOk(['vdi', 'tree'], { port });
      expect(maskDates(tree.out), `vdi tree via ${port}`).toBe(expectedTree);
    }
    // `vdi list NAME` shows only that name's rows.
    const one = await c.dogOk(['vdi', 'list', 'clone1']);
    expect(maskDates(one.out)).toBe(header + 'c clone1       0  1.0 GB  8.0 MB   60 MB YYYY-MM-DD HH:MM   c8f989      3                22\n');
  });

  it('prints vdi list -r, node list, cluster info and node info in the original shapes', async () => {
    const raw = await c.dogOk(['vdi', 'list', '-r'], { port: c.port(2) });
    expect(maskRawVdiList(raw.out)).toBe(
      's test 1 1073741824 71303168 0 TIME 7c2b25 3 snap1 22\n' +
        '= test 0 1073741824 4194304 67108864 TIME 7c2b26 3  22\n' +
        'c clone1 0 1073741824 8388608 62914560 TIME c8f989 3  22\n' +
        '= test0 0 1073741824 0 0 TIME fd34af 3  22\n',
    );
    // The raw time is a plausible "now" in seconds.
    const seconds = Number(raw.out.split('\n')[0]!.split(' ')[6]);
    expect(Math.abs(seconds - Date.now() / 1000)).toBeLessThan(600);

    const nodeList = await c.dogOk(['node', 'list'], { port: c.port(1) });
    expect(nodeList.out).toBe(
      '  Id   Host:Port         V-Nodes       Zone\n' +
        '   0   127.0.0.1:7100      \t128          0\n' +
        '   1   127.0.0.1:7101      \t128          1\n' +
        '   2   127.0.0.1:7102      \t128          2\n',
    );

    const info = await c.dogOk(['cluster', 'info']);
    expect(maskDates(info.out)).toBe(
      'Cluster status: running, auto-recovery enabled\n' +
        '\n' +
        'Cluster created at Www Mmm DD HH:MM:SS YYYY\n' +
        '\n' +
        'Epoch Time           Version [Host:Port:V-Nodes,,,]\n' +
        'YYYY-MM-DD HH:MM:SS      1 [127.0.0.1:7100:128, 127.0.0.1:7101:128, 127.0.0.1:7102:128]\n',
    );
    for (const port of c.ports.slice(1)) {
      expect((await c.dogOk(['cluster', 'info'], { port })).out, `cluster info via ${port}`).toBe(info.out);
    }

    const nodeInfo = await c.dogOk(['node', 'info']);
    const lines = nodeInfo.out.split('\n');
    const size = String.raw`\d+(?:\.\d)? [MGTPE]B`;
    expect(lines[0]).toBe('Id\tSize\tUsed\tAvail\tUse%');
    for (let i = 0; i < 3; i++) expect(lines[1 + i]).toMatch(new RegExp(`^ ${i}\\t${size}\\t${size}\\t${size}\\t[ \\d]{2}\\d%$`));
    expect(lines[4]).toMatch(new RegExp(`^Total\\t${size}\\t${size}\\t${size}\\t[ \\d]{2}\\d%$`));
    expect(lines[5]).toBe('');
    // Working VDIs only (test, clone1, test0), as the original: snapshots are not counted.
    expect(lines[6]).toBe('Total virtual image size\t3.0 GB');
    expect(lines.slice(7)).toEqual(['']);
    // Each node stores at least the 17 + 1 + 2 data objects written so far (sparse files aside).
    const rawInfo = await c.dogOk(['node', 'info', '-r']);
    // -r as the original: no header, single spaces, the total with the virtual size on one line.
    const rawLines = rawInfo.out.trimEnd().split('\n');
    expect(rawLines).toHaveLength(4);
    for (const line of rawLines.slice(0, 3)) expect(Number(line.split(' ')[2])).toBeGreaterThan(60 * MiB);
    expect(rawLines[3]).toMatch(new RegExp(`^Total \\d+ \\d+ \\d+ \\d+% ${3 * 1024 * MiB}$`));
  });

  it('refuses bad input with one line on stderr and writes nothing', async () => {
    const before = await fingerprint();
    const name256 = 'n'.repeat(256);
    const cases: Array<{ args: string[]; message?: string | RegExp; input?: Buffer }> = [
      { args: ['vdi', 'read', 'missing'], message: 'Failed to open VDI missing (snapshot id: 0 snapshot tag: ): No VDI found' },
      { args: ['vdi', 'delete', 'missing'], message: 'Failed to open VDI missing (snapshot id: 0 snapshot tag: ): No VDI found' },
      { args: ['vdi', 'snapshot', '-s', 'x', 'missing'], message: /^Failed to (open|create snapshot for) .*missing/ },
      { args: ['vdi', 'write', 'missing'], input: Buffer.from('data'), message: 'Failed to open VDI missing (snapshot id: 0 snapshot tag: ): No VDI found' },
      { args: ['vdi', 'read', '-s', 'nosuch', 'test'], message: 'Failed to open VDI test (snapshot id: 0 snapshot tag: nosuch): Failed to find requested tag' },
      { args: ['vdi', 'read', '-s', '7', 'test'], message: 'Failed to open VDI test (snapshot id: 7 snapshot tag: ): Failed to find requested tag' },
      { args: ['vdi', 'delete', '-s', 'nosuch', 'test'], message: 'Failed to open VDI test (snapshot id: 0 snapshot tag: nosuch): Failed to find requested tag' },
      { args: ['vdi', 'clone', '-s', 'nosuch', 'test', 'clone9'], message: 'Failed to open VDI test (snapshot id: 0 snapshot tag: nosuch): Failed to find requested tag' },
      { args: ['vdi', 'snapshot', '-s', 'snap1', 'test'], message: 'Failed to create snapshot for test, maybe snapshot id (0) or tag (snap1) is existed' },
      { args: ['vdi', 'create', '', '1G'], message: /^Failed to create VDI .*empty/ },
      { args: ['vdi', 'create', name256, '1G'], message: /256 bytes/ },
      { args: ['vdi', 'create', 'zero', '0'], message: /^Failed to create VDI zero: .*larger than 0/ },
      { args: ['vdi', 'create', 'big', '5T'], message: "VDI size is larger than 4.0 TB bytes, please use '-y' to create a hyper volume with size up to 16 PB bytes or use '-z' to create larger object size volume" },
      { args: ['vdi', 'create', 'big', '4097G'], message: "VDI size is larger than 4.0 TB bytes, please use '-y' to create a hyper volume with size up to 16 PB bytes or use '-z' to create larger object size volume" },
      { args: ['vdi', 'create', '-y', 'huge', '17P'], message: /too large/ },
      { args: ['vdi', 'create', 'test', '1G'], message: 'Failed to create VDI test: VDI exists already' },
      { args: ['vdi', 'create', 'clone1', '1G'], message: 'Failed to create VDI clone1: VDI exists already' },
      { args: ['vdi', 'clone', '-s', 'snap1', 'test', 'test0'], message: 'Failed to create VDI test0: VDI exists already' },
      { args: ['vdi', 'read', 'test', String(2 * 1024 * MiB)], message: /offset/i },
      { args: ['vdi', 'write', 'test', String(2 * 1024 * MiB)], input: Buffer.from('x'.repeat(10)), message: /offset/i },
      { args: ['vdi', 'resize', 'test', '512M'], message: 'Shrinking VDIs is not implemented' },
      { args: ['vdi', 'resize', 'test', '5T'], message: "New VDI size is too large. This volume's max size is 4398046511104" },
      { args: ['vdi', 'resize', 'missing', '5G'], message: 'Failed to open VDI missing (snapshot id: 0 snapshot tag: ): No VDI found' },
      { args: ['vdi', 'rollback', '-y', '-s', 'nosuch', 'test'], message: 'Failed to open VDI test (snapshot id: 0 snapshot tag: nosuch): Failed to find requested tag' },
    ];
    const failures: string[] = [];
    for (const { args, message, input } of cases) {
      const result = await c.dog(args, input ? { input } : {});
      try {
        expectOneLineFailure(result, message);
      } catch (error) {
        failures.push(`dog ${args.join(' ').slice(0, 60)}: exit ${result.code} stderr ${JSON.stringify(result.stderr)}: ${(error as Error).message.split('\n')[0]}`);
      }
    }
    expect(failures).toEqual([]);
    expect(await fingerprint()).toBe(before);

    // `vdi clone` without -s: the original's two lines plus usage, exit 64.
    const noSnap = await c.dog(['vdi', 'clone', 'test', 'clone2']);
    expect(noSnap.code).toBe(64);
    expect(noSnap.stderr.startsWith("Only snapshot VDIs can be cloned\nPlease specify the '-s' option\n")).toBe(true);
    expect(noSnap.stderr).toMatch(/Usage: .*clone/);
    expect(await fingerprint()).toBe(before);
  });

  it('writes unaligned ranges exactly, across an object boundary, and only LEN bytes of stdin', async () => {
    await c.dogOk(['vdi', 'create', 'edge', '64M']);
    const ten = Buffer.from('0123456789');
    await c.dogOk(['vdi', 'write', 'edge', '4194300', '10'], { input: ten });
    const around = await c.dogOk(['vdi', 'read', 'edge', '4194290', '30'], { port: c.port(1) });
    expect(around.stdout.equals(Buffer.concat([Buffer.alloc(10), ten, Buffer.alloc(10)]))).toBe(true);
    expect((await c.dogOk(['vdi', 'read', 'edge', '4194300', '10'], { port: c.port(2) })).out).toBe('0123456789');

    // More stdin than LEN: only LEN bytes land.
    const input = Buffer.from('A'.repeat(100));
    await c.dogOk(['vdi', 'write', 'edge', '1000', '10'], { input });
    const back = await c.dogOk(['vdi', 'read', 'edge', '990', '40']);
    expect(back.stdout.equals(Buffer.concat([Buffer.alloc(10), Buffer.from('A'.repeat(10)), Buffer.alloc(20)]))).toBe(true);

    // A write is cut at the end of the VDI; a read of the last bytes returns just those.
    await c.dogOk(['vdi', 'write', 'edge', String(64 * MiB - 4)], { input: Buffer.from('WXYZ-cut') });
    expect((await c.dogOk(['vdi', 'read', 'edge', String(64 * MiB - 4)])).out).toBe('WXYZ');
    expect((await c.dogOk(['vdi', 'read', 'edge', String(64 * MiB - 4), '100'])).out).toBe('WXYZ');

    // Resize grows: the new space reads as zeros and is writable.
    await c.dogOk(['vdi', 'resize', 'edge', '128M']);
    expect((await c.dogOk(['vdi', 'read', 'edge', String(64 * MiB - 4), '8'])).stdout.equals(Buffer.from('WXYZ\0\0\0\0'))).toBe(true);
    await c.dogOk(['vdi', 'write', 'edge', String(100 * MiB)], { input: Buffer.from('grown') });
    expect((await c.dogOk(['vdi', 'read', 'edge', String(100 * MiB), '5'], { port: c.port(2) })).out).toBe('grown');
  });

  /**
   * A chain base→s1→s2→working with a clone of s2, data in every layer. `order` is the order of
   * deletes; after each, the survivors read back intact; at the end no object of theirs remains.
   */
  async function deleteScenario(name: string, cloneName: string, order: string[]): Promise<void> {
    const layer = () => randomBytes(objectBytes);
    const a = [layer(), layer(), layer()];
    await c.dogOk(['vdi', 'create', name, '32M']);
    await c.dogOk(['vdi', 'write', name, '0'], { input: Buffer.concat(a) });
    await c.dogOk(['vdi', 'snapshot', '-s', 's1', name]);
    const b1 = layer();
    await c.dogOk(['vdi', 'write', name, String(objectBytes)], { input: b1 });
    await c.dogOk(['vdi', 'snapshot', '-s', 's2', name]);
    const c2 = layer();
    await c.dogOk(['vdi', 'write', name, String(2 * objectBytes)], { input: c2, port: c.port(1) });
    await c.dogOk(['vdi', 'clone', '-s', 's2', name, cloneName]);
    const d0 = layer();
    await c.dogOk(['vdi', 'write', cloneName, '0'], { input: d0, port: c.port(2) });

    const raw = (await c.dogOk(['vdi', 'list', '-r'])).out;
    const vids = [rawVid(raw, name, 's1'), rawVid(raw, name, 's2'), rawVid(raw, name), rawVid(raw, cloneName)];
    expect(new Set(vids).size).toBe(4);
    const images: Record<string, { args: string[]; data: Buffer }> = {
      s1: { args: ['-s', 's1', name], data: Buffer.concat(a) },
      s2: { args: ['-s', 's2', name], data: Buffer.concat([a[0]!, b1, a[2]!]) },
      working: { args: [name], data: Buffer.concat([a[0]!, b1, c2]) },
      clone: { args: [cloneName], data: Buffer.concat([d0, b1, a[2]!]) },
    };
    const deleteArgs: Record<string, string[]> = { s1: ['-s', 's1', name], s2: ['-s', 's2', name], working: [name], clone: [cloneName] };
    const alive = new Set(Object.keys(images));
    const check = async (when: string) => {
      for (const key of alive) {
        const result = await c.dogOk(['vdi', 'read', ...images[key]!.args, '0', String(3 * objectBytes)], { port: c.port(1) });
        expect(md5(result.stdout), `${key} ${when}`).toBe(md5(images[key]!.data));
      }
    };
    await check('before deletes');
    for (const key of order) {
      await c.dogOk(['vdi', 'delete', ...deleteArgs[key]!]);
      alive.delete(key);
      await check(`after deleting ${order.slice(0, order.indexOf(key) + 1).join(', ')}`);
      // The tree stays whole: whatever snapshots of `name` are left are still one chain.
      const tree = maskDates((await c.dogOk(['vdi', 'tree'])).out);
      const chain = ['s1', 's2'].filter((k) => alive.has(k)).map(() => '[YYYY-MM-DD HH:MM]');
      if (alive.has('working')) chain.push('(you are here)');
      if (chain.length > 0) expect(tree.split('\n')).toContain([name, ...chain].join('---'));
      else expect(tree).not.toMatch(new RegExp(`^${name}-`, 'm'));
      if (alive.has('clone')) expect(tree.split('\n')).toContain(`${cloneName}---(you are here)`);
      // A deleted snapshot can no longer be read.
      if (key !== 'working' && key !== 'clone') {
        const gone = await c.dog(['vdi', 'read', ...deleteArgs[key]!, '0', '1']);
        expectOneLineFailure(gone, /Failed to (find requested tag|open VDI)/);
      }
    }
    const left = [...c.allObjects().entries()].filter(([oid]) => vids.includes(oidVidHex(oid)));
    expect(left, `objects left of ${vids.join(' ')}`).toEqual([]);
    const list = (await c.dogOk(['vdi', 'list', '-r'])).out;
    expect(list).not.toMatch(new RegExp(` (${name}|${cloneName}) `));
  }

  it('delete reclaims space: middle snapshot first, then the rest', async () => {
    await deleteScenario('chain', 'chainc', ['s2', 's1', 'working', 'clone']);
  });

  it('delete reclaims space: working and clone first, snapshots last, root first', async () => {
    await deleteScenario('chainb', 'chainbc', ['working', 'clone', 's1', 's2']);
  });

  it('racing creates: the same name on two nodes succeeds once; ten names get ten distinct VIDs', async () => {
    const [r0, r1] = await Promise.all([
      c.dog(['vdi', 'create', 'race', '1G'], { port: c.port(0) }),
      c.dog(['vdi', 'create', 'race', '1G'], { port: c.port(1) }),
    ]);
    const results = [r0!, r1!];
    expect(results.filter((r) => r.code === 0), results.map((r) => r.stderr).join('|')).toHaveLength(1);
    expectOneLineFailure(results.find((r) => r.code !== 0)!, 'Failed to create VDI race: VDI exists already');
    expect((await c.dogOk(['vdi', 'list', '-r'], { port: c.port(2) })).out.match(/^= race /gm)).toHaveLength(1);

    const names = Array.from({ length: 10 }, (_, k) => `racer${k}`);
    const created = await Promise.all(names.map((name, k) => c.dog(['vdi', 'create', name, '1G'], { port: c.port(k % 3) })));
    created.forEach((r, k) => expect(r.code, `${names[k]}: ${r.stderr}`).toBe(0));
    const lists = await Promise.all(c.ports.map((port) => c.dogOk(['vdi', 'list', '-r'], { port })));
    expect(lists[1]!.out).toBe(lists[0]!.out);
    expect(lists[2]!.out).toBe(lists[0]!.out);
    const vids = names.map((name) => rawVid(lists[0]!.out, name));
    expect(new Set(vids).size).toBe(10);
    const allVids = lists[0]!.out.split('\n').filter(Boolean).map((line) => line.split(' ')[7]);
    expect(new Set(allVids).size).toBe(allVids.length);
  });

  it('a daemon survives garbage on its port', async () => {
    const port = c.port(1);
    const nodeListBefore = (await c.dogOk(['node', 'list'], { port })).out;
    const snapHead = md5(snapImage.subarray(0, 8 * MiB));

    // Garbage from someone who proved the cluster key (without it, nothing is read: auth.test.ts).
    const key = parseKey(fs.readFileSync(path.join(c.storeDir(1), 'cluster.key')))!;
    /** Sends bytes, optionally half-closes, and collects the reply frames until close or timeout. */
    const send = async (pieces: Buffer[], opts: { end?: boolean; waitMs?: number } = {}) => {
      const { socket } = await authenticatedSocket(port, key);
      const decoder = new FrameDecoder();
      const frames: Frame[] = [];
      let closed = false;
      socket.on('data', (chunk: Buffer) => frames.push(...decoder.push(chunk)));
      socket.on('error', () => undefined);
      const closing = new Promise<void>((resolve) => socket.once('close', () => {
        closed = true;
        resolve();
      }));
      for (const piece of pieces) socket.write(piece);
      if (opts.end) socket.end();
      await Promise.race([closing, sleep(opts.waitMs ?? 1000)]);
      socket.destroy();
      return { frames, closed };
    };
    const frame = (header: object, payload?: Buffer) => Buffer.concat(encodeFrame(header, payload));
    const stillWorks = async (what: string) => {
      const list = await c.dog(['node', 'list'], { port });
      expect(list.code, `${what}: ${list.stderr}\n${c.diagnostics(1)}`).toBe(0);
      expect(list.out, what).toBe(nodeListBefore);
      expect(c.running(1), what).toBe(true);
      const data = await c.dogOk(['vdi', 'read', '-s', 'snap1', 'test', '0', String(8 * MiB)], { port });
      expect(md5(data.stdout), what).toBe(snapHead);
    };

    // Random bytes: the connection is dropped (or the bytes wait for a frame that never completes).
    await send([randomBytes(64 * 1024)], { end: true });
    await stillWorks('random bytes');

    // A huge length prefix: refused before any allocation, connection closed.
    const huge = Buffer.alloc(8);
    huge.writeUInt32BE(0x7fffffff, 0);
    huge.writeUInt32BE(16, 4);
    expect((await send([huge, randomBytes(100)])).closed).toBe(true);
    await stillWorks('huge length prefix');

    // A truncated frame, then close.
    const whole = frame({ id: 1, op: 'node.list' });
    await send([whole.subarray(0, whole.length - 3)], { end: true });
    const half = Buffer.alloc(8);
    half.writeUInt32BE(4 + 10 + 1000, 0);
    half.writeUInt32BE(10, 4);
    await send([half, randomBytes(30)], { end: true });
    await stillWorks('truncated frame');

    // Valid lengths, undecodable header (0xc1 is never used in msgpack).
    const bad = Buffer.alloc(8 + 6, 0xc1);
    bad.writeUInt32BE(4 + 6, 0);
    bad.writeUInt32BE(6, 4);
    expect((await send([bad])).closed).toBe(true);
    // A header that decodes but is not a map, and a map without an id.
    const notMap = Buffer.concat(encodeFrame([1, 2, 3] as unknown as object));
    expect((await send([notMap])).closed).toBe(true);
    expect((await send([frame({ op: 'node.list' })])).closed).toBe(true);
    await stillWorks('undecodable header');

    // Unknown op and wrong field types: an error reply each, the connection stays usable.
    const requests: Array<{ header: Record<string, unknown>; payload?: Buffer; code: string }> = [
      { header: { op: 'no.such.op' }, code: 'PROTOCOL' },
      { header: { op: 42 }, code: 'PROTOCOL' },
      { header: { op: '__proto__' }, code: 'PROTOCOL' },
      { header: { op: 'toString' }, code: 'PROTOCOL' },
      { header: { op: 'gw.read', oid: 'zz', offset: 0, length: 10 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.read', oid: '007c2b2500000000', offset: 0, length: -1 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.read', oid: '007c2b2500000000', offset: 0, length: 2 ** 40 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.read', oid: '007c2b2500000000', offset: 'x', length: 1 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.read', oid: '007c2b2500000000', offset: 1.5, length: 1 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.read', oid: 12, offset: 0, length: 1 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.write', oid: '007c2b2500000000', offset: 0 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'gw.write', oid: '007c2b2500000000', offset: 0, create: 'yes' }, payload: Buffer.from('x'), code: 'INVALID_ARGUMENT' },
      { header: { op: 'peer.write', oid: '007c2b2500000000', offset: 0, size: -5 }, payload: Buffer.from('x'), code: 'INVALID_ARGUMENT' },
      { header: { op: 'vdi.create', name: ['a'], size: 1 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'vdi.create', name: 'typed', size: '1G' }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'vdi.create', name: 'typed', size: 1024, copies: 1e9 }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'vdi.delete', name: { $gt: '' } }, code: 'INVALID_ARGUMENT' },
      { header: { op: 'vdi.lookup', name: 'test', snapshot: 7 }, code: 'INVALID_ARGUMENT' },
    ];
    const pieces = requests.map((r, k) => frame({ ...r.header, id: 100 + k }, r.payload));
    const replies = await send(pieces, { waitMs: 3000 });
    expect(replies.closed).toBe(false);
    const byId = new Map(replies.frames.map((f) => [f.header['id'], f.header]));
    requests.forEach((r, k) => {
      const reply = byId.get(100 + k);
      expect(reply, `reply to ${JSON.stringify(r.header)}`).toBeDefined();
      expect(reply!['ok'], JSON.stringify(r.header)).toBe(false);
      expect(reply!['code'], `${JSON.stringify(r.header)}: ${String(reply!['message'])}`).toBe(r.code);
    });
    await stillWorks('bad requests');
    // Nothing was created by the bad requests.
    expect((await c.dogOk(['vdi', 'list', '-r'])).out).not.toMatch(/ typed /);
  });

  it('sheep refuses bad options with one line naming the option and exit 1', async () => {
    const tmp = makeTempDir('foundation-opts-');
    try {
      const common = ['-f', '-b', '127.0.0.1', '--nbd', 'off', '-c', `local:${path.join(tmp, 'cluster')}`];
      const store = path.join(tmp, 'store');
      const cases: Array<{ args: string[]; mention: RegExp }> = [
        { args: ['-p', '0', ...common, store], mention: /port.*'?0'?/ },
        { args: ['-p', '70000', ...common, store], mention: /port.*70000/ },
        { args: ['-p', '7130', '-z', '-1', ...common, store], mention: /^sheep: Invalid zone id '-1': must be an integer between 0 and 4294967295$/ },
        { args: ['-p', '7130', '-V', '0', ...common, store], mention: /^sheep: Invalid number of vnodes '0': must be an integer between 1 and 65535$/ },
        { args: ['-p', '7130', '-g', '-V', '10', ...common, store], mention: /^sheep: Options '-g' and '-V' can not be both specified$/ },
        { args: ['-p', '7130', '-f', '-b', '127.0.0.1', '--nbd', 'off', '-c', 'bogus', store], mention: /^sheep: Invalid cluster driver 'bogus'$/ },
        { args: ['-p', '7130', '-b', 'not-an-ip', '-f', '--nbd', 'off', store], mention: /^sheep: Bad address 'not-an-ip'$/ },
        { args: ['-p', '7130', '-l', 'loud', ...common, store], mention: /^sheep: Invalid log level 'loud'$/ },
        { args: ['-p', '7130', ...common], mention: /STORE_DIR|missing|argument/i },
        // The port of a running sheep.
        { args: ['-p', String(c.port(0)), ...common, path.join(tmp, 'store-busy-port')], mention: new RegExp(`${c.port(0)}.*in use|in use.*${c.port(0)}`) },
        // A second sheep on a store in use.
        { args: ['-p', '7131', ...common, c.storeDir(0)], mention: new RegExp(`in use.*${c.pid(0)}|${c.storeDir(0)}.*in use`) },
      ];
      const failures: string[] = [];
      for (const { args, mention } of cases) {
        const result = await runSheep(args, 15_000);
        const lines = result.stderr.trimEnd().split('\n');
        const ok = !result.timedOut && result.code === 1 && lines.length === 1 && mention.test(lines[0]!) && !/\n\s+at /.test(result.stderr);
        if (!ok) failures.push(`sheep ${args.join(' ')}: exit ${result.code}${result.timedOut ? ' (timed out)' : ''}, stderr ${JSON.stringify(result.stderr)}`);
      }
      expect(failures).toEqual([]);
      // The running sheep kept its store and its place.
      expect(fs.readFileSync(path.join(c.storeDir(0), 'sheep.pid'), 'utf8').trim()).toBe(String(c.pid(0)));
      expect((await c.dogOk(['node', 'list', '-r'])).out.split('\n').filter(Boolean)).toHaveLength(3);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  // Last in this cluster: huge VDIs make every later `vdi list` and delete scan their owner tables.
  it('accepts sizes over 4 TiB with -y, and exactly 4 TiB without', async () => {
    await c.dogOk(['vdi', 'create', 'four', '4T']);
    await c.dogOk(['vdi', 'create', '-y', 'hyper5', '5T']);
    await c.dogOk(['vdi', 'create', '-y', 'hyper8k', '8191T']);
    const raw = await c.dogOk(['vdi', 'list', '-r']);
    expect(raw.out).toMatch(/^= four 0 4398046511104 0 0 \d+ [0-9a-f]+ 3  22$/m);
    expect(raw.out).toMatch(/^= hyper5 0 5497558138880 0 0 \d+ [0-9a-f]+ 3  22$/m);
    expect(raw.out).toMatch(/^= hyper8k 0 9006099743113216 0 0 \d+ [0-9a-f]+ 3  22$/m);
    // The far end of a hyper volume is reachable (its owner table spans many chunks).
    const tail = Buffer.from('end of 8191 TiB');
    const at = 8191 * 1024 ** 4 - tail.length;
    await c.dogOk(['vdi', 'write', 'hyper8k', String(at)], { input: tail });
    expect((await c.dogOk(['vdi', 'read', 'hyper8k', String(at)], { port: c.port(2) })).out).toBe(tail.toString());
    for (const name of ['four', 'hyper5', 'hyper8k']) await c.dogOk(['vdi', 'delete', name]);
    const after = await c.dogOk(['vdi', 'list', '-r']);
    expect(after.out).not.toMatch(/four|hyper/);
  });

  it('accepts a hyper volume of exactly 16 PiB (the documented maximum)', async () => {
    const result = await c.dog(['vdi', 'create', '-y', 'hyper16', '16P']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    // It can be opened and read (its first object; offsets past 2^53 are not addressable: see the report).
    const start = await c.dogOk(['vdi', 'read', 'hyper16', '0', '16'], { port: c.port(1) });
    expect(start.stdout.equals(Buffer.alloc(16))).toBe(true);
    await c.dogOk(['vdi', 'delete', 'hyper16']);
  });
});

describe('four sheep, copies 3: placement and a SIGKILL after an acknowledged write', () => {
  let c: Cluster;
  beforeAll(async () => {
    c = await startCluster({ nodes: 4, copies: 3, basePort: 7110, prefix: 'foundation-kill-' });
  });
  afterAll(async () => {
    await c?.stop();
  });

  it('puts each object on exactly three stores, where `object location` says, and survives a SIGKILL', async () => {
    await c.dogOk(['vdi', 'create', 'test', '1G']);
    const data = randomBytes(16 * MiB);
    await c.dogOk(['vdi', 'write', 'test', '777'], { input: data, port: c.port(3) });
    const oids = dataOids('7c2b25', 0, 5);
    for (const [index, oid] of oids.entries()) {
      const holders = c.holders(oid);
      expect(holders, oid).toHaveLength(3);
      expect(new Set(holders.map((i) => c.objectHash(i, oid))).size, oid).toBe(1);
      const location = await c.dogOk(['vdi', 'object', 'location', 'test', String(index)]);
      const lines = location.out.split('\n');
      expect(lines[0]).toBe(`Looking for the object ${oid} (vid 0x7c2b25 idx ${index}, 3 copies) with 4 nodes`);
      const placed = lines[lines.indexOf('According to sheepdog algorithm, the object should be located at:') + 1]!.split(' ').sort();
      expect(placed).toEqual(holders.map((i) => c.nodeId(i)).sort());
      for (let i = 0; i < 4; i++) {
        expect(lines).toContain(`${c.nodeId(i)} ${holders.includes(i) ? 'has' : "doesn't have"} the object`);
      }
    }

    // Kill a node that holds object 0, right after the acknowledged write.
    const victim = c.holders(oids[0]!)[0]!;
    await c.kill(victim, 'SIGKILL');
    const survivors = [0, 1, 2, 3].filter((i) => i !== victim);
    for (const i of survivors) {
      const result = await c.dogOk(['vdi', 'read', 'test', '777', String(data.length)], { port: c.port(i) });
      expect(md5(result.stdout), `read via ${c.port(i)} right after the kill`).toBe(md5(data));
    }
    // Once the death is noticed (within 2 s), the survivors agree on three members, and still read.
    await sleep(2500);
    for (const i of survivors) {
      const list = await c.dogOk(['node', 'list', '-r'], { port: c.port(i) });
      expect(list.out.split('\n').filter(Boolean).map((l) => l.split(' ')[1])).toEqual(survivors.map((k) => c.nodeId(k)));
      const result = await c.dogOk(['vdi', 'read', 'test', '777', String(data.length)], { port: c.port(i) });
      expect(md5(result.stdout), `read via ${c.port(i)} after the leave`).toBe(md5(data));
    }
    // And a new write is acknowledged and readable everywhere left.
    const more = randomBytes(MiB);
    await c.dogOk(['vdi', 'write', 'test', String(40 * MiB)], { input: more, port: c.port(survivors[0]!) });
    for (const i of survivors) {
      const result = await c.dogOk(['vdi', 'read', 'test', String(40 * MiB), String(MiB)], { port: c.port(i) });
      expect(md5(result.stdout)).toBe(md5(more));
    }
  });
});

describe('a store of another cluster', () => {
  let a: Cluster | undefined;
  let b: Cluster | undefined;
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('is refused: the sheep exits non-zero and the other cluster is unchanged', async () => {
    a = await startCluster({ nodes: 1, copies: 1, basePort: 7120, prefix: 'foundation-a-' });
    await a.dogOk(['vdi', 'create', 'ina', '16M']);
    await a.dogOk(['vdi', 'write', 'ina', '0'], { input: randomBytes(MiB) });
    await a.stop(true);
    b = await startCluster({ nodes: 2, copies: 2, basePort: 7121, prefix: 'foundation-b-' });
    await b.dogOk(['vdi', 'create', 'inb', '16M']);
    const listBefore = (await b.dogOk(['node', 'list'])).out;
    const infoBefore = (await b.dogOk(['cluster', 'info'])).out;

    const result = await runSheep(
      ['-f', '-b', '127.0.0.1', '-p', '7125', '-z', '5', '--nbd', 'off', '-c', `local:${b.clusterDir}`, a.storeDir(0)],
      30_000,
    );
    expect(result.timedOut, `stderr: ${result.stderr}`).toBe(false);
    expect(result.code, `stderr: ${result.stderr}`).not.toBe(0);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(result.stderr).not.toMatch(/\n\s+at /);
    expect(result.stderr).toMatch(/refused/);

    await sleep(2500); // a member that joined and died would be reported gone by now
    for (const port of b.ports) {
      expect((await b.dogOk(['node', 'list'], { port })).out).toBe(listBefore);
      expect((await b.dogOk(['cluster', 'info'], { port })).out).toBe(infoBefore);
    }
    expect((await b.dogOk(['vdi', 'list', '-r'])).out).toMatch(/^= inb /);
    fs.rmSync(a.root, { recursive: true, force: true });
  });
});
