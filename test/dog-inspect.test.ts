// dog's inspection commands against a real cluster: node stat, node log level, vdi graph, track,
// object map and dump-inode, cluster reweight, and the -T global. Output is compared with golden
// text in the original's shapes (3ebe5ea dog/node.c, vdi.c), dates masked.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLogLevels } from '../src/cli/inspect-format.js';
import { dogBin, md5, run, startCluster, type Cluster, type DogResult } from './support/cluster.js';
import { maskGraphDates } from './support/mask.js';

const MiB = 1024 * 1024;
const nbdBasePort = 8690;
let c: Cluster;

function failure(result: DogResult): { code: number | null; stderr: string; out: string } {
  return { code: result.code, stderr: result.stderr, out: result.out };
}

/** `node stat -r`: client and peer rows as numbers. */
async function stat(i: number): Promise<{ client: number[]; peer: number[] }> {
  const lines = (await c.dogOk(['node', 'stat', '-r'], { port: c.port(i) })).out.trimEnd().split('\n');
  const [client, peer] = lines.map((line) => line.split('\t').map(Number));
  return { client: client!, peer: peer! };
}

function sum(rows: number[][]): number[] {
  return rows.reduce((total, row) => total.map((value, i) => value + row[i]!), new Array<number>(8).fill(0));
}

beforeAll(async () => {
  c = await startCluster({ nodes: 3, copies: 2, basePort: 8600, prefix: 'dog-inspect-', sheepArgs: (i) => ['--nbd', `127.0.0.1:${nbdBasePort + i}`] });
});

afterAll(async () => {
  await c?.destroy();
});

describe('dog node stat', () => {
  it('counts the object I/O each node served, client and peer apart', async () => {
    const zero = 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\nClient\t0\t0\t0\t0\t0\t0\t0.0 MB\t0.0 MB\nPeer\t0\t0\t0\t0\t0\t0\t0.0 MB\t0.0 MB\n';
    for (const i of [0, 1, 2]) expect((await c.dogOk(['node', 'stat'], { port: c.port(i) })).out).toBe(zero);
    await c.dogOk(['vdi', 'create', 'stat', '64M']);
    // One object's data: a data object and one owner-table entry, each written with 2 copies.
    await c.dogOk(['vdi', 'write', 'stat', '0', String(4 * MiB)], { input: Buffer.alloc(4 * MiB, 7) });
    const after = await Promise.all([0, 1, 2].map(stat));
    // active, total, write, read, remove, flush, received bytes, sent bytes
    const client = sum(after.map((s) => s.client));
    const peer = sum(after.map((s) => s.peer));
    expect(client[0]).toBe(0);
    expect(client[2]).toBe(2);
    expect(client[6]).toBe(4 * MiB + 4);
    expect(peer[2]).toBe(2);
    expect(peer[6]).toBe(4 * MiB + 4);
    const read = await c.dogOk(['vdi', 'read', 'stat', '0', String(MiB)]);
    expect(read.stdout.equals(Buffer.alloc(MiB, 7))).toBe(true);
    const client2 = sum((await Promise.all([0, 1, 2].map(stat))).map((s) => s.client));
    expect(client2[7] - client[7]).toBeGreaterThanOrEqual(MiB); // the data read, plus the owner table
    expect(client2[3] - client[3]).toBeGreaterThanOrEqual(1);
  });

  it('counts NBD writes and flushes as client requests of the node serving them', async () => {
    await c.dogOk(['vdi', 'create', 'nbd', '16M']);
    const before = await stat(0);
    const io = await run('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${nbdBasePort}/nbd`, '-c', 'write -P 7 0 64k', '-c', 'flush'], { timeoutMs: 60_000 });
    expect({ code: io.code, stderr: io.stderr }).toEqual({ code: 0, stderr: '' });
    const after = await stat(0);
    // active, total, write, read, remove, flush, received bytes, sent bytes
    expect(after.client[0]).toBe(0);
    expect(after.client[5] - before.client[5]).toBeGreaterThanOrEqual(1);
    expect(after.client[2] - before.client[2]).toBeGreaterThanOrEqual(1);
    expect(after.client[6] - before.client[6]).toBeGreaterThanOrEqual(64 * 1024);
    expect(md5((await c.dogOk(['vdi', 'read', 'nbd', '0', '64k'], { port: c.port(2) })).stdout)).toBe(md5(Buffer.alloc(64 * 1024, 7)));
    await c.dogOk(['vdi', 'delete', 'nbd']);
  });

  it('-w prints a block every second with bandwidth and requests per second', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [dogBin, 'node', 'stat', '-w', '-p', String(c.port(0))]);
    let text = '';
    const header = 'Request\tActive\tTotal\tWrite\tRead\tRemove\tFlush\tAll WR\tAll RD\tWRBW\tRDBW\tRPS\n';
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        text += chunk.toString();
        if (text.split(header).length > 2) resolve();
      });
      child.once('exit', (code) => reject(new Error(`dog node stat -w exited with ${code}`)));
    });
    child.kill('SIGKILL');
    const block = text.split(header)[1]!.split('\n');
    expect(block[0]).toMatch(/^Client\t0\t\d+\t\d+\t\d+\t0\t\d+\t\S+ MB\t\S+ MB\t0\.0 MB\t0\.0 MB\t0$/);
    expect(block[1]).toMatch(/^Peer\t0\t\d+\t\d+\t\d+\t0\t0\t\S+ MB\t\S+ MB\t0\.0 MB\t0\.0 MB\t0$/);
  });

  it('has --help', async () => {
    const help = await c.dogOk(['node', 'stat', '--help']);
    expect(help.out).toMatch(/^Usage: dog node stat \[options\]\n\nshow stat information about the node\n/);
    expect(help.out).toContain('-w, --watch');
  });
});

describe('dog node log level', () => {
  it('lists, gets and sets the level by the original names, and the log obeys it', async () => {
    expect((await c.dogOk(['node', 'log', 'level', 'list'])).out).toBe(
      'emerg\t(0)\nalert\t(1)\ncrit\t(2)\nerr\t(3)\nwarning\t(4)\nnotice\t(5)\ninfo\t(6)\ndebug\t(7)\n',
    );
    expect((await c.dogOk(['node', 'log', 'level', 'get'], { port: c.port(2) })).out).toBe('info (6)\n');
    expect((await c.dogOk(['node', 'log', 'level', 'set', 'err'], { port: c.port(2) })).out).toBe('');
    expect((await c.dogOk(['node', 'log', 'level', 'get'], { port: c.port(2) })).out).toBe('err (3)\n');
    // Only the node asked changed.
    expect((await c.dogOk(['node', 'log', 'level', 'get'], { port: c.port(1) })).out).toBe('info (6)\n');
    const bad = await c.dog(['node', 'log', 'level', 'set', 'loud'], { port: c.port(2) });
    expect(failure(bad)).toEqual({ code: 1, out: '', stderr: `invalid loglevel: loud\navailable loglevels:\n${formatLogLevels()}` });
    // An info line (a VDI created) reaches node 1's log but not node 2's.
    const before = c.log(2).length;
    await c.dogOk(['vdi', 'create', 'quiet', '16M']);
    await c.dogOk(['vdi', 'delete', 'quiet']);
    expect(c.log(2).slice(before)).not.toContain('"level":30');
    await c.dogOk(['node', 'log', 'level', 'set', 'info'], { port: c.port(2) });
    expect((await c.dogOk(['node', 'log', 'level', 'get'], { port: c.port(2) })).out).toBe('info (6)\n');
  });
});

describe('dog vdi graph, object map, dump-inode', () => {
  it('prints the snapshot tree as Graphviz dot', async () => {
    await c.dogOk(['vdi', 'create', 'test', '1G']);
    await c.dogOk(['vdi', 'write', 'test', '0', String(9 * MiB)], { input: Buffer.alloc(9 * MiB, 1) });
    await c.dogOk(['vdi', 'snapshot', '-s', 's1', 'test']);
    const graph = maskGraphDates((await c.dogOk(['vdi', 'graph'])).out);
    const blocks = graph.split('\n\n');
    const vdi = (parent: string, vid: string, name: string, tag: number, size: string, working: boolean) =>
      `  "${parent}" -> "${vid}";\n  "${vid}" [\n    group = "${name}",\n` +
      `    label = "Name: ${name.padStart(10)}\\nTag:  ${String(tag).padStart(10)}\\nSize: ${size.padStart(10)}\\nDate: YYYY-MM-DD\\nTime:   HH:MM:SS"` +
      (working ? ',\n    color="red"\n  ];' : '\n  ];');
    // The VDIs in vid order; "stat" (of the first test) has a vid of its own.
    const statVid = /"0" -> "([0-9a-f]+)";\n  "\1" \[\n    group = "stat"/.exec(graph)![1]!;
    const expected = [
      'digraph G {\n  node [shape = "box", fontname = "Courier"];',
      '  "0" [shape = "ellipse", label = "root"];',
      ...[
        { vid: statVid, text: vdi('0', statVid, 'stat', 0, '64 MB', true) },
        { vid: '7c2b25', text: vdi('0', '7c2b25', 'test', 1, '1.0 GB', false) },
        { vid: '7c2b26', text: vdi('7c2b25', '7c2b26', 'test', 0, '1.0 GB', true) },
      ]
        .sort((a, b) => parseInt(a.vid, 16) - parseInt(b.vid, 16))
        .map((v) => v.text),
      '}\n',
    ];
    expect(blocks).toEqual(expected);
  });

  it('maps indexes to the VDI that owns them', async () => {
    const map = 'Index       VID\n00000000   7c2b25\n00000001   7c2b25\n00000002   7c2b25\n';
    expect((await c.dogOk(['vdi', 'object', 'map', 'test'])).out).toBe(map);
    expect((await c.dogOk(['vdi', 'object', 'map', '-s', 's1', 'test'])).out).toBe(map);
    expect((await c.dogOk(['vdi', 'object', 'map', '-i', '0x2', 'test'])).out).toBe('Index       VID\n00000002   7c2b25\n');
    expect((await c.dogOk(['vdi', 'object', 'map', '-i', '5', 'test'])).out).toBe('Index       VID\n00000005        0\n');
    // A write after the snapshot gives the working VDI its own copy of that object.
    await c.dogOk(['vdi', 'write', 'test', String(4 * MiB), '10'], { input: Buffer.from('0123456789') });
    expect((await c.dogOk(['vdi', 'object', 'map', 'test'])).out).toBe('Index       VID\n00000000   7c2b25\n00000001   7c2b26\n00000002   7c2b25\n');
  });

  it('dumps the inode in the original fields', async () => {
    const dump = (await c.dogOk(['vdi', 'object', 'dump-inode', 'test'])).out.replace(/^create_time: [0-9a-f]+$/m, 'create_time: T');
    expect(dump).toBe(
      'name: test\ntag: \ncreate_time: T\nsnap_ctime: 0\nvm_clock_nsec: 0\nvdi_size: 1073741824\nvm_state_size: 0\n' +
        'copy_policy: 0\nstore_policy: 0\nnr_copies: 2\nblock_size_shift: 22\nsnap_id: 2\nvdi_id: 7c2b26\nparent_vdi_id: 7c2b25\n' +
        'btree_counter: 0\ndata_vdi_id:\n0: 7c2b25\n1: 7c2b26\n2: 7c2b25\ngref:\n0: 7c2b25, 0, 0\n1: 7c2b26, 0, 0\n2: 7c2b25, 0, 0\n',
    );
    const snapshot = (await c.dogOk(['vdi', 'object', 'dump-inode', '-s', '1', 'test'])).out;
    expect(snapshot).toMatch(/^name: test\ntag: s1\n/);
    expect(snapshot).toMatch(/\nsnap_ctime: [0-9a-f]+00000000\n/);
  });

  it('refuses bad input with the original one-line errors', async () => {
    expect(failure(await c.dog(['vdi', 'object', 'map', 'nosuch']))).toEqual({
      code: 1,
      out: '',
      stderr: 'Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: nosuch not found\n',
    });
    expect(failure(await c.dog(['vdi', 'object', 'map', '-i', 'zz', 'test']))).toEqual({
      code: 1,
      out: '',
      stderr: 'The index must be a decimal integer or a hexadecimal integer started with 0x\n',
    });
    expect(failure(await c.dog(['vdi', 'object', 'map', '-s', '0', 'test']))).toEqual({ code: 1, out: '', stderr: 'The snapshot id must be larger than zero\n' });
    expect(failure(await c.dog(['vdi', 'track', '-o', 'xyz', 'test']))).toEqual({ code: 1, out: '', stderr: 'object id must be a hex integer\n' });
    expect(failure(await c.dog(['vdi', 'track', 'nosuch']))).toEqual({
      code: 1,
      out: '',
      stderr: 'Failed to open VDI nosuch (snapshot id: 0 snapshot tag: ): No VDI found\nFATAL: no inode objects\n',
    });
  });
});

describe('dog vdi track', () => {
  it('shows where the copies were in every epoch, as placement said at the time', async () => {
    const location = (await c.dogOk(['vdi', 'object', 'location', '-i', '2', 'test'])).out;
    const epoch1 = location.split('should be located at:\n')[1]!.trim().split(' ');
    const oid = /Looking for the object ([0-9a-f]{16})/.exec(location)![1]!;
    await c.kill(2);
    await c.waitForMembers();
    const track = (await c.dogOk(['vdi', 'track', '-i', '2', 'test'])).out;
    const lines = track.split('\n');
    expect(lines.slice(0, 4)).toEqual([
      `Tracking the object ${oid} (the inode vid 0x7c2b26 idx 2) with 2 nodes`,
      '',
      `obj ${oid} locations at epoch 2, copies = 2`,
      '---------------------------------------------------',
    ]);
    // Two nodes left for two copies: both, primary first.
    expect(new Set(lines.slice(4, 6))).toEqual(new Set([c.nodeId(0), c.nodeId(1)]));
    expect(lines.slice(6)).toEqual(['', `obj ${oid} locations at epoch 1, copies = 2`, '---------------------------------------------------', ...epoch1, '']);
    const inode = (await c.dogOk(['vdi', 'track', 'test'])).out;
    expect(inode).toMatch(/^Tracking the inode object 0x7c2b26 with 2 nodes\n\nobj 807c2b2600000000 locations at epoch 2, copies = 2\n/);
    const byOid = (await c.dogOk(['vdi', 'track', '-o', oid, 'test'])).out;
    expect(byOid.split('\n')[0]).toBe(`Tracking the object ${oid} (the inode vid 0x7c2b26) with 2 nodes`);
    expect(byOid.split('\n').slice(1)).toEqual(lines.slice(1));
  });
});

describe('dog cluster reweight and -T', () => {
  it('reweight of nodes whose stores share one filesystem changes nothing', async () => {
    const before = (await c.dogOk(['cluster', 'info'])).out;
    expect(failure(await c.dog(['cluster', 'reweight']))).toEqual({ code: 0, out: '', stderr: '' });
    expect((await c.dogOk(['cluster', 'info'])).out).toBe(before);
  });

  it('-T prints the elapsed time last and each request on stderr', async () => {
    const timed = await c.dogOk(['vdi', 'graph', '-T']);
    expect(timed.out).toMatch(/\n}\n\nElapsed time: \d+\.\d{3} seconds\n$/);
    expect(timed.stderr).toMatch(/^request vdi\.all: \d+ ms\n$/);
  });
});
